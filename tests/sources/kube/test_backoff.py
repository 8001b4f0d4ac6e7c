"""Backoff and error mapping: client-go's numbers (docs/architecture.md), no real time."""

from __future__ import annotations

import random

import pytest

from kdns.cluster.model import Kind
from kdns.observe.stats import Stats
from kdns.sources.kube.api import (
    ExpiredError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    UnauthorizedError,
    error_for,
)
from kdns.sources.kube.watch import Backoff, Health, Reflector


class ZeroRandom(random.Random):
    def random(self) -> float:
        return 0.0


class OneRandom(random.Random):
    def random(self) -> float:
        return 1.0


def test_backoff_doubles_from_0_8_to_a_30_second_cap():
    backoff = Backoff()
    delays = [backoff.delay(n, ZeroRandom()) for n in range(1, 9)]
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def test_jitter_adds_up_to_the_delay_itself_but_never_passes_the_cap():
    backoff = Backoff()
    assert backoff.delay(1, OneRandom()) == pytest.approx(1.6)
    assert backoff.delay(5, OneRandom()) == pytest.approx(25.6)
    assert backoff.delay(10, OneRandom()) == pytest.approx(30.0)


def test_backoff_resets_after_two_healthy_minutes():
    now = [1000.0]
    reflector = Reflector(
        kind=Kind.SERVICE,
        api=None,  # type: ignore[arg-type]
        apply=lambda *a, **k: None,
        stats=Stats(),
        health=Health(Stats(), ()),
        clock=lambda: now[0],
        rng=ZeroRandom(),
    )
    assert [reflector._next_delay() for _ in range(3)] == [0.8, 1.6, 3.2]
    now[0] += 119.0  # not yet healthy long enough
    assert reflector._next_delay() == 6.4
    now[0] += 120.0
    assert reflector._next_delay() == 0.8


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (410, ExpiredError),
        (500, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
def test_statuses_map_to_typed_errors(code, error):
    exc = error_for(code, {"reason": "R", "message": "m"})
    assert type(exc) is error
    assert exc.status == code
    assert "R" in str(exc)


def test_429_carries_retry_after_seconds():
    exc = error_for(429, None, retry_after="12")
    assert isinstance(exc, TooManyRequestsError)
    assert exc.retry_after == 12.0
    assert error_for(429, None, retry_after="garbage").retry_after == 1.0  # type: ignore[attr-defined]
