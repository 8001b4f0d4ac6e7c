"""Corefile structure: server blocks, their keys, and the lines inside them.

The grammar is CoreDNS's (the Caddyfile of coredns/caddy):

    KEY [KEY...] {            keys on one line, or continued after a trailing comma
        PLUGIN [ARGS...] {    a plugin, its arguments on the same line, an optional block
            OPTION [ARGS...]  one option per line
        }
    }

- A server block whose keys are one `(name)` defines a snippet; `import name` replays it.
- `import PATTERN` at the start of a line (at the top, in a block or in a plugin's block)
  is replaced by the snippet of that name, else by the tokens of the files PATTERN names:
  relative to the folder of the file the import is written in, with at most one `*` or
  `?`; a missing file is an error, a glob that matches nothing is not. Tokens keep the
  file and line they were written at, so `Origin` points there, through any import.
- A `{` may open a server block on the line after its keys; a plugin's or an option's `{`
  must be on its line. A Corefile of one server block may leave out its braces.
- A `}` closes its block wherever it stands, so `. { forward . 10.0.0.1 }` on one line
  works (CoreDNS would take that `}` as an argument and refuse the line).
- Environment references are replaced in every token (`lexer.substitute`).

Structure errors (an unclosed `{`, a stray `}`) stop the parse; import errors are
collected and the parse goes on, so one run reports as much as it can.

The only I/O is reading imported files.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from kdns.config.corefile.lexer import Token, substitute, tokenize
from kdns.config.corefile.problems import CorefileError, Problem, Problems
from kdns.config.model import Origin

# CoreDNS's import plugin: "at most 10000 import statements" (a guard against recursion).
MAX_IMPORTS = 10000


@dataclass(frozen=True, slots=True)
class Line:
    """A plugin line in a server block, or an option line in a plugin's block.

    `block` is None without braces, () for an empty `{}`."""

    name: str
    args: tuple[str, ...]
    origin: Origin
    block: tuple[Line, ...] | None = None


@dataclass(frozen=True, slots=True)
class Key:
    """One server block key as written (after environment substitution)."""

    text: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class BlockSyntax:
    keys: tuple[Key, ...]
    lines: tuple[Line, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Parsed:
    """The server blocks of a Corefile with its imports done, and what went wrong.

    `digest` is SHA-512 over every token (text, file, line) after imports and environment
    substitution: like CoreDNS's reload, which hashes the parsed Corefile, it changes when
    an imported file or a referenced variable changes, and not for a comment."""

    blocks: tuple[BlockSyntax, ...]
    problems: tuple[Problem, ...]
    digest: str


class _StructureError(Exception):
    """A structure error after which nothing further can be read reliably."""

    def __init__(self, origin: Origin, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(origin, message)


def parse(text: str, *, source: str, environ: Mapping[str, str]) -> Parsed:
    """Parse Corefile `text` written in `source` (imports are relative to its folder).

    Raises CorefileError only when the text cannot be tokenized; every other problem is
    in `Parsed.problems`."""
    root = _chain_key(Path(source))
    tokens = [replace(t, chain=(root,)) for t in tokenize(text, source=source)]
    parser = _Parser(tokens, environ=environ)
    blocks: list[BlockSyntax] = []
    try:
        while parser.peek_item() is not None:
            block = parser.server_block()
            if block is not None:
                blocks.append(block)
    except _StructureError as stop:
        parser.problems.items.append(stop.problem)
    except CorefileError as exc:  # an imported file that cannot be tokenized
        parser.problems.items.extend(exc.problems)
    return Parsed(tuple(blocks), tuple(parser.problems.items), parser.digest.hexdigest())


def _chain_key(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


class _Parser:
    def __init__(self, tokens: list[Token], *, environ: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.environ = environ
        self.problems = Problems()
        self.snippets: dict[str, tuple[Origin, list[Token]]] = {}
        self.imports = 0
        self.digest = hashlib.sha512()

    # ---- tokens ------------------------------------------------------------------------

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        self.digest.update(
            f"{token.source}\0{token.line}\0{self.sub(token.text)}\n".encode("utf-8", "replace")
        )
        return token

    def sub(self, text: str) -> str:
        return substitute(text, self.environ)

    def peek_item(self, *, plugin: bool = False) -> Token | None:
        """The next token where a key, plugin or option begins, imports expanded.

        `import` counts at the start of a line, and anywhere a plugin name may stand
        (`b.org { import defaults`), as in CoreDNS."""
        while True:
            token = self.peek()
            if (
                token is None
                or token.quoted
                or token.text != "import"
                or not (token.line_start or plugin)
            ):
                return token
            self._expand_import()

    # ---- server blocks -----------------------------------------------------------------

    def server_block(self) -> BlockSyntax | None:
        token = self.peek_item()
        assert token is not None
        origin = token.origin
        keys: list[Key] = []
        expecting = False  # the last key ended with ","
        while True:
            if token.is_brace("{"):
                if expecting:
                    self.problems.add(
                        token.origin,
                        "a server block key ends with ',' but no key follows: remove the comma",
                    )
                break
            if token.is_brace("}"):
                raise _StructureError(token.origin, "'}' closes nothing: no '{' is open here")
            self.take()
            text = self.sub(token.text)
            if text:
                expecting = text.endswith(",")
                text = text.removesuffix(",")
                if text:
                    keys.append(Key(text, token.origin))
            following = self.peek_item()
            if following is None:
                if expecting:
                    raise _StructureError(
                        token.origin,
                        "the Corefile ends after ',': another server block key was expected",
                    )
                break
            if not expecting and following.line_start:
                break
            token = following

        if not keys:
            self.problems.add(
                origin,
                "the server block has no key (an unset environment "
                "variable?): write a zone, e.g. `.:53 {`",
            )
        elif len(keys) == 1 and keys[0].text.startswith("(") and keys[0].text.endswith(")"):
            self._define_snippet(keys[0])
            return None

        opener = self.peek()
        if opener is None:
            lines: list[Line] = []  # keys and nothing else: a block without plugins
        elif opener.is_brace("{"):
            self.take()
            lines = self._lines(opener, owner="the server block", plugins=True)
        else:  # the brace-less form
            lines = self._lines(None, owner="the server block", plugins=True)
        if not keys:
            return None
        return BlockSyntax(tuple(keys), tuple(lines), origin)

    def _lines(self, opener: Token | None, *, owner: str, plugins: bool = False) -> list[Line]:
        """Lines up to the `}` that matches `opener` (or to the end without one)."""
        lines: list[Line] = []
        while True:
            token = self.peek_item(plugin=plugins)
            if token is None:
                if opener is not None:
                    raise _StructureError(
                        opener.origin, f"the '{{' of {owner} is never closed: add '}}'"
                    )
                return lines
            if token.is_brace("}"):
                if opener is None:
                    raise _StructureError(token.origin, "'}' closes nothing: no '{' is open here")
                self.take()
                return lines
            if token.is_brace("{"):
                after = f" ({lines[-1].name})" if lines else ""
                raise _StructureError(
                    token.origin,
                    f"'{{' must be on the same line as the plugin or option it belongs to{after}",
                )
            lines.append(self._line())

    def _line(self) -> Line:
        first = self.take()
        name = self.sub(first.text)
        args: list[str] = []
        block: tuple[Line, ...] | None = None
        while (token := self.peek()) is not None and not token.line_start:
            if token.is_brace("}"):
                break  # closes the enclosing block
            self.take()
            if token.is_brace("{"):
                block = tuple(self._lines(token, owner=name))
                after = self.peek()
                if after is not None and not after.line_start and not after.is_brace("}"):
                    raise _StructureError(
                        after.origin,
                        f"unexpected '{after.text}' after the '}}' "
                        f"that closes {name}: start a new line",
                    )
                break
            args.append(self.sub(token.text))
        return Line(name, tuple(args), first.origin, block)

    # ---- snippets and imports ----------------------------------------------------------

    def _define_snippet(self, key: Key) -> None:
        name = key.text[1:-1]
        opener = self.peek()
        if opener is None or not opener.is_brace("{"):
            raise _StructureError(
                key.origin, f"snippet {key.text} needs a block: `{key.text} {{ ... }}`"
            )
        self.take()
        depth = 1
        body: list[Token] = []
        while True:
            token = self.peek()
            if token is None:
                raise _StructureError(
                    opener.origin, f"the '{{' of snippet {key.text} is never closed"
                )
            self.take()
            if token.is_brace("{"):
                depth += 1
            elif token.is_brace("}"):
                depth -= 1
                if depth == 0:
                    break
            body.append(token)
        if name in self.snippets:
            where = self.snippets[name][0]
            self.problems.add(
                key.origin,
                f"snippet {key.text} is already defined at {where}: give it another name",
            )
            return
        self.snippets[name] = (key.origin, body)

    def _expand_import(self) -> None:
        statement = self.take()
        args: list[Token] = []
        while (token := self.peek()) is not None and not token.line_start:
            args.append(self.take())
        if len(args) != 1:
            self.problems.add(
                statement.origin,
                "import takes one argument: a file, a glob "
                "pattern (one * at most) or a snippet name",
            )
            return
        pattern = self.sub(args[0].text)
        if not pattern:
            self.problems.add(
                statement.origin,
                "import needs a file or snippet name (an unset environment variable?)",
            )
            return
        self.imports += 1
        if self.imports > MAX_IMPORTS:
            raise _StructureError(
                statement.origin,
                f"more than {MAX_IMPORTS} imports (as CoreDNS, "
                "kdns stops there): do imports import each other?",
            )
        chain = statement.chain
        spliced: list[Token] = []
        if pattern in self.snippets:
            key = f"({pattern})"
            if key in chain:
                self.problems.add(
                    statement.origin,
                    f"import {pattern}: the snippet imports "
                    "itself; remove the import from its block",
                )
                return
            spliced = [replace(t, chain=(*chain, key)) for t in self.snippets[pattern][1]]
        else:
            for path in self._import_files(statement, pattern):
                key = _chain_key(path)
                if key in chain:
                    self.problems.add(
                        statement.origin,
                        f"import {pattern}: {path} imports itself (through the files it imports)",
                    )
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    self.problems.add(
                        statement.origin, f"import {pattern}: cannot read {path}: {_reason(exc)}"
                    )
                    continue
                spliced.extend(
                    replace(t, chain=(*chain, key)) for t in tokenize(text, source=str(path))
                )
        if spliced:
            spliced[0] = replace(spliced[0], line_start=True)
        self.tokens[self.pos : self.pos] = spliced

    def _import_files(self, statement: Token, pattern: str) -> list[Path]:
        base = Path(statement.source).parent
        if pattern.count("*") > 1 or pattern.count("?") > 1 or ("[" in pattern and "]" in pattern):
            self.problems.add(
                statement.origin,
                f"import {pattern}: a pattern may hold one "
                "wildcard (* or ?) at most, as in CoreDNS",
            )
            return []
        if not glob.has_magic(pattern):
            path = Path(pattern) if os.path.isabs(pattern) else base / pattern
            if not path.exists():
                self.problems.add(
                    statement.origin,
                    f"import {pattern}: no such file or "
                    f"snippet ({path} does not exist; a snippet must be "
                    "defined above its import)",
                )
                return []
            found = [path]
        else:
            full = (
                pattern if os.path.isabs(pattern) else os.path.join(glob.escape(str(base)), pattern)
            )
            found = [Path(p) for p in sorted(glob.glob(full, include_hidden=True))]
        for path in found:
            if path.is_dir():
                self.problems.add(
                    statement.origin,
                    f"import {pattern}: {path} is a folder; "
                    "import the files in it with a glob, e.g. `import dir/*`",
                )
        return [p for p in found if not p.is_dir()]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
