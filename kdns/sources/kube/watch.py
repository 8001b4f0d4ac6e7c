"""One reflector per kind: list, replace the kind in the index, watch from the list's RV.

kopf's three levels (docs/architecture.md, Conventions): `Reflector.run` reconnects
forever with backoff; `list_and_replace` is one complete (paginated) list turned into a
`Replace`; `watch_once` is one watch stream turned into `Upsert`/`Delete` events. Faults
follow client-go's Reflector (docs/architecture.md, "The Kubernetes API source"): clean
end -> re-watch from the last RV; 410 -> relist; errors -> backoff 0.8 s doubling to 30 s
with jitter, reset after 2 min healthy; 429 honours Retry-After; 401 reloads credentials.
Index updates go through `apply`, one call per event, never awaited in between
(Index.apply does not await). No DNS here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdns.cluster.model import ClusterObject, Delete, Event, Kind, Replace, Upsert
from kdns.observe.stats import Stats
from kdns.sources.convert import ConversionError, metadata_names, object_from_api
from kdns.sources.kube.api import (
    PAGE_SIZE,
    ApiError,
    ExpiredError,
    ForbiddenError,
    KubeApi,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    UnreachableError,
    error_for,
)

log = logging.getLogger(__name__)

Apply = Callable[..., object]
"""`Index.apply(event, received_at=...)` or anything with that shape."""
Convert = Callable[[Mapping[str, Any], Kind], ClusterObject | None]
Sleep = Callable[[float], Awaitable[None]]


def convert_object(obj: Mapping[str, Any], kind: Kind) -> ClusterObject | None:
    """The shared converter (kdns.sources.convert); list items carry no `kind`."""
    return object_from_api(obj, kind=str(kind))


class _SkippedError(Exception):
    """An object could not be converted (already logged): skip it, never crash."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """client-go's reflector backoff (docs/architecture.md, "The Kubernetes API source")."""

    initial_seconds: float = 0.8
    factor: float = 2.0
    max_seconds: float = 30.0
    jitter: float = 1.0  # the delay d becomes d + random() * jitter * d, still capped
    reset_after_seconds: float = 120.0  # healthy this long -> start again from initial

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait before retry number `failures` (1 = the first retry)."""
        base = min(self.max_seconds, self.initial_seconds * self.factor ** max(0, failures - 1))
        # Capped after the jitter too, so no wait ever exceeds max_seconds (an API that
        # comes back is found within 30 s).
        return min(self.max_seconds, base + rng.random() * self.jitter * base)


@dataclass(slots=True)
class Health:
    """Which reflectors are connected and synced; mirrored into `stats.api_up` and logged
    once per transition (CoreDNS keeps answering from its cache while the API is away)."""

    stats: Stats
    kinds: Iterable[Kind]
    up: dict[Kind, bool] = field(default_factory=dict)
    synced: set[Kind] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.up = {kind: False for kind in self.kinds}
        self.stats.set_api_up(False)

    def set(self, kind: Kind, up: bool, *, why: str = "") -> None:
        if self.up.get(kind) == up:
            return
        was_all_up = all(self.up.values())
        self.up[kind] = up
        all_up = all(self.up.values())
        self.stats.set_api_up(all_up)
        if not up and kind in self.synced:
            log.warning(
                "kubernetes API lost for %s (%s): answering from the last known data", kind, why
            )
        elif all_up and not was_all_up:
            log.info("kubernetes API connected: every watch is live")


@dataclass(slots=True)
class Reflector:
    """The state of one kind's list/watch loop; `run()` never returns."""

    kind: Kind
    api: KubeApi
    apply: Apply
    stats: Stats
    health: Health
    convert: Convert = convert_object
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Sleep = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    page_size: int = PAGE_SIZE
    label_selector: str = ""  # only objects whose labels match (the API filters)
    field_selector: str = ""
    resource_version: str | None = None  # None: the next step is a (re)list
    failures: int = 0
    last_failure_at: float = float("-inf")
    lists: int = 0
    watches: int = 0

    async def run(self, *, iterations: int | None = None) -> None:
        """Reflect forever (or `iterations` list/watch steps, for tests)."""
        step = 0
        while iterations is None or step < iterations:
            step += 1
            try:
                if self.resource_version is None:
                    await self.list_and_replace()
                await self.watch_once()
            except ExpiredError as exc:
                # 410 Gone -> relist (and replace), at once, as client-go does.
                log.info("%s: %s; relisting", self.kind, exc)
                self.resource_version = None
            except UnauthorizedError as exc:
                self.health.set(self.kind, False, why="401")
                log.warning(
                    "%s: %s; reloading credentials from %s",
                    self.kind,
                    exc,
                    self.api.credentials.source,
                )
                self.api.credentials.reload()
                await self._back_off()
            except TooManyRequestsError as exc:
                self.health.set(self.kind, False, why="429")
                delay = max(exc.retry_after, self._next_delay())
                log.warning("%s: %s; retrying in %.1f s (Retry-After)", self.kind, exc, delay)
                await self.sleep(delay)
            except (ForbiddenError, NotFoundError) as exc:
                self.health.set(self.kind, False, why=str(exc.status))
                what = "RBAC must allow list+watch" if exc.status == 403 else "not served"
                delay = self._next_delay()
                log.error(
                    "%s: %s (%s); keeping the last known data, retrying in %.1f s",
                    self.kind,
                    exc,
                    what,
                    delay,
                )
                await self.sleep(delay)
            except (ApiError, UnreachableError) as exc:
                self.health.set(self.kind, False, why=type(exc).__name__)
                delay = self._next_delay()
                log.warning("%s: %s; retrying in %.1f s", self.kind, exc, delay)
                if isinstance(exc, UnreachableError) and exc.tls:
                    self.api.credentials.reload()  # the CA may have been rotated
                await self.sleep(delay)

    def _next_delay(self) -> float:
        now = self.clock()
        if now - self.last_failure_at >= self.backoff.reset_after_seconds:
            self.failures = 0  # healthy long enough: start again from 0.8 s
        self.failures += 1
        self.last_failure_at = now
        return self.backoff.delay(self.failures, self.rng)

    async def _back_off(self) -> None:
        await self.sleep(self._next_delay())

    async def list_and_replace(self) -> None:
        """One complete list, converted page by page, applied as one Replace."""
        if self.lists:
            self.stats.count_relist(self.kind.value)
        self.lists += 1
        objects: list[ClusterObject] = []
        token = ""
        resource_version = ""
        pages = 0
        while True:
            try:
                page = await self.api.list_page(
                    self.kind,
                    continue_token=token,
                    limit=self.page_size,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                )
            except ExpiredError:
                if not token:
                    raise
                # An expired continue token (410) -> restart the list, as client-go does.
                log.info("%s: continue token expired after %d pages; restarting", self.kind, pages)
                objects, token, pages = [], "", 0
                continue
            pages += 1
            resource_version = page.resource_version or resource_version
            items = page.items
            items.reverse()  # pop from the end: each item's JSON is freed once converted
            while items:
                try:
                    obj = self._convert(items.pop(), "LIST")
                except _SkippedError:
                    continue
                if obj is not None:
                    objects.append(obj)
            token = page.continue_token
            del page, items  # not held while the next page is awaited (peak memory)
            if not token:
                break
        received_at = time.monotonic()
        replace = Replace(self.kind, tuple(objects))
        count = len(objects)
        del objects  # the tuple alone is enough
        self.apply(replace, received_at=received_at)
        del replace
        self.resource_version = resource_version
        self.health.synced.add(self.kind)
        self.stats.mark_synced(self.kind.value, self.wall_clock())
        log.info(
            "%s: listed %d objects in %d pages at resourceVersion %s",
            self.kind,
            count,
            pages,
            resource_version,
        )

    async def watch_once(self) -> None:
        """One watch from the current RV until the server ends it (then return), or raise."""
        if self.watches:
            self.stats.count_watch_restart(self.kind.value)
        self.watches += 1
        assert self.resource_version is not None
        started = self.clock()
        events = 0
        stream = await self.api.watch(
            self.kind,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        async with stream:
            self.health.set(self.kind, True)  # the server answered 200: we are watching
            async for event in stream:
                events += 1
                self._handle(event.type, event.object, event.received_at)
        # A clean end (timeoutSeconds): re-watch from the last RV at once. client-go treats
        # a watch that ends in under a second with no events as an error (no hot loop).
        if events == 0 and self.clock() - started < 1.0:
            raise UnreachableError("watch closed at once with no events")
        log.debug("%s: watch ended cleanly after %d events", self.kind, events)

    def _handle(self, kind_of_event: str, obj: dict[str, Any], received_at: float) -> None:
        if kind_of_event == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            raise error_for(int(code) if isinstance(code, int) else 500, obj)
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind_of_event == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return
        event: Event | None = None
        if kind_of_event in ("ADDED", "MODIFIED"):
            try:
                converted = self._convert(obj, kind_of_event)
            except _SkippedError:  # logged; the copy we hold (if any) stays
                converted = None
                skipped = True
            else:
                skipped = False
            if converted is not None:
                event = Upsert(converted)
            elif not skipped:
                # Not (or no longer) served, e.g. a Pod that stopped running: drop any
                # copy we hold. A Delete for an unknown object is harmless.
                event = self._delete_event(obj, kind_of_event)
        elif kind_of_event == "DELETED":
            event = self._delete_event(obj, kind_of_event)
        else:
            log.warning("%s: skipping watch event of unknown type %r", self.kind, kind_of_event)
        if event is not None:
            self.apply(event, received_at=received_at)
        if rv:
            self.resource_version = str(rv)
        self.stats.mark_synced(self.kind.value, self.wall_clock())

    def _delete_event(self, obj: Mapping[str, Any], what: str) -> Delete | None:
        try:
            namespace, name = metadata_names(obj, namespaced=self.kind is not Kind.NAMESPACE)
        except ConversionError as exc:
            log.warning("%s %s: skipping object without a usable name: %s", what, self.kind, exc)
            return None
        return Delete(self.kind, namespace, name)

    def _convert(self, obj: Mapping[str, Any], what: str) -> ClusterObject | None:
        try:
            return self.convert(obj, self.kind)
        except (ConversionError, ValueError, TypeError, KeyError, AttributeError) as exc:
            meta = obj.get("metadata") if isinstance(obj, Mapping) else None
            where = (
                f"{meta.get('namespace', '')}/{meta.get('name', '?')}"
                if isinstance(meta, Mapping)
                else "?"
            )
            log.warning("%s %s %s: skipped, cannot convert: %s", what, self.kind, where, exc)
            raise _SkippedError from exc
