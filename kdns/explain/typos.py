"""Names one typo away: the "did you mean" of `kdns explain`. Pure.

One typo is one edit of the optimal-string-alignment (restricted Damerau-Levenshtein)
distance: one character replaced, one left out, one added, or two neighbours swapped.
"""

from __future__ import annotations

from collections.abc import Iterable


def one_typo(a: str, b: str) -> bool:
    """True when `b` is `a` with exactly one typo (never for equal strings)."""
    if a == b:
        return False
    la, lb = len(a), len(b)
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        i, j = diffs[0], diffs[-1]
        return len(diffs) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    if abs(la - lb) != 1:
        return False
    short, long = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def near(word: str, candidates: Iterable[str], *, limit: int = 5) -> list[str]:
    """The candidates one typo away from `word`, sorted, at most `limit`."""
    return sorted({c for c in candidates if one_typo(word, c)})[:limit]


__all__ = ["near", "one_typo"]
