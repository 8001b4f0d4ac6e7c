"""Finding the manifest files and reading their objects, one document at a time.

A YAML stream is parsed lazily, so only one document's dicts are alive while it is
converted; so is a JSON `List`'s `items` (see `jsonlist`). Peak memory of a big load:
docs/benchmarking.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdns.sources.manifests.errors import ManifestError, Origin
from kdns.sources.manifests.jsonlist import JsonList, json_error, json_list

SUFFIXES = (".yaml", ".yml", ".json")


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The files to read: each file given, and `*.yaml|*.yml|*.json` under each folder,
    recursively, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
            files.extend(sorted(found))
        elif path.is_file():
            files.append(path)
        else:
            raise ManifestError(f"{path}: no such file or folder; give a manifest file or folder")
    return files


def read_objects(path: Path) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    """Each object of `path` with where it came from, `List` documents flattened. A syntax
    error is raised when the parser reaches it."""
    return _objects(path, _documents(path))


def _documents(path: Path) -> Iterator[Any]:
    """The documents of one file, one at a time."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}; check the file") from None
    if path.suffix == ".json":
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
        return
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one is ~10x slower.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        yield from yaml.load_all(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ManifestError(
            f"{path}: {where}YAML syntax error: {problem}; fix the YAML syntax"
        ) from None
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ManifestError(f"{path}: YAML error: {one_line}; fix the YAML syntax") from None


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
        if not isinstance(doc, Mapping):
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
    if not isinstance(item, Mapping):
        raise ManifestError(
            f"{path}: document {number} ({kind}): items[{i}]: is not an object; "
            "each item must be a Kubernetes object"
        )
    return _describe(Origin(path, number, f"items[{i}].", kind), item), item


def _describe(origin: Origin, obj: Mapping[str, Any]) -> Origin:
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) and kind else "object without kind"
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    what = kind
    if isinstance(name, str) and name:
        if kind == "Namespace":
            what = f"{kind} {name}"
        else:
            what = f"{kind} {ns if isinstance(ns, str) and ns else 'default'}/{name}"
    return Origin(origin.path, origin.document, origin.prefix, what)
