"""Corefile tokens, as CoreDNS's Caddyfile lexer (the coredns/caddy module) cuts them.

- Tokens are separated by whitespace; a carriage return is dropped.
- `#` outside quotes starts a comment that runs to the end of the line, even inside a word.
- A token that starts with `"` runs to the next unescaped `"` and may span lines. Inside
  it, `\\"` is a quote; any other backslash is kept as written (`"C:\\dir"` stays `C:\\dir`).
  A `"` in the middle of a word is an ordinary character. There are no backquoted tokens
  in CoreDNS's lexer, so a backquote is an ordinary character too.
- A leading byte order mark is skipped.

Environment references (`{$NAME}`, `{%NAME%}`) are replaced per token after lexing, as
CoreDNS does (`substitute`), so a value with spaces stays one token; unset means empty.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kdns.config.corefile.problems import CorefileError, Problem
from kdns.config.model import Origin


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a Corefile, where it was written, and how it was written.

    `line_start`: the first token of its line in its file (a directive or an option
    starts there). `chain`: the imports that brought it in (files and `(snippets)`), used
    to refuse import cycles."""

    text: str
    source: str
    line: int
    line_start: bool
    quoted: bool = False
    chain: tuple[str, ...] = ()

    @property
    def origin(self) -> Origin:
        return Origin(self.source, self.line)

    def is_brace(self, brace: str) -> bool:
        """True for an unquoted `{` or `}` (a quoted one is an ordinary word)."""
        return not self.quoted and self.text == brace


def tokenize(text: str, *, source: str) -> list[Token]:
    """Cut `text` into tokens; raises CorefileError for a quoted token left open."""
    if text.startswith("\ufeff"):
        text = text[1:]
    tokens: list[Token] = []
    line = 1
    last_line = 0  # the line the previous token ended on
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start_line = line
        line_start = start_line > last_line
        if ch == '"':
            value, i, line = _quoted(text, i + 1, line, source=source)
            tokens.append(Token(value, source, start_line, line_start, quoted=True))
        else:
            chars: list[str] = []
            while i < n:
                ch = text[i]
                if ch == "#" or (ch.isspace() and ch != "\r"):
                    break
                if ch != "\r":
                    chars.append(ch)
                i += 1
            tokens.append(Token("".join(chars), source, start_line, line_start))
        last_line = line
    return tokens


def _quoted(text: str, i: int, line: int, *, source: str) -> tuple[str, int, int]:
    """The value of a quoted token whose opening quote ends before `i`."""
    start_line = line
    chars: list[str] = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            following = text[i + 1]
            if following != '"':
                chars.append("\\")  # only a quote is escaped; the backslash stays
            if following == "\n":
                line += 1
            chars.append(following)
            i += 2
            continue
        if ch == '"':
            return "".join(chars), i + 1, line
        if ch == "\n":
            line += 1
        chars.append(ch)
        i += 1
    raise CorefileError(
        [Problem(Origin(source, start_line), 'quoted text is never closed: add the closing "')]
    )


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """Replace `{%NAME%}` then `{$NAME}` with the environment's values (unset: empty)."""
    if "{" not in text:
        return text
    return _replace(_replace(text, "{%", "%}", environ), "{$", "}", environ)


def _replace(text: str, start: str, end: str, environ: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while True:
        j = text.find(start, i)
        if j < 0:
            break
        k = text.find(end, j + len(start))
        if k < 0 or k == j + len(start):  # unclosed or empty name: left as written
            break
        out.append(text[i:j])
        out.append(environ.get(text[j + len(start) : k], ""))
        i = k + len(end)
    out.append(text[i:])
    return "".join(out)
