"""`errors`: one line per failed query as CoreDNS writes it; `consolidate` stops floods."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kdns.config.model import Consolidate, ErrorsConfig, Origin
from kdns.dns.records import Rcode, Reply, RType
from kdns.plugins.errors import ErrorsPlugin, duration_text
from kdns.serve.chain import Response, link
from tests.plugins.canned import Canned, make_request, resolve

LOGGER = "kdns.plugins.errors"
TIMEOUT = "no upstream answered: 127.0.0.1:53 timed out"


@pytest.fixture(autouse=True)
def _capture_every_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failed(error: str | None = TIMEOUT, rcode: Rcode = Rcode.SERVFAIL) -> Response:
    return Response(Reply(rcode=rcode, authoritative=False), plugin="forward", error=error)


def chain(
    response: Response,
    *consolidate: Consolidate,
    clock: Clock | None = None,
    pending: bool = False,
) -> ErrorsPlugin:
    plugin = ErrorsPlugin(ErrorsConfig(consolidate=consolidate), clock=clock or Clock())
    link([plugin, Canned(response, pending=pending)])
    return plugin


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def ask(plugin: ErrorsPlugin, qname: str = "example.org.", qtype: int = RType.A) -> Response:
    return await resolve(plugin.serve(make_request(qname, qtype)))


# ---- one line per error ------------------------------------------------------------------


async def test_an_error_is_logged_as_rcode_name_type_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = failed()
    plugin = chain(response)
    assert await ask(plugin, "Example.ORG.", RType.AAAA) is response
    # CoreDNS: "[ERROR] plugin/errors: 2 example.org. AAAA: <error>", the name lower-cased
    assert lines(caplog) == [(logging.ERROR, f"2 example.org. AAAA: {TIMEOUT}")]


async def test_an_error_from_a_pending_response_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    plugin = chain(failed(), pending=True)
    await ask(plugin, "example.org.", RType.MX)
    assert lines(caplog) == [(logging.ERROR, f"2 example.org. MX: {TIMEOUT}")]


async def test_an_unknown_type_is_logged_as_typenn(caplog: pytest.LogCaptureFixture) -> None:
    await ask(chain(failed()), "example.org.", 65280)
    assert lines(caplog) == [(logging.ERROR, f"2 example.org. TYPE65280: {TIMEOUT}")]


@pytest.mark.parametrize(
    "response",
    [
        Response(Reply()),
        Response(Reply(rcode=Rcode.NXDOMAIN)),
        failed(error=None),  # SERVFAIL without a failure (e.g. relayed from an upstream)
    ],
    ids=["noerror", "nxdomain", "servfail-without-error"],
)
async def test_responses_without_an_error_are_not_logged(
    response: Response, caplog: pytest.LogCaptureFixture
) -> None:
    assert await ask(chain(response)) is response
    assert lines(caplog) == []


# ---- consolidate --------------------------------------------------------------------------


async def test_a_flood_of_errors_becomes_one_line_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    plugin = chain(failed(), Consolidate(300.0, ".*"), clock=clock)
    for _ in range(3000):
        await ask(plugin)
        clock.now += 0.25  # 3,000 queries over 750 s: the third period is still open
    plugin.flush()  # the third period has not ended: nothing more yet
    logged = lines(caplog)
    assert logged == [
        (logging.ERROR, "1200 errors like '.*' occurred in last 5m0s"),
        (logging.ERROR, "1200 errors like '.*' occurred in last 5m0s"),
    ]
    clock.now += 300
    plugin.flush()
    assert lines(caplog)[2:] == [(logging.ERROR, "600 errors like '.*' occurred in last 5m0s")]


async def test_consolidated_lines_use_the_configured_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    plugin = chain(failed(), Consolidate(30.0, "timed out$", "warning"), clock=clock)
    await ask(plugin)
    await ask(plugin)
    clock.now += 30
    plugin.flush()
    assert lines(caplog) == [(logging.WARNING, "2 errors like 'timed out$' occurred in last 30s")]


async def test_errors_matching_no_pattern_are_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    plugin = ErrorsPlugin(ErrorsConfig(consolidate=(Consolidate(30.0, "^refused"),)), clock=clock)
    link([plugin, Canned(failed())])
    await ask(plugin)
    assert lines(caplog) == [(logging.ERROR, f"2 example.org. A: {TIMEOUT}")]
    clock.now += 60
    plugin.flush()
    assert len(lines(caplog)) == 1  # no summary for a pattern that counted nothing


async def test_the_first_matching_pattern_counts_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    plugin = chain(
        failed(), Consolidate(10.0, "timed out", "info"), Consolidate(10.0, ".*"), clock=clock
    )
    await ask(plugin)
    clock.now += 10
    plugin.flush()
    assert lines(caplog) == [(logging.INFO, "1 errors like 'timed out' occurred in last 10s")]


async def test_an_error_after_the_period_writes_the_summary_and_opens_a_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    plugin = chain(failed(), Consolidate(60.0, "timed out"), clock=clock)
    await ask(plugin)
    await ask(plugin)
    clock.now += 61
    await ask(plugin)  # no flush(), no run(): the error itself writes the due summary
    assert lines(caplog) == [(logging.ERROR, "2 errors like 'timed out' occurred in last 1m0s")]
    assert plugin.next_deadline() == clock.now + 60  # the third error opened a period


async def test_close_writes_pending_counts_and_later_errors_are_logged_one_by_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = chain(failed(), Consolidate(300.0, ".*"))
    await ask(plugin)
    plugin.close()
    await ask(plugin)
    assert lines(caplog) == [
        (logging.ERROR, "1 errors like '.*' occurred in last 5m0s"),
        (logging.ERROR, f"2 example.org. A: {TIMEOUT}"),
    ]


async def test_run_writes_the_summary_when_the_period_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes only when run() sleeps
        slept.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)

    plugin = ErrorsPlugin(
        ErrorsConfig(consolidate=(Consolidate(30.0, ".*"),)), clock=clock, sleep=sleep
    )
    link([plugin, Canned(failed())])
    runner = asyncio.create_task(plugin.run())
    await asyncio.sleep(0)  # run() waits: no period is open
    assert slept == []
    await ask(plugin)
    clock.now += 10
    await ask(plugin)
    for _ in range(5):
        await asyncio.sleep(0)
    assert slept == [20.0]  # until 30 s after the first error
    assert lines(caplog) == [(logging.ERROR, "2 errors like '.*' occurred in last 30s")]
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


def test_nothing_is_scheduled_at_construction() -> None:
    plugin = ErrorsPlugin(ErrorsConfig(consolidate=(Consolidate(30.0, ".*"),)))
    assert plugin.next_deadline() is None  # and no event loop was needed to build it


@pytest.mark.parametrize(
    ("consolidate", "why"),
    [
        (Consolidate(30.0, "(unclosed"), "REGEXP '(unclosed'"),
        (Consolidate(30.0, ".*", "loud"), "LEVEL 'loud'"),
    ],
)
def test_bad_consolidate_settings_name_the_corefile_line(
    consolidate: Consolidate, why: str
) -> None:
    config = ErrorsConfig(consolidate=(consolidate,), origin=Origin("Corefile", 7))
    with pytest.raises(ValueError, match=r"^Corefile:7: errors: consolidate ") as info:
        ErrorsPlugin(config)
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30.0, "30s"),
        (300.0, "5m0s"),
        (90.0, "1m30s"),
        (3600.0, "1h0m0s"),
        (1.5, "1.5s"),
        (0.25, "250ms"),
        (0.0, "0s"),
    ],
)
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
