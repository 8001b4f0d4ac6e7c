"""Finding the manifest files and reading their objects, one document at a time.

A YAML stream is parsed lazily (`yamldocs`), so only one document's dicts are alive while
it is converted; so is a JSON `List`'s `items` (`jsonlist`). Peak memory of a big load:
docs/benchmarking.md. A file above `MAX_FILE_BYTES` is refused before it is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kdns.sources.convert import is_mapping
from kdns.sources.manifests import limits
from kdns.sources.manifests.errors import ManifestError, Origin, too_deep, too_long_number
from kdns.sources.manifests.jsonlist import JsonList, json_error, json_list
from kdns.sources.manifests.yamldocs import LimitError, check_document_sizes, documents

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Found:
    """The files to read, and one warning line per thing skipped that looks meant."""

    files: list[Path]
    warnings: list[str]


def find_files(paths: Sequence[Path]) -> Found:
    """Each file given, and `*.yaml|*.yml|*.json` under each folder, recursively, sorted;
    each real file once (a symbolic link to a file already listed is not read twice, as in
    a mounted ConfigMap's `..data` layout). A path that does not exist is an error; a folder
    without manifests and a dangling symbolic link are warnings."""
    files: list[Path] = []
    warnings: list[str] = []
    real: set[str] = set()
    for path in paths:
        if path.is_dir():
            files.extend(p for p in _folder_files(path, warnings) if _first(p, real))
        elif path.is_file():
            if _first(path, real):
                files.append(path)
        elif path.exists():
            raise ManifestError(
                f"{path}: not a regular file or a folder; give a manifest file or folder"
            )
        else:
            raise ManifestError(f"{path}: no such file or folder; give a manifest file or folder")
    return Found(files, sorted(warnings))


def _folder_files(folder: Path, warnings: list[str]) -> list[Path]:
    """The manifest files under `folder`, sorted; warnings for what looks meant but is not
    read."""
    found: list[Path] = []
    for p in folder.rglob("*"):
        if p.suffix not in SUFFIXES:
            continue
        if p.is_file():
            found.append(p)
        elif p.is_symlink() and not p.exists():
            warnings.append(
                f"{p}: skipped, a symbolic link to {os.readlink(p)}, which does not exist; "
                "fix or remove the link"
            )
    if not found:
        warnings.append(
            f"{folder}: no manifest files (*.yaml, *.yml, *.json) in this folder, so only the "
            "built-in kubernetes Service is served; add manifests or fix the path"
        )
    return sorted(found)


def _first(path: Path, real: set[str]) -> bool:
    """Whether `path` is the first name met of its file."""
    target = os.path.realpath(path)
    if target in real:
        return False
    real.add(target)
    return True


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The files `find_files` reads."""
    return find_files(paths).files


def read_objects(path: Path) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    """Each object of `path` with where it came from, `List` documents flattened. A syntax
    error is raised when the parser reaches it."""
    return _objects(path, _documents(path))


def _read(path: Path) -> bytes:
    """The file's bytes; refused above `limits.MAX_FILE_BYTES`, checked before reading."""
    limit = f"more than the {limits.size_text(limits.MAX_FILE_BYTES)} kdns reads from one file"
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.MAX_FILE_BYTES:
                raise ManifestError(
                    f"{path}: {limits.size_text(size)}, {limit}; split it into several files"
                )
            data = f.read(limits.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc}; check the file") from None
    if len(data) > limits.MAX_FILE_BYTES:  # it grew while being read
        raise ManifestError(f"{path}: {limit}; split it into several files")
    return data


def _decode(path: Path, data: bytes) -> str:
    """The text, with line ends as Python's text mode gives them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: cannot read: {exc}; save the file as UTF-8") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _documents(path: Path) -> Iterator[Any]:
    """The documents of one file, one at a time."""
    data = _read(path)
    text = _decode(path, data)
    try:
        if path.suffix == ".json":
            del data
            stream = _json_documents(path, text)
        else:
            check_document_sizes(data)
            anchors = b"&" in data  # no anchor, no alias: nothing to measure
            del data
            stream = documents(text, anchors=anchors)
        del text  # only the parser holds the text: it can go as soon as the parser is done
        yield from stream
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ManifestError(
            f"{path}: {_where(mark)}YAML syntax error: {problem}; fix the YAML syntax"
        ) from None
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ManifestError(f"{path}: YAML error: {one_line}; fix the YAML syntax") from None
    except LimitError as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise ManifestError(f"{path}: {where}{exc}") from None
    except RecursionError:
        raise too_deep(path) from None
    except ValueError as exc:  # an integer longer than Python converts (4300 digits)
        raise too_long_number(path, exc) from None


def _where(mark: Any) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""


def _json_documents(path: Path, text: str) -> Iterator[Any]:
    streamed = json_list(path, text)
    if streamed is not None:
        del text  # the List's items hold their own reference while they are read
        yield streamed
        return
    try:
        document = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise json_error(path, exc) from None
    del text
    if document is not None:
        yield document


def _objects(path: Path, documents: Iterable[Any]) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    """Each object with where it came from; `List` documents are flattened, and each item
    is dropped from its list once handed out (a big JSON List is not held twice)."""
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue  # an empty document (`---` at the end)
        if isinstance(doc, JsonList):
            for i, item in enumerate(doc.items()):
                yield _list_item(path, number, doc.kind, i, item)
            continue
        if not is_mapping(doc):
            raise ManifestError(
                f"{path}: document {number}: is a {type(doc).__name__}, not an object; "
                "each document must be a Kubernetes object with apiVersion, kind and metadata"
            )
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(
                    f"{path}: document {number} ({kind}): items: is not a list; "
                    "write the objects as a list"
                )
            items.reverse()  # pop from the end: O(1) per item
            for i in range(len(items)):
                yield _list_item(path, number, kind, i, items.pop())
        else:
            yield _describe(Origin(path, number, "", ""), doc), doc


def _list_item(
    path: Path, number: int, kind: str, i: int, item: Any
) -> tuple[Origin, Mapping[str, Any]]:
    """Item `i` (0-based) of the List that is document `number` of `path`."""
    if not is_mapping(item):
        raise ManifestError(
            f"{path}: document {number} ({kind}): items[{i}]: is not an object; "
            "each item must be a Kubernetes object"
        )
    return _describe(Origin(path, number, f"items[{i}].", kind), item), item


def _describe(origin: Origin, obj: Mapping[str, Any]) -> Origin:
    """`origin` with what the object is: "Service default/web" (long names cut)."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        kind = "object without kind"
    elif len(kind) > _CUT:
        kind = _cut(kind)
    meta = obj.get("metadata")
    name = meta.get("name") if is_mapping(meta) else None
    ns = meta.get("namespace") if is_mapping(meta) else None
    what = kind
    if isinstance(name, str) and name:
        name = name if len(name) <= _CUT else _cut(name)
        if kind == "Namespace":
            what = f"{kind} {name}"
        else:
            ns = (ns if len(ns) <= _CUT else _cut(ns)) if isinstance(ns, str) and ns else "default"
            what = f"{kind} {ns}/{name}"
    return Origin(origin.path, origin.document, origin.prefix, what)


_CUT = 80  # characters of a name a description shows


def _cut(text: str) -> str:
    return text if len(text) <= _CUT else text[:_CUT] + "..."
