# kdns: `make run` serves the seed examples on 127.0.0.1:1053; `make test` runs everything
# (what CI runs); `make check` is the quick pre-commit gate (lint, types, unit tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DNS_ADDR ?= 127.0.0.1:1053
HEALTH_ADDR ?= 127.0.0.1:8080
READY_ADDR ?= 127.0.0.1:8181
METRICS_ADDR ?= 127.0.0.1:9153
UPSTREAM ?= none

.PHONY: setup tools run test check lint typecheck pytest bench bench-smoke fuzz clean

# The hot modules listed in kdns/native.py, compiled with mypyc beside their sources; rebuilt
# when one of them changes (kdns imports the sources until then).
NATIVE_SRC := $(shell sed -n 's/^    "\(kdns\.[a-z_.]*\)",$$/\1/p' kdns/native.py | sed 's|\.|/|g; s|$$|.py|')
NATIVE := kdns/native.digest

setup: $(STAMP) $(NATIVE)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(NATIVE): $(STAMP) setup.py kdns/native.py $(NATIVE_SRC)
	KDNS_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace > build-native.log 2>&1 \
	    || { tail -30 build-native.log >&2; echo "make: compiling kdns/native.py's modules failed (build-native.log)" >&2; exit 1; }
	@echo "compiled $(words $(NATIVE_SRC)) modules with mypyc (kdns/native.py)"

tools:
	./scripts/install-tools.sh

run: setup
	$(BIN)/kdns serve --dns-addr $(DNS_ADDR) --manifests deploy/examples/seed \
	    --upstream $(UPSTREAM) --health-addr $(HEALTH_ADDR) --ready-addr $(READY_ADDR) \
	    --metrics-addr $(METRICS_ADDR)

lint: setup
	$(BIN)/ruff format --check kdns tests bench
	$(BIN)/ruff check kdns tests bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Coverage traces Python bytecode: the modules that run compiled (kdns/native.py) are left
# out of the report, and it says so; `KDNS_PURE=1 make pytest` measures them too.
pytest: setup tools
	KDNS_E2E=required $(BIN)/pytest -q --cov --cov-report=
	@omit="$$($(BIN)/python -c 'from kdns import native; print(",".join(native.coverage_omit()))')"; \
	if [ -n "$$omit" ]; then \
	    echo "coverage: $$(echo "$$omit" | tr ',' '\n' | wc -l) modules ran compiled and are not measured (KDNS_PURE=1 make pytest measures them)"; \
	    $(BIN)/coverage report --omit="$$omit"; \
	else \
	    $(BIN)/coverage report; \
	fi

test: setup tools lint typecheck pytest

# Under a minute: no install, no tools, no e2e or slow tests, no coverage. Needs `make setup`
# once (and again after pyproject.toml changes).
check:
	@test -x $(BIN)/pytest || { echo "make check: no $(VENV); run 'make setup' first" >&2; exit 1; }
	$(BIN)/ruff format --check kdns tests bench
	$(BIN)/ruff check kdns tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not e2e and not slow"

bench: setup tools
	$(BIN)/python bench/run_bench.py

bench-smoke: setup tools
	$(BIN)/python bench/run_bench.py --smoke

fuzz: setup
	$(BIN)/python -m pip install -q atheris
	$(BIN)/python tests/fuzz/atheris_reply.py -max_total_time=$${FUZZ_SECONDS:-300}

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build build-native.log $(NATIVE)
	find kdns -name '*.so' -delete
