"""The process lifetime: a dead source is restarted with backoff and, when it cannot come
back, /health fails so the kubelet restarts the pod; start-up failures close everything."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import pytest

from kdns.app import SOURCE_BACKOFF, SOURCE_GIVE_UP, App, StartupError
from kdns.config.settings import HostPort, Settings

SEED = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "seed"


class StopError(Exception):
    pass


async def test_a_source_that_keeps_dying_is_restarted_then_fails_health() -> None:
    app = App(Settings(manifests=(SEED,), upstreams=()))
    runs = 0
    delays: list[float] = []

    async def dying() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError(f"boom {runs}")

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) > SOURCE_GIVE_UP:
            raise StopError

    with pytest.raises(StopError):
        await app._supervise_source(dying, sleep=sleep, clock=lambda: 0.0)
    assert runs == SOURCE_GIVE_UP + 1
    # Backoff grows (with 20 % jitter) up to its cap.
    for delay, base in zip(delays, SOURCE_BACKOFF, strict=False):
        assert base * 0.8 <= delay <= base * 1.2
    why = app.healthy()
    assert why is not None
    assert "failed" in why
    assert "boom" in why


async def test_a_source_that_recovers_keeps_health() -> None:
    app = App(Settings(manifests=(SEED,), upstreams=()))
    runs = 0

    async def once_then_fine() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OSError("file vanished")

    await app._supervise_source(once_then_fine, sleep=lambda _s: asyncio.sleep(0))
    assert runs == 2
    assert app.healthy() is None


async def test_a_start_up_failure_leaves_nothing_open_or_unawaited(tmp_path: Path) -> None:
    # The DNS port is taken: start-up fails after the source loaded and the chains were
    # built; nothing may be left un-awaited (no RuntimeWarning) and the error is one line.
    import socket

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    settings = Settings(
        manifests=(SEED,),
        upstreams=(HostPort("127.0.0.1", 9),),
        dns_addr=HostPort("127.0.0.1", port),
        health_addr=HostPort("127.0.0.1", 0),
        ready_addr=HostPort("127.0.0.1", 0),
        metrics_addr=HostPort("127.0.0.1", 0),
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(StartupError) as info:
                await App(settings).run()
    finally:
        taken.close()
    assert str(info.value).count("\n") == 0
    assert f"127.0.0.1:{port}" in str(info.value)
