"""The Corefile lexer cuts tokens as CoreDNS's Caddyfile lexer does (coredns/caddy)."""

from __future__ import annotations

import pytest

from kdns.config.corefile.lexer import substitute, tokenize
from kdns.config.corefile.problems import CorefileError


def words(text: str) -> list[tuple[int, str]]:
    return [(t.line, t.text) for t in tokenize(text, source="Corefile")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host:123", [(1, "host:123")]),
        ("host:123\n\n   directive", [(1, "host:123"), (3, "directive")]),
        ("host:123 { directive }", [(1, "host:123"), (1, "{"), (1, "directive"), (1, "}")]),
        ("a # comment\n# whole line\nb", [(1, "a"), (3, "b")]),
        ("abc#def ghi\nx", [(1, "abc"), (2, "x")]),  # '#' starts a comment inside a word
        ('a "quoted value" b', [(1, "a"), (1, "quoted value"), (1, "b")]),
        ('A "quoted \\"value\\" inside" B', [(1, "A"), (1, 'quoted "value" inside'), (1, "B")]),
        ('"don\'t\\escape"', [(1, "don't\\escape")]),  # only \" is an escape
        ('"don\'t\\\\escape"', [(1, "don't\\\\escape")]),
        ('"C:\\php\\php-cgi.exe"', [(1, "C:\\php\\php-cgi.exe")]),
        ('empty "" string', [(1, "empty"), (1, ""), (1, "string")]),
        ('"# not a comment"', [(1, "# not a comment")]),
        ("a`b` `c d`", [(1, "a`b`"), (1, "`c"), (1, "d`")]),  # no backquoted tokens
        ('mid"quote x', [(1, 'mid"quote'), (1, "x")]),
        ("skip those\r\nCR characters", [(1, "skip"), (1, "those"), (2, "CR"), (2, "characters")]),
        ("\ufeff:8080", [(1, ":8080")]),
    ],
)
def test_tokens_and_their_lines(text: str, expected: list[tuple[int, str]]) -> None:
    assert words(text) == expected


def test_a_quoted_token_spanning_lines_keeps_the_line_it_starts_on() -> None:
    tokens = tokenize('A "line\nbreak" {\n  foobar\n}', source="Corefile")
    assert [(t.line, t.text) for t in tokens] == [
        (1, "A"),
        (1, "line\nbreak"),
        (2, "{"),
        (3, "foobar"),
        (4, "}"),
    ]
    assert [t.line_start for t in tokens] == [True, False, False, True, True]


def test_quoted_braces_are_words_not_blocks() -> None:
    tokens = tokenize('log . "{" {', source="Corefile")
    assert [t.is_brace("{") for t in tokens] == [False, False, False, True]


def test_an_unclosed_quote_is_a_problem_at_its_line() -> None:
    with pytest.raises(CorefileError) as caught:
        tokenize('.:53 {\n  log . "{remote}\n}\n', source="cf/Corefile")
    assert [str(p) for p in caught.value.problems] == [
        'cf/Corefile:2: quoted text is never closed: add the closing "'
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{$PORT}", "8080"),
        ("localhost:{$PORT}", "localhost:8080"),
        ("{%PORT%}", "8080"),
        ("{$UNSET}", ""),
        ("a{$HOST}b{$PORT}", "a10.0.0.1b8080"),
        ("{$SPACED}", "two words"),
        ("{$}", "{$}"),  # no name: left as written
        ("{$PORT", "{$PORT"),  # unclosed: left as written
        ("{common}", "{common}"),  # log placeholders are not environment references
        ("{$LOOP}", "{$LOOP}"),  # a value is not substituted again
    ],
)
def test_environment_substitution(text: str, expected: str) -> None:
    environ = {"PORT": "8080", "HOST": "10.0.0.1", "SPACED": "two words", "LOOP": "{$LOOP}"}
    assert substitute(text, environ) == expected
