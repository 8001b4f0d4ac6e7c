"""Kubernetes label selectors: parse `environment in (staging, qa),app=nginx`, match labels.

The syntax is the API's (the `labelSelector` query parameter, `kubectl -l`), restricted as
CoreDNS restricts its `labels` and `namespace_labels` options (they go through a
`LabelSelector`, which has no numeric `>`/`<`):

* requirements are separated by commas and all must hold;
* `key=value` and `key==value`: the label is present with that value;
* `key!=value`: the label is absent or has another value;
* `key in (v1, v2)`: present with one of the values; `key notin (v1, v2)`: absent or none
  of them (a set needs at least one value);
* `key`: present; `!key`: absent.

Keys are qualified names (`[prefix/]name`: a DNS subdomain prefix of at most 253
characters, a name of at most 63 of `A-Za-z0-9-_.` starting and ending alphanumeric);
values are empty or the same form as a name. `str()` is a canonical form (requirements in
key order, set values sorted) that the API accepts as `labelSelector`.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SPECIAL = "!=,()<>"


class SelectorError(ValueError):
    """The selector text is not a valid label selector; the message says where and why."""


class Op(enum.StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()  # sorted; one value for = and !=

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op is Op.EXISTS:
            return self.key in labels
        if op is Op.NOT_EXISTS:
            return self.key not in labels
        value = labels.get(self.key)
        if op in (Op.EQUALS, Op.IN):
            return value is not None and value in self.values
        return value is None or value not in self.values

    def __str__(self) -> str:
        op = self.op
        if op is Op.EXISTS:
            return self.key
        if op is Op.NOT_EXISTS:
            return f"!{self.key}"
        if op in (Op.EQUALS, Op.NOT_EQUALS):
            return f"{self.key}{op.value}{self.values[0]}"
        return f"{self.key} {op.value} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label selector: every requirement must hold."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_selector(text: str) -> Selector:
    """Parse a label selector; raises SelectorError naming the problem."""
    tokens = list(_tokens(text))
    if not tokens:
        raise SelectorError("is empty; write e.g. app=nginx or environment in (staging, qa)")
    reader = _Reader(tokens, text)
    requirements: list[Requirement] = []
    while True:
        requirements.append(reader.requirement())
        if reader.at_end():
            break
        reader.expect(",", "a comma between requirements")
    ordered = sorted(dict.fromkeys(requirements), key=lambda r: (r.key, r.op.value, r.values))
    return Selector(tuple(ordered))


def _tokens(text: str) -> Iterator[str]:
    """Words and the special characters (`!=` and `==` as one token each)."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _SPECIAL:
            if c in "!=" and i + 1 < n and text[i + 1] == "=":
                yield c + "="
                i += 2
            else:
                yield c
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            yield text[start:i]


class _Reader:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.at = 0
        self.text = text

    def at_end(self) -> bool:
        return self.at >= len(self.tokens)

    def peek(self) -> str | None:
        return None if self.at_end() else self.tokens[self.at]

    def take(self) -> str | None:
        token = self.peek()
        self.at += 1
        return token

    def expect(self, token: str, what: str) -> None:
        got = self.take()
        if got != token:
            raise SelectorError(f"found {_shown(got)} where {what} belongs")

    def requirement(self) -> Requirement:
        token = self.take()
        if token == "!":
            return Requirement(_key(self.take()), Op.NOT_EXISTS)
        key = _key(token)
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, Op.EXISTS)
        self.take()
        if op in ("=", "=="):
            return Requirement(key, Op.EQUALS, (self.value(),))
        if op == "!=":
            return Requirement(key, Op.NOT_EQUALS, (self.value(),))
        if op in ("in", "notin"):
            return Requirement(key, Op.IN if op == "in" else Op.NOT_IN, self.values(key, op))
        if op in ("<", ">"):
            raise SelectorError(
                f"{key} {op}: numeric comparisons are not allowed in label selectors; "
                "use =, !=, in or notin"
            )
        raise SelectorError(
            f"found {_shown(op)} after {key}; write {key}=VALUE, {key}!=VALUE, "
            f"{key} in (VALUES), {key} notin (VALUES), {key} or !{key}"
        )

    def value(self) -> str:
        token = self.peek()
        if token is None or token == ",":
            return ""  # `key=` selects the empty value, as the API does
        self.take()
        return _value(token)

    def values(self, key: str, op: str) -> tuple[str, ...]:
        self.expect("(", f"the ( opening the values of {key} {op}")
        found: list[str] = []
        while True:
            token = self.take()
            if token == ")" and not found:
                raise SelectorError(f"{key} {op} (): give at least one value")
            if token is None:
                raise SelectorError(f"found the end in the values of {key} {op}")
            if token in (",", ")"):  # an empty value between commas
                found.append("")
            else:
                found.append(_value(token))
                token = self.take()
            if token == ")":
                return tuple(sorted(set(found)))
            if token != ",":
                raise SelectorError(f"found {_shown(token)} in the values of {key} {op}")


def _shown(token: str | None) -> str:
    return "the end" if token is None else repr(token)


def _key(token: str | None) -> str:
    if token is None or token in _SPECIAL or token in ("==", "!="):
        raise SelectorError(f"found {_shown(token)} where a label key belongs")
    prefix, slash, name = token.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        raise SelectorError(
            f"label key {token!r}: the prefix before / must be a lower-case DNS subdomain "
            "of at most 253 characters"
        )
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        raise SelectorError(
            f"label key {token!r}: the name must be 1-63 characters of A-Z, a-z, 0-9, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return token


def _value(token: str) -> str:
    if token in _SPECIAL or token in ("==", "!="):
        raise SelectorError(f"found {token!r} where a label value belongs")
    if len(token) > 63 or not _NAME.fullmatch(token):
        raise SelectorError(
            f"label value {token!r} must be at most 63 characters of A-Z, a-z, 0-9, '-', "
            "'_' and '.', starting and ending with a letter or digit"
        )
    return token


__all__ = ["Op", "Requirement", "Selector", "SelectorError", "parse_selector"]
