"""Go (RE2) regular expressions, as a Corefile writes them, compiled with Python's `re`.

The two dialects agree on what Corefiles use (classes, groups, `(?P<name>...)`, anchors,
repetition, `(?i)`), and Go's matching is unanchored like `re.search`. Where they differ:

* POSIX classes inside brackets (`[[:digit:]]`) mean nothing to `re`: they are translated
  to ranges;
* `(?<name>...)` (Go 1.22) becomes `(?P<name>...)`;
* Go's `\\z` (end of text) is `re`'s `\\Z`;
* anything else `re` would read differently or not at all (`\\pL`, `\\Q...\\E`, a nested
  set) is refused with the reason, never compiled to something else.

CoreDNS caps patterns at 10000 characters; so does `compile_go`. No I/O here.
"""

from __future__ import annotations

import re
import warnings

MAX_PATTERN = 10000

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


def translate(pattern: str) -> str:
    """The Python spelling of a Go pattern; raises ValueError for what `re` cannot mean."""
    for escape, why in (("\\p", "Unicode classes (\\p)"), ("\\P", "Unicode classes (\\P)"),
                        ("\\Q", "quoting with \\Q...\\E"), ("\\C", "\\C")):  # fmt: skip
        if escape in pattern.replace("\\\\", ""):
            raise ValueError(f"{why} are not supported by kdns; write the characters out")

    def posix(match: re.Match[str]) -> str:
        negated, name = match.group(1), match.group(2)
        if negated or name not in _POSIX:
            raise ValueError(f"the POSIX class [:{negated}{name}:] is not supported by kdns")
        return _POSIX[name]

    out = re.sub(r"\[:(\^?)([a-z]+):\]", posix, pattern)
    out = re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", out)
    return re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", out)


def compile_go(pattern: str) -> re.Pattern[str]:
    """Compile a Go pattern; raises ValueError saying why it cannot be used."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"the pattern is longer than {MAX_PATTERN} characters")
    python = translate(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(python)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        except FutureWarning as exc:
            raise ValueError(f"{pattern!r} would not mean the same in kdns: {exc}") from None


__all__ = ["MAX_PATTERN", "compile_go", "translate"]
