"""Reading a JSON `List` item by item.

`json.loads` of a 150 MB List (1M endpoints) peaks at ~600 MB of dicts; the objects that
outlive it are allocated into the holes, so pymalloc can return none of its arenas and the
process keeps ~650 MB RSS for ~25 MB of live data (bench/results/memory.md,
docs/benchmarking.md). Decoding one item at a time (`raw_decode` at an offset) and
converting it before the next keeps a single item's dicts alive. Only the plain shape is
walked here: a top-level object whose `kind` ends in "List" and whose `items` is an array.
Anything else, and any syntax error met while walking, goes to `json.loads` of the whole
text, so the result and the error text (line/column of RFC 8259 syntax errors) are those
of `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdns.sources.manifests.errors import ManifestError, too_deep, too_long_number


def json_error(path: Path, exc: json.JSONDecodeError) -> ManifestError:
    return ManifestError(
        f"{path}: line {exc.lineno} column {exc.colno}: JSON syntax error: {exc.msg}; "
        "fix the JSON syntax"
    )


_JSON_SPACE = " \t\n\r"  # RFC 8259 section 2: insignificant whitespace
_DECODER = json.JSONDecoder()


class _JsonShapeError(Exception):
    """The text is not the plain List shape (or not valid JSON): read it whole."""


@dataclass(slots=True)
class JsonList:
    """A JSON `List` document whose `items` are decoded one at a time as iterated."""

    path: Path
    kind: str
    text: str | None
    start: int  # offset of the `[` of items
    keys: frozenset[str]  # top-level keys up to `items`; empty = the rest was checked

    def items(self) -> Iterator[Any]:
        """Each item, decoded when asked; the text is released once iterated. When the
        rest of the object was not checked yet, it is checked after the last item."""
        text, self.text = self.text, None
        if text is None:
            return
        try:
            end = self.start
            for offset, item in _walk_array(text, self.start):
                end = offset
                if item is not _EMPTY:
                    yield item
            if self.keys:  # the keys after `items` were not read yet
                _object_rest(text, end, keys=self.keys)
        except (json.JSONDecodeError, _JsonShapeError):
            # Items before the error were already used; json.loads names the error
            # exactly as a whole-file read would have (only reached on broken files).
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise json_error(self.path, exc) from None
            except RecursionError:
                raise too_deep(self.path) from None
            except ValueError as exc:
                raise too_long_number(self.path, exc) from None
            raise ManifestError(
                f"{self.path}: a top-level key of the {self.kind} appears twice or after "
                "its items change its kind; write each key once"
            ) from None
        except RecursionError:
            raise too_deep(self.path) from None
        except ValueError as exc:  # an integer longer than Python converts (4300 digits)
            raise too_long_number(self.path, exc) from None


_EMPTY = object()  # the "element" an empty array reports with its end offset


def _space(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_SPACE:
        i += 1
    return i


def _walk_array(text: str, i: int) -> Iterator[tuple[int, Any]]:
    """(offset after it, value) of each element of the array whose `[` is at `i`; the
    last offset is just past the `]`. Raises json.JSONDecodeError or _JsonShapeError."""
    i = _space(text, i + 1)
    if text.startswith("]", i):
        yield i + 1, _EMPTY
        return
    while True:
        value, i = _DECODER.raw_decode(text, i)
        i = _space(text, i)
        if text.startswith("]", i):
            yield i + 1, value
            return
        if not text.startswith(",", i):
            raise _JsonShapeError
        yield i, value
        i = _space(text, i + 1)


def _object_rest(text: str, i: int, *, keys: frozenset[str]) -> None:
    """Check the rest of the top-level object after a value ending at `i`: well-formed,
    no key of `keys` again (`json.loads` would keep the last one), nothing after it."""
    while True:
        i = _space(text, i)
        if text.startswith("}", i):
            break
        if not text.startswith(",", i):
            raise _JsonShapeError
        key, i = _DECODER.raw_decode(text, _space(text, i + 1))
        if not isinstance(key, str) or key in keys:
            raise _JsonShapeError
        i = _space(text, i)
        if not text.startswith(":", i):
            raise _JsonShapeError
        _, i = _DECODER.raw_decode(text, _space(text, i + 1))
    if _space(text, i + 1) != len(text):
        raise _JsonShapeError


def json_list(path: Path, text: str) -> JsonList | None:
    """The List to stream when `text` is one object with a "...List" kind and an `items`
    array (in either order); None for any other shape or on any syntax error."""
    try:
        i = _space(text, 0)
        if not text.startswith("{", i):
            return None
        i = _space(text, i + 1)
        kind: object = None
        items_at = -1
        keys: set[str] = set()
        while not text.startswith("}", i):
            if keys:
                if not text.startswith(",", i):
                    return None
                i = _space(text, i + 1)
            key, i = _DECODER.raw_decode(text, i)
            if not isinstance(key, str) or key in keys:
                return None  # duplicate keys: the last one wins in json.loads
            keys.add(key)
            i = _space(text, i)
            if not text.startswith(":", i):
                return None
            i = _space(text, i + 1)
            if key == "items" and text.startswith("[", i):
                items_at = i
                if isinstance(kind, str) and kind.endswith("List"):
                    # Stream now; the keys after `items` are checked after the last item.
                    return JsonList(path, kind, text, items_at, frozenset(keys))
                i = _skip_array(text, i)  # `kind` may still follow (kubectl sorts keys)
            else:
                value, i = _DECODER.raw_decode(text, i)
                if key == "kind":
                    kind = value
            i = _space(text, i)
        if _space(text, i + 1) != len(text) or items_at < 0:
            return None
        if not (isinstance(kind, str) and kind.endswith("List")):
            return None
        return JsonList(path, kind, text, items_at, frozenset())
    except (json.JSONDecodeError, _JsonShapeError):
        return None


def _skip_array(text: str, i: int) -> int:
    """The offset just past the array whose `[` is at `i`, decoding (and dropping) each
    element in turn."""
    end = i
    for offset, _ in _walk_array(text, i):
        end = offset
    return end
