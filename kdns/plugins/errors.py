"""`errors`: log the failures of the rest of the chain, one line each or consolidated.

In kdns plugins do not raise: a plugin that answers SERVFAIL because something failed
says why in `Response.error` (an exception escaping a plugin is the server's business: it
answers SERVFAIL and counts a panic). This plugin logs each such response as CoreDNS's
*errors* does, at ERROR on the `kdns.plugins.errors` logger:

    2 example.org. A: no upstream answered: 127.0.0.1:53 timed out

(rcode, query name, query type, the error), which under kdns's log format reads
`... ERROR kdns.plugins.errors: 2 example.org. A: ...`, the counterpart of CoreDNS's
`[ERROR] plugin/errors: 2 example.org. A: ...`. Without `errors` in a server block,
errors are not logged (as in CoreDNS); the server's metrics count them regardless.

`consolidate DURATION REGEXP [LEVEL]`: an error whose text matches REGEXP (searched,
not anchored; the first matching `consolidate` wins) is not logged; its pattern counts
it, and DURATION after the first of them one line is logged at LEVEL:

    3000 errors like '.*' occurred in last 5m0s

so a flood of failures costs a line per pattern and period, not a line per query.

Timing: nothing runs on import or in `__init__`. Summaries are written
- lazily, when an error arrives after a pattern's period has ended;
- by `run()`, a coroutine the app starts beside the server (one per plugin) so a
  summary is not held back until the next error; cancel it to stop;
- by `flush()`, which writes the summaries of ended periods, and `close()`, which writes
  every pending count (CoreDNS does so at shutdown) and logs later errors one by one.
The clock (`time.monotonic` by default) and `run()`'s sleep are injectable for tests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kdns.config.model import Consolidate, ErrorsConfig
from kdns.dns.message import type_name
from kdns.dns.records import Question
from kdns.serve.chain import Plugin, Request, Response, Result, then

log = logging.getLogger(__name__)

LEVELS: dict[str, int] = {
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def duration_text(seconds: float) -> str:
    """A duration as CoreDNS (Go's `time.Duration`) prints it: "30s", "5m0s", "1h0m0s",
    "1.5s", "250ms"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds_part = f"{_decimal(rest, 9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds_part}"
    if minutes:
        return f"{sign}{minutes}m{seconds_part}"
    return sign + seconds_part


def _decimal(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    decimals = f"{fraction:0{digits}d}".rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


@dataclass(slots=True)
class _Pattern:
    """One `consolidate` line and the errors it counted since `started`."""

    text: str
    regex: re.Pattern[str]
    interval: float
    level: int
    count: int = 0
    started: float = 0.0


class ErrorsPlugin(Plugin):
    """CoreDNS's `errors` over kdns responses (see the module docstring)."""

    name = "errors"

    def __init__(
        self,
        config: ErrorsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        logger: logging.Logger = log,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._sleep = sleep
        self._log = logger
        self._patterns = [_compile(c, config) for c in config.consolidate]
        self._closed = False
        self._wake: asyncio.Event | None = None  # made by run(), set when a period opens

    def serve(self, request: Request) -> Result:
        question = request.question  # as asked, before any plugin rewrites it
        result = self.next.serve(request)
        if isinstance(result, Response):
            if result.error is not None:
                self._report(question, result)
            return result
        return then(result, functools.partial(self._check, question))

    def _check(self, question: Question, response: Response) -> Response:
        if response.error is not None:
            self._report(question, response)
        return response

    def _report(self, question: Question, response: Response) -> None:
        error = response.error
        assert error is not None
        if self._patterns:
            now = self._clock()
            self._flush(now, everything=False)
            if not self._closed:
                for pattern in self._patterns:
                    if pattern.regex.search(error):
                        if pattern.count == 0:
                            pattern.started = now
                            if self._wake is not None:
                                self._wake.set()
                        pattern.count += 1
                        return
        self._log.error(
            "%d %s %s: %s", response.rcode, question.lname, type_name(question.qtype), error
        )

    # ---- consolidation periods --------------------------------------------------------

    def flush(self) -> None:
        """Log the summary of every pattern whose period has ended."""
        self._flush(self._clock(), everything=False)

    def close(self) -> None:
        """Log every pending count now and stop consolidating (later errors are logged
        one by one), as CoreDNS does when the server shuts down."""
        self._flush(self._clock(), everything=True)
        self._closed = True

    def next_deadline(self) -> float | None:
        """When the earliest open period ends (on the plugin's clock), None if none is."""
        ends = [p.started + p.interval for p in self._patterns if p.count]
        return min(ends) if ends else None

    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.run] if self._patterns else []

    async def run(self) -> None:
        """Log each summary when its period ends; never returns (cancel it to stop).

        Start one per plugin with the app's other tasks; without it, summaries are still
        written, but only when a later error arrives or at `flush()`/`close()`."""
        if not self._patterns:
            return
        self._wake = wake = asyncio.Event()
        while True:
            deadline = self.next_deadline()
            if deadline is None:
                wake.clear()
                await wake.wait()
                continue
            delay = deadline - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self.flush()

    def _flush(self, now: float, *, everything: bool) -> None:
        for pattern in self._patterns:
            if pattern.count and (everything or now >= pattern.started + pattern.interval):
                count, pattern.count = pattern.count, 0
                self._log.log(
                    pattern.level,
                    "%d errors like '%s' occurred in last %s",
                    count,
                    pattern.text,
                    duration_text(pattern.interval),
                )


def _compile(consolidate: Consolidate, config: ErrorsConfig) -> _Pattern:
    level = LEVELS.get(consolidate.level)
    if level is None:
        raise ValueError(
            f"{config.origin}: errors: consolidate LEVEL {consolidate.level!r} is not one of "
            f"{', '.join(LEVELS)}"
        )
    try:
        regex = re.compile(consolidate.pattern)
    except re.error as exc:
        raise ValueError(
            f"{config.origin}: errors: consolidate REGEXP {consolidate.pattern!r} is not a "
            f"valid regular expression ({exc}); fix the pattern"
        ) from exc
    if consolidate.interval <= 0:
        raise ValueError(
            f"{config.origin}: errors: consolidate DURATION must be positive, "
            f"got {consolidate.interval}s"
        )
    return _Pattern(consolidate.pattern, regex, consolidate.interval, level)


__all__ = ["LEVELS", "ErrorsPlugin", "duration_text"]
