"""The modules kdns runs compiled, and whether a compiled build may be used.

Every query goes through the same dozen modules (wire decoding, the server and its fast
path, the chain, the plugins of the default chain, the forwarder, the counters, the batched
socket calls). `make setup` compiles them to C extensions with mypyc (setup.py, with
KDNS_COMPILE=1), from the same sources, whose type annotations mypy --strict already
checks. A compiled module is a `.so` beside its `.py`, and Python imports the `.so` first.

So that an edited source is never shadowed by an older build, the build records a digest
of the sources it compiled (DIGEST_FILE). At import (kdns/__init__.py), `use_compiled`
compares it with the sources on disk: if any differs, or KDNS_PURE=1 is set, the listed
modules are imported from their `.py` files instead, all of them (compiled modules call
each other directly, so a mix would run old code), and one line on stderr says why.
`make setup` (and so `make run` and `make test`) rebuilds when a source changes.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

COMPILED: Final = (
    "kdns.dns.wire.common",
    "kdns.dns.wire.query",
    "kdns.dns.wire.relay",
    "kdns.net.mmsg",
    "kdns.observe.stats",
    "kdns.plugins.cache",
    "kdns.plugins.errors",
    "kdns.plugins.forward",
    "kdns.plugins.kubernetes",
    "kdns.plugins.loop",
    "kdns.serve.chain",
    "kdns.serve.fastpath",
    "kdns.serve.server",
    "kdns.serve.transport",
    "kdns.upstream.forward",
)
DIGEST_FILE: Final = "native.digest"  # in the kdns package directory, written by setup.py
PURE_ENV: Final = "KDNS_PURE"

PACKAGE: Final = Path(__file__).resolve().parent


def source_path(module: str, package: Path = PACKAGE) -> Path:
    """The `.py` file of a module of `COMPILED` ("kdns.serve.server" -> serve/server.py)."""
    return package.joinpath(*module.split(".")[1:]).with_suffix(".py")


def digest(package: Path = PACKAGE, modules: Sequence[str] = COMPILED) -> str:
    """sha256 over the compiled modules' names and sources, in order."""
    h = hashlib.sha256()
    for module in modules:
        h.update(module.encode() + b"\0")
        h.update(source_path(module, package).read_bytes() + b"\0")
    return h.hexdigest()


def why_pure(package: Path = PACKAGE, environ: dict[str, str] | None = None) -> str | None:
    """Why the compiled modules must not be used (None: they may). Also says when there is
    no compiled build at all."""
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV, "") not in ("", "0"):
        return f"{PURE_ENV}={env[PURE_ENV]} is set"
    recorded = package / DIGEST_FILE
    if not recorded.is_file():
        return "no compiled build (make setup compiles one)"
    if recorded.read_text().strip() != digest(package):
        changed = [m for m in COMPILED if _stale(m, package, recorded)]
        what = ", ".join(str(source_path(m, package).relative_to(package)) for m in changed)
        what = what or "the module list"
        return f"sources changed since the compiled build ({what}); make setup rebuilds it"
    return None


def _stale(module: str, package: Path, recorded: Path) -> bool:
    return source_path(module, package).stat().st_mtime > recorded.stat().st_mtime


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the modules of `COMPILED` from their `.py` files, never from a `.so`."""

    def __init__(self, package: Path) -> None:
        self.package = package

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname, self.package))


def use_compiled(package: Path = PACKAGE) -> str | None:
    """At import of kdns: keep the compiled modules if they match the sources, or import the
    sources instead. Returns the reason for pure Python, or None (compiled, if built)."""
    reason = why_pure(package)
    if reason is None:
        return None
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(package))
    if reason.startswith("sources changed"):
        print(f"kdns: running the Python sources: {reason}", file=sys.stderr)
    return reason


def compiled_modules() -> list[str]:
    """The modules of `COMPILED` imported so far that run compiled."""
    return [
        m
        for m in COMPILED
        if m in sys.modules and not str(getattr(sys.modules[m], "__file__", "")).endswith(".py")
    ]


def coverage_omit(package: Path = PACKAGE, environ: dict[str, str] | None = None) -> list[str]:
    """The sources coverage cannot measure here: those of `COMPILED` when the compiled build
    is in use (coverage traces Python bytecode, and a compiled module runs none). `make
    pytest` leaves them out of its report and says so; `KDNS_PURE=1 make pytest` measures
    every module."""
    if why_pure(package, environ) is not None:
        return []
    return [str(source_path(m, package)) for m in COMPILED]
