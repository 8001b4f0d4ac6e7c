"""One typo = optimal-string-alignment distance 1: a letter replaced, left out, added, or two
neighbours swapped. Checked against the textbook dynamic programme."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.explain.typos import near, one_typo


def osa_distance(a: str, b: str) -> int:
    """Restricted Damerau-Levenshtein distance (Wagner-Fischer plus adjacent swaps)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@pytest.mark.parametrize(
    ("asked", "real", "expected"),
    [
        ("paymants", "payments", True),  # one letter wrong
        ("paymnets", "payments", True),  # two neighbours swapped
        ("paymets", "payments", True),  # one letter missing
        ("paymentss", "payments", True),  # one letter extra
        ("apyments", "payments", True),  # swap at the start
        ("paymenst", "payments", True),  # swap at the end
        ("payments", "payments", False),  # the same name is no typo
        ("pyamnets", "payments", False),  # two swaps
        ("paymnts", "paymentss", False),  # one missing and one extra
        ("ab", "ba", True),
        ("abc", "cba", False),  # not neighbours
        ("", "a", True),
    ],
)
def test_one_typo(asked: str, real: str, expected: bool) -> None:
    assert one_typo(asked, real) is expected
    assert one_typo(real, asked) is expected


@given(st.text(alphabet="abc-", max_size=7), st.text(alphabet="abc-", max_size=7))
def test_one_typo_is_osa_distance_one(a: str, b: str) -> None:
    assert one_typo(a, b) == (osa_distance(a, b) == 1)


def test_near_sorts_and_limits() -> None:
    names = ["web", "wbe", "we", "webb", "api", "wev", "web2", "weeb"]
    assert near("web", names) == ["wbe", "we", "web2", "webb", "weeb"]
    assert near("web", names, limit=2) == ["wbe", "we"]
    assert near("zzz", names) == []
