"""The part of Go's text/template that CoreDNS's `template` plugin records are written in.

Supported, with Go's meaning: text; `{{ .Name }}`, `{{ .Zone }}`, `{{ .Class }}`,
`{{ .Type }}`, `{{ .Regex }}`, `{{ .Remote }}`; `{{ index .Match N }}`; `{{ .Group.NAME }}`
and `{{ index .Group "NAME" }}`; `{{ parseInt ARG BASE BITS }}` (strconv.ParseUint);
comments `{{/* ... */}}`; the trim markers `{{- ` and ` -}}`. Anything else (pipelines,
variables, `if`/`range`, `.Message`, `.Meta`, ...) is refused by `compile_template` with
a message that names it, so a Corefile that loads renders the way CoreDNS would.

As in Go: a missing `.Group.NAME` prints `<no value>`, a missing `index .Group "NAME"`
prints nothing, `index .Match N` past the end and a `parseInt` that fails are errors at
render time (`TemplateError`; CoreDNS then answers SERVFAIL).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_FIELDS = ("Name", "Zone", "Class", "Type", "Regex", "Remote")
_REFUSED_FIELDS = {
    "Message": "the whole query message",
    "Question": "the question as a structure",
    "Meta": "metadata (kdns has no metadata plugin)",
    "Var": "variables set by `var` (kdns does not implement `var`)",
}
_KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue", "and", "or", "not", "len", "print", "printf", "println", "html",
             "js", "urlquery", "slice", "call", "eq", "ne", "lt", "le", "gt", "ge")  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|[^\s"`]+)')
NO_VALUE = "<no value>"  # what Go prints for a missing map key


class TemplateError(ValueError):
    """A template kdns cannot read, or one that failed to render."""


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # Name, Zone, Class, Type, Regex, Remote


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    dotted: bool  # `.Group.key` (missing: <no value>) or `index .Group "key"` (missing: "")


@dataclass(frozen=True, slots=True)
class MatchAt:
    index: int


@dataclass(frozen=True, slots=True)
class ParseInt:
    arg: Field | Group | MatchAt | Text
    base: int
    bits: int


Node = Text | Field | Group | MatchAt | ParseInt


@dataclass(frozen=True, slots=True)
class Data:
    """What a template sees."""

    name: str = ""
    zone: str = ""
    qclass: str = ""
    qtype: str = ""
    regex: str = ""
    remote: str = ""
    match: Sequence[str] = ()
    group: Mapping[str, str] | None = None


def compile_template(text: str) -> tuple[Node, ...]:
    """The nodes of `text`; raises TemplateError naming what is not supported."""
    nodes: list[Node] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            nodes.append(Text(text[pos:]))
            break
        literal = text[pos:start]
        inner_start = start + 2
        if text[inner_start : inner_start + 2] in ("- ", "-\t", "-\r", "-\n"):
            literal = literal.rstrip(" \t\r\n")
            inner_start += 1
        end = text.find("}}", inner_start)
        if end < 0:
            raise TemplateError(f"unclosed action: {text[start:]!r} has no }}}}")
        inner_end = end
        trim_right = text[end - 1 : end] == "-" and text[end - 2 : end - 1] in (
            " ",
            "\t",
            "\r",
            "\n",
        )
        if trim_right:
            inner_end -= 1
        nodes.append(Text(literal))
        action = text[inner_start:inner_end].strip()
        pos = end + 2
        if trim_right:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
        if action.startswith("/*"):
            if not action.endswith("*/"):
                raise TemplateError(f"unclosed comment in {{{{{action}}}}}")
            continue
        nodes.append(_action(action))
    return tuple(n for n in nodes if not (isinstance(n, Text) and not n.text))


def _words(action: str) -> list[str]:
    words: list[str] = []
    pos = 0
    while pos < len(action):
        match = _TOKEN.match(action, pos)
        if match is None:
            break
        words.append(match.group(1))
        pos = match.end()
    return words


def _action(action: str) -> Node:
    shown = "{{ " + action + " }}"
    if not action:
        raise TemplateError(f"empty action {shown}")
    bare = _unquoted(action)
    for mark, what in (("|", "pipelines"), ("$", "variables"), ("(", "parentheses")):
        if mark in bare:
            raise TemplateError(f"{shown} uses {what}, which kdns does not support")
    words = _words(action)
    head = words[0]
    if head == "index":
        if len(words) != 3:
            raise TemplateError(f'{shown}: write `index .Match N` or `index .Group "NAME"`')
        return _index(words[1], words[2], shown)
    if head == "parseInt":
        if len(words) != 4:
            raise TemplateError(f"{shown}: write `parseInt ARG BASE BITS`")
        arg = _operand(words[1], shown)
        if isinstance(arg, ParseInt):
            raise TemplateError(f"{shown}: parseInt of parseInt is not supported")
        return ParseInt(arg, _int(words[2], shown), _int(words[3], shown))
    if head in _KEYWORDS:
        raise TemplateError(f"{shown} uses {head!r}, which kdns does not support")
    if len(words) != 1:
        if head.startswith("."):
            _operand(head, shown)  # a field kdns refuses is named first
        raise TemplateError(f"{shown}: kdns supports one field or index/parseInt per action")
    node = _operand(head, shown)
    if isinstance(node, Text):
        raise TemplateError(f"{shown}: a literal needs no action; write the text itself")
    return node


def _unquoted(action: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', "", action)


def _operand(word: str, shown: str) -> Field | Group | MatchAt | Text | ParseInt:
    if word.startswith(('"', "`")):
        return Text(_string(word, shown))
    if not word.startswith("."):
        raise TemplateError(f"{shown} uses {word!r}, which kdns does not support")
    path = word[1:].split(".")
    if not all(_IDENT.fullmatch(p) for p in path):
        raise TemplateError(f"{shown}: {word!r} is not a field")
    top = path[0]
    if top in _REFUSED_FIELDS:
        why = _REFUSED_FIELDS[top]
        raise TemplateError(f"{shown} uses .{top} ({why}), which kdns does not support")
    if top == "Group":
        if len(path) != 2:
            raise TemplateError(f'{shown}: write .Group.NAME or index .Group "NAME"')
        return Group(path[1], dotted=True)
    if top == "Match":
        raise TemplateError(f"{shown}: write `index .Match N` for one match")
    if top not in _FIELDS or len(path) != 1:
        raise TemplateError(
            f"{shown} uses {word}; the fields are .Name, .Zone, .Class, .Type, .Regex, "
            ".Remote, .Match and .Group"
        )
    return Field(top)


def _index(target: str, key: str, shown: str) -> Group | MatchAt:
    if target == ".Match":
        return MatchAt(_int(key, shown))
    if target == ".Group":
        if not key.startswith(('"', "`")):
            raise TemplateError(f'{shown}: .Group keys are strings: index .Group "{key}"')
        return Group(_string(key, shown), dotted=False)
    raise TemplateError(f"{shown}: kdns can index .Match and .Group only")


def _int(word: str, shown: str) -> int:
    if not re.fullmatch(r"-?\d+", word):
        raise TemplateError(f"{shown}: {word!r} is not a number")
    return int(word)


def _string(word: str, shown: str) -> str:
    if word.startswith("`"):
        return word[1:-1]
    body = word[1:-1]
    if "\\" in body:
        try:
            return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            raise TemplateError(f"{shown}: bad escape in {word}") from None
    return body


# ---- rendering ---------------------------------------------------------------------------


def fields_used(nodes: Sequence[Node]) -> set[str]:
    """The top-level fields the nodes read (e.g. {"Name", "Remote"})."""
    used: set[str] = set()
    for node in nodes:
        arg = node.arg if isinstance(node, ParseInt) else node
        if isinstance(arg, Field):
            used.add(arg.name)
        elif isinstance(arg, Group):
            used.add("Group")
        elif isinstance(arg, MatchAt):
            used.add("Match")
    return used


def render(nodes: Sequence[Node], data: Data) -> str:
    """The text of a compiled template for `data`; raises TemplateError as Go would fail."""
    return "".join(_value(node, data) for node in nodes)


def _value(node: Node, data: Data) -> str:
    if isinstance(node, Text):
        return node.text
    if isinstance(node, Field):
        return {
            "Name": data.name,
            "Zone": data.zone,
            "Class": data.qclass,
            "Type": data.qtype,
            "Regex": data.regex,
            "Remote": data.remote,
        }[node.name]
    if isinstance(node, Group):
        found = (data.group or {}).get(node.key)
        if found is None:
            return NO_VALUE if node.dotted else ""
        return found
    if isinstance(node, MatchAt):
        if not 0 <= node.index < len(data.match):
            raise TemplateError(
                f"index .Match {node.index}: out of range (the regex gave {len(data.match)})"
            )
        return data.match[node.index]
    return str(_parse_uint(_value(node.arg, data), node.base, node.bits))


def _parse_uint(text: str, base: int, bits: int) -> int:
    """Go's strconv.ParseUint: base 0 reads a 0x/0o/0b/0 prefix; bits 0 means 64."""
    if bits == 0:
        bits = 64
    if not 0 < bits <= 64 or not (base == 0 or 2 <= base <= 36):
        raise TemplateError(f"parseInt {text!r} {base} {bits}: invalid base or bit size")
    try:
        if not text or not all(c.isalnum() or (c == "_" and base == 0) for c in text):
            raise ValueError(text)
        if base == 0 and text[:1] == "0" and text[1:2].isdigit():
            value = int(text[1:].replace("_", ""), 8)  # Go: a leading 0 is octal
        else:
            value = int(text, base)
    except ValueError:
        raise TemplateError(f"parseInt {text!r} {base} {bits}: invalid syntax") from None
    if value < 0 or value >= 1 << bits:
        raise TemplateError(f"parseInt {text!r} {base} {bits}: value out of range")
    return value


__all__ = [
    "NO_VALUE",
    "Data",
    "Node",
    "TemplateError",
    "compile_template",
    "fields_used",
    "render",
]
