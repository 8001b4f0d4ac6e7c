# kdns container image: `kdns serve` as an unprivileged user on a slim Python base.
#
#   docker build -t kdns:dev .
#   docker run --rm --read-only --cap-drop=ALL --cap-add=NET_BIND_SERVICE \
#     -v "$PWD/deploy/examples/seed:/seed:ro" -p 1053:53/udp -p 1053:53/tcp \
#     kdns:dev serve --manifests /seed --upstream none
#
# Port 53 as non-root: like CoreDNS's image (setcap on /coredns), the interpreter binary gets
# the file capability cap_net_bind_service, so the process may bind ports below 1024 and
# nothing else. The capability must still be in the container's bounding set: run with
# `--cap-drop=ALL --cap-add=NET_BIND_SERVICE` (Kubernetes: capabilities drop ALL, add
# NET_BIND_SERVICE, as deploy/kdns.yaml does). With `--cap-drop=ALL` alone the kernel refuses
# to exec the interpreter at all (EPERM: a file capability outside the bounding set), exactly
# as with CoreDNS's image, so always add NET_BIND_SERVICE back. deploy/kdns.yaml also sets the
# namespaced sysctl net.ipv4.ip_unprivileged_port_start=53, so port 53 binds even where a
# runtime loses the file capability.
#
# Read-only root filesystem: nothing is written at run time (bytecode is compiled at build
# time and PYTHONDONTWRITEBYTECODE stops any later writes; logs go to stderr).
#
# Not built in kdns's CI: the development machines have no Docker engine.
# deploy/kind/swap-coredns.sh builds it where Docker runs.

# ---- build: turn the source tree into wheels (kdns and its runtime dependencies only) ----
# kdns's wheel carries the hot modules compiled with mypyc (kdns/native.py, setup.py), so
# this stage needs a C compiler and mypy; the run stage needs neither.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# README.md* : pyproject names README.md as the long description; copy it when present.
COPY pyproject.toml setup.py README.md* ./
COPY kdns ./kdns
RUN pip install 'setuptools>=77' 'mypy>=1.11' \
 && KDNS_COMPILE=1 pip wheel --no-build-isolation --wheel-dir /wheels .

# ---- run ----
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# Install kdns (no dev extras); compile the bytecode now, since the root filesystem is read-only
# at run time (the -x pattern skips the stdlib's deliberately invalid files, as CPython's own
# install does); then give the real interpreter binary the bind capability. libcap2-bin is only
# needed for setcap and is removed again.
RUN pip install --no-index --find-links /wheels kdns \
 && rm -rf /wheels \
 && python -m compileall -q -x 'bad_coding|badsyntax|lib2to3/tests/data' /usr/local/lib/python3.11 \
 && apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3)" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 kdns \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kdns

USER 65532:65532
WORKDIR /
EXPOSE 53/udp 53/tcp 8080/tcp 8181/tcp 9153/tcp

# No curl in slim images: python's urllib; a non-2xx status raises, so the exit code is 1.
# It assumes the default --health-addr (:8080).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]

# `docker run kdns:dev` = `kdns serve`; give other arguments to override CMD, starting with
# the subcommand (the Deployment passes `serve --dns-addr :53 ...`).
ENTRYPOINT ["kdns"]
CMD ["serve"]
