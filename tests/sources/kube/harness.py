"""Run the Kubernetes source against the fake API in a test: a real Index, fake delays."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from kdns.cluster.index import Index
from kdns.cluster.model import Event, Kind
from kdns.observe.stats import Stats
from kdns.sources.convert import SourceFilter
from kdns.sources.kube.auth import load_credentials
from kdns.sources.kube.source import required_kinds, run_kube_source
from tests.fakes.kubeapi import FakeKubeApi, kubeconfig_for


@dataclass
class RecordingSleep:
    """Injected sleep: records each requested backoff, waits only a few ms of real time."""

    delays: list[float] = field(default_factory=list)
    real_seconds: float = 0.01

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(min(seconds, self.real_seconds))


@dataclass
class Running:
    index: Index
    stats: Stats
    sleep: RecordingSleep
    kubeconfig: Path
    applied: list[tuple[Event, float | None]]
    task: asyncio.Task[Any]
    kinds: tuple[Kind, ...]


async def eventually(predicate: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll `predicate` every 5 ms for at most `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


async def watching(run: Running, fake: FakeKubeApi) -> None:
    """Wait until the index is synced and every kind's watch is being served."""
    await eventually(
        lambda: run.index.synced and run.stats.api_up == 1 and fake.open_watches() >= len(run.kinds)
    )


@asynccontextmanager
async def run_source(
    fake: FakeKubeApi,
    tmp_path: Path,
    *,
    kinds: Sequence[Kind] | None = None,
    read_timeout_seconds: float = 90.0,
    watch_timeout_range: tuple[int, int] = (240, 300),
    page_size: int = 500,
    filters: SourceFilter | None = None,
) -> AsyncIterator[Running]:
    """Run `run_kube_source` feeding a real Index until the block ends."""
    kinds = tuple(kinds or required_kinds(False))
    index = Index(required=kinds)
    stats = Stats()
    sleep = RecordingSleep()
    applied: list[tuple[Event, float | None]] = []

    def apply(event: Event, *, received_at: float | None = None) -> bool:
        applied.append((event, received_at))
        return index.apply(event, received_at=received_at)

    kubeconfig = kubeconfig_for(fake, tmp_path / "kubeconfig")
    credentials = load_credentials(kubeconfig=kubeconfig, in_cluster=False)
    task = asyncio.create_task(
        run_kube_source(
            credentials=credentials,
            apply=apply,
            kinds=kinds,
            stats=stats,
            read_timeout_seconds=read_timeout_seconds,
            watch_timeout_range=watch_timeout_range,
            sleep=sleep,
            rng=random.Random(7),
            page_size=page_size,
            filters=filters,
        )
    )
    try:
        yield Running(index, stats, sleep, kubeconfig, applied, task, kinds)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise AssertionError("the source crashed") from task.exception()


def ip(text: str) -> Any:
    return ip_address(text)
