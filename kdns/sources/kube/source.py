"""The Kubernetes API source: one reflector per kind, all feeding one index.

The app calls `run_kube_source()` inside its TaskGroup; it never returns (cancel it to
stop). It owns the aiohttp session and the per-kind reflectors, nothing else: no DNS, no
HTTP server. `required_kinds()` says which kinds the index must have listed before it is
`synced` (CoreDNS's HasSynced: every enabled informer).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from kdns.cluster.model import Kind
from kdns.observe.stats import Stats
from kdns.sources.kube.api import PAGE_SIZE, KubeApi
from kdns.sources.kube.auth import Credentials
from kdns.sources.kube.watch import Apply, Backoff, Health, Reflector, Sleep

log = logging.getLogger(__name__)


def required_kinds(pods_verified: bool) -> tuple[Kind, ...]:
    """The kinds to list and watch: Pods only for `pods verified` (docs/rules.md P1)."""
    kinds = (Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE)
    return (*kinds, Kind.POD) if pods_verified else kinds


async def run_kube_source(
    *,
    credentials: Credentials,
    apply: Apply,
    stats: Stats,
    pods_verified: bool = False,
    kinds: Sequence[Kind] | None = None,
    read_timeout_seconds: float = 90.0,
    watch_timeout_range: tuple[int, int] = (240, 300),
    backoff: Backoff | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
    page_size: int = PAGE_SIZE,
) -> NoReturn:
    """List and watch forever, feeding `apply` (`Index.apply`). The kinds are
    `required_kinds(pods_verified)` unless `kinds` names them."""
    kinds = tuple(kinds) if kinds is not None else required_kinds(pods_verified)
    rng = rng or random.Random()
    health = Health(stats, kinds)
    log.info(
        "watching %s at %s (credentials: %s)",
        ", ".join(kinds),
        credentials.host,
        credentials.source,
    )
    async with KubeApi(
        credentials,
        read_timeout_seconds=read_timeout_seconds,
        watch_timeout_range=watch_timeout_range,
        rng=rng,
    ) as api:
        reflectors = [
            Reflector(
                kind,
                api,
                apply,
                stats,
                health,
                backoff=backoff or Backoff(),
                sleep=sleep,
                rng=random.Random(rng.random()),
                page_size=page_size,
                clock=clock or time.monotonic,
            )
            for kind in kinds
        ]
        async with asyncio.TaskGroup() as group:
            for reflector in reflectors:
                group.create_task(reflector.run(), name=f"reflector-{reflector.kind}")
    raise AssertionError("unreachable: reflectors never return")
