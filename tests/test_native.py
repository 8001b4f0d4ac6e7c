"""kdns/native.py: a compiled build is used only when it was built from the sources on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdns import native

ROOT = Path(__file__).resolve().parent.parent


def package_copy(tmp_path: Path) -> Path:
    """The compiled modules' sources, in a kdns/ layout of their own."""
    package = tmp_path / "kdns"
    for module in native.COMPILED:
        target = native.source_path(module, package)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(native.source_path(module), target)
    return package


def test_every_compiled_module_has_its_source() -> None:
    for module in native.COMPILED:
        assert native.source_path(module).is_file(), module


def test_a_build_of_these_sources_may_be_used(tmp_path: Path) -> None:
    package = package_copy(tmp_path)
    (package / native.DIGEST_FILE).write_text(native.digest(package) + "\n")
    assert native.why_pure(package, environ={}) is None


def test_no_build_at_all_means_the_sources(tmp_path: Path) -> None:
    reason = native.why_pure(package_copy(tmp_path), environ={})
    assert reason is not None
    assert "no compiled build" in reason


def test_an_edited_source_is_named_and_disables_the_build(tmp_path: Path) -> None:
    package = package_copy(tmp_path)
    (package / native.DIGEST_FILE).write_text(native.digest(package) + "\n")
    edited = native.source_path("kdns.serve.server", package)
    edited.write_text(edited.read_text() + "\n# an edit\n")
    stamp = (package / native.DIGEST_FILE).stat().st_mtime
    os.utime(edited, (stamp + 10, stamp + 10))
    reason = native.why_pure(package, environ={})
    assert reason is not None
    assert "serve/server.py" in reason
    assert "wire/common.py" not in reason


def test_the_digest_covers_every_listed_module(tmp_path: Path) -> None:
    package = package_copy(tmp_path)
    before = native.digest(package)
    for module in native.COMPILED:
        path = native.source_path(module, package)
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert native.digest(package) != before, module
        path.write_bytes(original)
    assert native.digest(package) == before


@pytest.mark.parametrize("value", ["1", "yes"])
def test_kdns_pure_overrides_a_good_build(tmp_path: Path, value: str) -> None:
    package = package_copy(tmp_path)
    (package / native.DIGEST_FILE).write_text(native.digest(package) + "\n")
    assert native.why_pure(package, environ={native.PURE_ENV: value}) is not None
    assert native.why_pure(package, environ={native.PURE_ENV: "0"}) is None


def test_coverage_leaves_out_exactly_the_modules_that_run_compiled(tmp_path: Path) -> None:
    package = package_copy(tmp_path)
    assert native.coverage_omit(package, environ={}) == []  # (no build: all measured)
    (package / native.DIGEST_FILE).write_text(native.digest(package) + "\n")
    omitted = native.coverage_omit(package, environ={})
    assert sorted(omitted) == sorted(str(native.source_path(m, package)) for m in native.COMPILED)
    assert all(Path(p).is_file() for p in omitted)
    assert native.coverage_omit(package, environ={native.PURE_ENV: "1"}) == []


def test_kdns_pure_imports_every_module_from_its_source() -> None:
    """In a fresh interpreter, KDNS_PURE=1: all the listed modules come from .py files,
    whether or not a compiled build is present."""
    code = (
        "import importlib, kdns, kdns.native as n\n"
        "for m in n.COMPILED: print(importlib.import_module(m).__file__)\n"
    )
    env = {**os.environ, native.PURE_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [str(native.source_path(m)) for m in native.COMPILED]


def _current_build() -> bool:
    """A compiled build of exactly these sources is here (make setup after the last edit)."""
    recorded = ROOT / "kdns" / native.DIGEST_FILE
    return recorded.is_file() and recorded.read_text().strip() == native.digest()


@pytest.mark.skipif(
    not _current_build() or bool(os.environ.get(native.PURE_ENV)),
    reason="no compiled build of these sources (make setup builds one), or KDNS_PURE is set",
)
def test_a_current_build_is_what_runs() -> None:
    code = (
        "import importlib, kdns, kdns.native as n\n"
        "for m in n.COMPILED: importlib.import_module(m)\n"
        "print(kdns.PURE_REASON); print(len(n.compiled_modules()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["None", str(len(native.COMPILED))]
