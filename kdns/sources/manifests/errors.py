"""The one error the manifests source raises, and where in the files an object came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdns.sources.convert import ConversionError


class ManifestError(Exception):
    """A manifest is unusable. `str()` is one line: file, document, field, what, fix."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object is: file, document and, inside a `List`, the item."""

    path: Path
    document: int  # 1-based
    prefix: str  # "items[3]." inside a List, else ""
    what: str  # "Service default/web"

    def __str__(self) -> str:
        return f"{self.path}: document {self.document} ({self.what})"

    def error(self, err: ConversionError) -> ManifestError:
        """`err` (a field of this object) as a ManifestError naming file and document."""
        return ManifestError(f"{self}: {self.prefix}{err}")

    def fail(self, field: str, problem: str, fix: str) -> ManifestError:
        """A ManifestError about `field` of this object."""
        return self.error(ConversionError(field, problem, fix))


def too_deep(path: Path) -> ManifestError:
    """RecursionError while parsing `path`."""
    return ManifestError(
        f"{path}: nested too deeply for kdns to read (no Kubernetes object is); "
        "flatten the document"
    )


def too_long_number(path: Path, exc: ValueError) -> ManifestError:
    """ValueError while parsing `path`: an integer longer than Python converts."""
    return ManifestError(
        f"{path}: a number too long to read ({' '.join(str(exc).split()[:8])}); no "
        "Kubernetes field takes one that long"
    )


BUILTIN = Path("<builtin>")
"""The path of objects kdns adds itself (the `kubernetes` Service)."""
