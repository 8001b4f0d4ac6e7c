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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from kdns.cluster.model import ClusterObject, Kind
from kdns.observe.stats import Stats
from kdns.sources.convert import RUNNING_PODS, SourceFilter, object_from_api
from kdns.sources.kube.api import PAGE_SIZE, KubeApi
from kdns.sources.kube.auth import Credentials
from kdns.sources.kube.watch import Apply, Backoff, Health, Reflector, Sleep, convert_object

log = logging.getLogger(__name__)


def required_kinds(pods_verified: bool, *, endpoints: bool = True) -> tuple[Kind, ...]:
    """The kinds to list and watch: Pods only for `pods verified` (docs/rules.md P1) or
    autopath, EndpointSlices unless `noendpoints`."""
    kinds = [Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE]
    if not endpoints:
        kinds.remove(Kind.ENDPOINT_SLICE)
    return (*kinds, Kind.POD) if pods_verified else tuple(kinds)


def selectors(kind: Kind, filters: SourceFilter) -> tuple[str, str]:
    """(labelSelector, fieldSelector) of a kind's LIST and WATCH, as CoreDNS's watches:
    `labels` on Services, EndpointSlices and Pods, `namespace_labels` on Namespaces, and
    Pods that are not running left out by the server."""
    selector = filters.selector(kind)
    fields = RUNNING_PODS if kind is Kind.POD else ""
    return ("" if selector is None else str(selector)), fields


async def run_kube_source(
    *,
    credentials: Credentials,
    apply: Apply,
    stats: Stats,
    pods_verified: bool = False,
    kinds: Sequence[Kind] | None = None,
    filters: SourceFilter | None = None,
    read_timeout_seconds: float = 90.0,
    watch_timeout_range: tuple[int, int] = (240, 300),
    backoff: Backoff | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
    page_size: int = PAGE_SIZE,
) -> NoReturn:
    """List and watch forever, feeding `apply` (`Index.apply`). The kinds are
    `required_kinds(pods_verified)` unless `kinds` names them; `filters` says which
    objects to ask the server for, and whether to keep endpoints' pod names."""
    filters = filters or SourceFilter()
    kinds = tuple(kinds) if kinds is not None else required_kinds(pods_verified)
    rng = rng or random.Random()
    health = Health(stats, kinds)
    log.info(
        "watching %s at %s (credentials: %s)",
        ", ".join(_described(kind, filters) for kind in kinds),
        credentials.host,
        credentials.source,
    )
    convert = _keeping_pod_names if filters.pod_names else convert_object
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
                convert=convert,
                label_selector=selectors(kind, filters)[0],
                field_selector=selectors(kind, filters)[1],
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


def _keeping_pod_names(obj: Mapping[str, Any], kind: Kind) -> ClusterObject | None:
    """The shared converter, keeping endpoints' pod names (`endpoint_pod_names`)."""
    return object_from_api(obj, kind=str(kind), pod_names=True)


def _described(kind: Kind, filters: SourceFilter) -> str:
    selector = filters.selector(kind)
    return str(kind) if selector is None else f"{kind} labelled {selector}"
