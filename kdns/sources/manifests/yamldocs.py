"""YAML documents, one at a time, with bounds PyYAML does not have (see `limits`).

- Document size: a document is parsed whole, so one above `MAX_YAML_DOCUMENT_BYTES` is
  refused before parsing (documents are found by their `---`/`...` lines, which YAML
  forbids inside any scalar).
- Merge keys (`<<`): PyYAML copies the merged pairs into each mapping; the copies a file
  makes are counted while they are made.
- Aliases (`*name`): PyYAML shares an aliased value; every later walk sees it once per
  alias. A document with anchors is measured as if its aliases were expanded (a walk of
  its distinct values only) and refused when that repeats too much, or refers to itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, SequenceNode

from kdns.sources.manifests import limits

try:  # libyaml's parser when PyYAML has it: the pure-Python one is ~10x slower
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_SEPARATOR = re.compile(rb"^(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.MULTILINE)


class LimitError(Exception):
    """A bound of `limits` was passed; `str()` is the problem and the fix, `line` where."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def check_document_sizes(data: bytes) -> None:
    """Raise LimitError when a document of the YAML stream `data` is bigger than
    `MAX_YAML_DOCUMENT_BYTES`."""
    if len(data) <= limits.MAX_YAML_DOCUMENT_BYTES:
        return
    start = 0
    for match in [*_SEPARATOR.finditer(data), None]:
        end = len(data) if match is None else match.start()
        if end - start > limits.MAX_YAML_DOCUMENT_BYTES:
            raise LimitError(
                f"a YAML document of {limits.size_text(end - start)}, more than the "
                f"{limits.size_text(limits.MAX_YAML_DOCUMENT_BYTES)} kdns parses at once; write "
                "one document per object (separated by ---), or a JSON List, which is read "
                "item by item",
                line=data.count(b"\n", 0, start) + 1,
            )
        start = end


class _BoundedLoader(_Loader):
    """PyYAML's safe loader, counting the pairs merge keys copy in the whole stream."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.copied = 0

    def flatten_mapping(self, node: MappingNode) -> None:
        """As PyYAML's: merged pairs go first (the first source listed wins, the mapping's
        own keys override them), each key once; with `copied` bounded."""
        merge: list[tuple[Any, Any]] = []
        keys: set[int] = set()
        index = 0
        while index < len(node.value):
            key_node, value_node = node.value[index]
            if key_node.tag == _MERGE:
                del node.value[index]
                for source in self._merge_sources(node, value_node):
                    self.flatten_mapping(source)
                    self.copied += len(source.value)
                    if self.copied > limits.MAX_ALIAS_VALUES:
                        raise LimitError(_alias_message("merge keys (<<) copy"), _line(node))
                    for pair in source.value:
                        if id(pair[0].value) not in keys:
                            keys.add(id(pair[0].value))
                            merge.append(pair)
            elif key_node.tag == _VALUE:
                key_node.tag = "tag:yaml.org,2002:str"
                index += 1
            else:
                index += 1
        if merge:
            node.value = merge + node.value

    @staticmethod
    def _merge_sources(node: MappingNode, value: Any) -> list[MappingNode]:
        sources = value.value if isinstance(value, SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"expected a mapping or list of mappings for merging, but found {source.id}",
                    source.start_mark,
                )
        return list(sources)


def _line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return None if mark is None else int(mark.line) + 1


def _alias_message(what: str) -> str:
    return (
        f"{what} more than {limits.MAX_ALIAS_VALUES} values in one file; write the repeated "
        "values out, or split the file"
    )


def documents(text: str, *, anchors: bool) -> Iterator[Any]:
    """The documents of a YAML stream, one at a time; with `anchors` (the text has `&`),
    each is measured as if its aliases were expanded. Raises LimitError, yaml.YAMLError,
    or RecursionError/ValueError as PyYAML does."""
    loader = _BoundedLoader(text)
    repeated = 0
    number = 0
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            number += 1
            document = loader.get_data()
            if anchors:
                repeated += _repeated_values(document, number)
                if repeated + loader.copied > limits.MAX_ALIAS_VALUES:
                    raise LimitError(
                        f"document {number}: " + _alias_message("aliases (*name) repeat")
                    )
            yield document
    finally:
        loader.dispose()


def _weight(value: Any) -> int:
    """A scalar's share of the bound: 1, and 1 more per 64 characters of a string."""
    return 1 + len(value) // 64 if isinstance(value, str | bytes) else 1


def _repeated_values(document: Any, number: int) -> int:
    """How many more values `document` holds with its aliases expanded than without:
    each distinct list or mapping is walked once (children before parents). A document
    that contains itself repeats without end."""
    expanded: dict[int, int] = {}  # id of a list/mapping -> its expanded size
    distinct = 0
    active: set[int] = set()  # on the path from the root: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        value, done = stack.pop()
        key = id(value)
        children = value.items() if isinstance(value, dict) else value
        if done:
            active.discard(key)
            total = 1
            for child in children:
                for item in child if isinstance(value, dict) else (child,):
                    total += expanded[id(item)] if id(item) in expanded else _weight(item)
            expanded[key] = total
            continue
        if not isinstance(value, dict | list) or key in expanded:
            continue
        if key in active:
            raise LimitError(
                f"document {number}: a YAML alias refers to a value that contains it; "
                "remove the loop"
            )
        active.add(key)
        stack.append((value, True))
        distinct += 1
        for child in children:
            for item in child if isinstance(value, dict) else (child,):
                if isinstance(item, dict | list):
                    stack.append((item, False))
                else:
                    distinct += _weight(item)
    return expanded[id(document)] - distinct if id(document) in expanded else 0
