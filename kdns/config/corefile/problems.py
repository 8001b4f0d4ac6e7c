"""What is wrong with a Corefile: one `Problem` per mistake, all of them raised together.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kdns.config.model import Origin


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake at one place; `str()` is the line `kdns corefile` prints."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        # One line, even when the message quotes a token that spans lines.
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.origin}: {message}"


class CorefileError(Exception):
    """A Corefile kdns cannot serve; `problems` lists every mistake found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems:
    """Collects problems while a Corefile is read, so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, origin: Origin, message: str) -> None:
        self.items.append(Problem(origin, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise CorefileError(self.items)
