"""Builds kdns's compiled modules (mypyc) when KDNS_COMPILE=1; metadata is in pyproject.toml.

`make setup` runs `KDNS_COMPILE=1 python setup.py build_ext --inplace` in the venv (mypy is a
dev dependency); the Dockerfile builds a compiled wheel the same way. Without KDNS_COMPILE,
kdns installs as pure Python. Which modules, and why: kdns/native.py.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _native() -> Any:
    spec = importlib.util.spec_from_file_location("_kdns_native", ROOT / "kdns" / "native.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ext_modules() -> list[Any]:
    if os.environ.get("KDNS_COMPILE", "") in ("", "0"):
        return []
    from mypyc.build import mypycify

    native = _native()
    package = ROOT / "kdns"
    sources = [str(native.source_path(m, package).relative_to(ROOT)) for m in native.COMPILED]
    # No digest until the build has succeeded (BuildExt): an older .so is never taken for
    # a build of these sources.
    (package / native.DIGEST_FILE).unlink(missing_ok=True)
    # Nor is an extension left from an earlier build, of a module no longer compiled.
    for old in package.rglob("*.so"):
        old.unlink()
    return list(
        mypycify(
            ["--config-file", str(ROOT / "pyproject.toml"), "--ignore-missing-imports", *sources],
            opt_level="3",
            group_name="kdns.compiled",  # the shared library: kdns/compiled__mypyc.*.so
        )
    )


class BuildExt(build_ext):
    """Records the digest of the compiled sources once the extensions are built, beside
    them: in the source tree (--inplace) or in the wheel."""

    def run(self) -> None:
        super().run()
        if not self.extensions:
            return
        native = _native()
        text = native.digest(ROOT / "kdns") + "\n"
        where = ROOT if self.inplace else Path(self.build_lib)
        (where / "kdns" / native.DIGEST_FILE).write_text(text)


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": BuildExt})
