"""Plain counters the hot path bumps; `kdns.observe.metrics` folds them into Prometheus on scrape.

The hot path never touches a Prometheus object: it adds to ints in dicts (or to its own
per-cache-entry counts, folded in here by a flusher before each scrape), so counting costs
a few tens of nanoseconds. Callers count through `Stats`'s methods (`count_request`,
`count_cached`, `count_cache_hit`, `count_relist`, ...), which own the label tuples of each
dict; only `kdns.observe.metrics` reads the dicts. Bucket bounds are CoreDNS's, so
dashboards read the same. No I/O here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

_bisect_left: Final = bisect.bisect_left

K = TypeVar("K")

# CoreDNS plugin/metrics/vars: request duration ExponentialBuckets(0.00025, 2, 16).
DURATION_BUCKETS: Final[tuple[float, ...]] = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS plugin/metrics/vars: size buckets.
SIZE_BUCKETS: Final[tuple[float, ...]] = (
    0,
    100,
    200,
    300,
    400,
    511,
    1023,
    2047,
    4095,
    8291,
    16e3,
    32e3,
    48e3,
    64e3,
)
# CoreDNS plugin/kubernetes/metrics.go: ExponentialBuckets(0.001, 2, 20).
PROGRAMMING_BUCKETS: Final[tuple[float, ...]] = tuple(0.001 * 2**i for i in range(20))
# Forward (proxy) request duration, CoreDNS plugin/pkg/proxy: ExponentialBuckets(0.00025, 2, 16).
PROXY_BUCKETS: Final[tuple[float, ...]] = DURATION_BUCKETS


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-read histogram: `counts[i]` = observations <= bounds[i] and > bounds[i-1];
    the last slot is +Inf."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.n += times


# Label tuples, CoreDNS names: requests (zone, proto, family, type); responses (zone, rcode);
# sizes (zone, proto); durations (zone,).
RequestKey = tuple[str, str, str, str]
ResponseKey = tuple[str, str]
SizeKey = tuple[str, str]


@dataclass(slots=True)
class Stats:
    """Everything kdns counts. One instance per process, owned by the app."""

    requests: dict[RequestKey, int] = field(default_factory=dict)
    responses: dict[ResponseKey, int] = field(default_factory=dict)
    do_requests: dict[str, int] = field(default_factory=dict)  # zone -> DO-bit requests
    request_sizes: dict[SizeKey, Histogram] = field(default_factory=dict)
    response_sizes: dict[SizeKey, Histogram] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)  # zone -> seconds
    panics: int = 0  # unexpected exceptions caught while answering
    dropped: int = 0  # packets dropped unanswered (QR=1, unparsable, over limits)
    # Forward cache (CoreDNS cache plugin names); type = "success" | "denial".
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_misses: int = 0
    cache_entries: dict[str, int] = field(default_factory=dict)
    cache_evictions: dict[str, int] = field(default_factory=dict)
    cache_prefetches: int = 0  # refreshes started by prefetch or serve_stale
    cache_served_stale: int = 0  # answers from expired entries (serve_stale)
    # Forwarding: (to, rcode) -> histogram of seconds; health-check failures by `to`.
    proxy_durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    proxy_healthcheck_failures: dict[str, int] = field(default_factory=dict)
    max_concurrent_rejects: int = 0
    healthcheck_broken: int = 0  # queries sent to a random upstream since all were down
    # Kubernetes source: service_kind -> seconds from event arrival to first answer.
    programming: dict[str, Histogram] = field(default_factory=dict)
    # kdns's own: per kind.
    watch_restarts: dict[str, int] = field(default_factory=dict)
    relists: dict[str, int] = field(default_factory=dict)
    last_sync_unix: dict[str, float] = field(default_factory=dict)  # kind -> time of last good sync
    api_up: int = 0  # 1 while every watch is connected
    rrl: dict[str, int] = field(default_factory=dict)  # response-rate limiting: outcome -> n
    reload_failed: int = 0  # Corefile reloads refused (coredns_reload_failed_total)
    # autopath: server -> queries answered from the search path (coredns_autopath_success_total)
    autopath_success: dict[str, int] = field(default_factory=dict)
    # Callables run before each scrape to fold fast-path counts into the fields above.
    flushers: list[Callable[[], None]] = field(default_factory=list)

    def flush(self) -> None:
        for flush in self.flushers:
            flush()

    # Each method below owns the label shape of what it counts; callers never index the
    # dicts themselves.

    # - DNS requests and responses (coredns_dns_*) -

    def count_request(
        self, zone: str, proto: str, family: str, qtype: str, request_size: int, *, times: int = 1
    ) -> None:
        """`times` requests of one shape; `family` is "1" (IPv4) or "2" (IPv6)."""
        # (Called for every query off the fast path: the helpers are written out inline.)
        requests = self.requests
        key = (zone, proto, family, qtype)
        requests[key] = requests.get(key, 0) + times
        sizes = self.request_sizes.get((zone, proto))
        if sizes is None:
            sizes = _hist(self.request_sizes, (zone, proto), SIZE_BUCKETS)
        sizes.counts[_bisect_left(sizes.bounds, request_size)] += times
        sizes.total += request_size * times
        sizes.n += times

    def count_response(
        self,
        zone: str,
        proto: str,
        rcode: str,
        response_size: int,
        seconds: float,
        *,
        times: int = 1,
    ) -> None:
        """`times` responses of one shape, each taking `seconds` from request to reply."""
        # (Called for every query off the fast path: the helpers are written out inline.)
        responses = self.responses
        key = (zone, rcode)
        responses[key] = responses.get(key, 0) + times
        sizes = self.response_sizes.get((zone, proto))
        if sizes is None:
            sizes = _hist(self.response_sizes, (zone, proto), SIZE_BUCKETS)
        sizes.counts[_bisect_left(sizes.bounds, response_size)] += times
        sizes.total += response_size * times
        sizes.n += times
        durations = self.durations.get(zone)
        if durations is None:
            durations = _hist(self.durations, zone, DURATION_BUCKETS)
        durations.counts[_bisect_left(durations.bounds, seconds)] += times
        durations.total += seconds * times
        durations.n += times

    def count_cached(
        self, meta: CachedReply, family: str, hits: int, seconds_per_hit: float
    ) -> None:
        """`hits` UDP queries answered from one fast-path cache entry: a request and a
        response each, every hit timed `seconds_per_hit`."""
        self.count_request(meta.zone, "udp", family, meta.qtype, meta.request_size, times=hits)
        self.count_response(
            meta.zone, "udp", meta.rcode, meta.response_size, seconds_per_hit, times=hits
        )

    def count_do_request(self, zone: str, *, times: int = 1) -> None:
        """`times` requests with the DNSSEC OK bit (coredns_dns_do_requests_total)."""
        _bump(self.do_requests, zone, times)

    # - the forward cache and upstreams (coredns_cache_*, coredns_proxy_*, coredns_forward_*) -

    def count_cache_hit(self, kind: str, *, times: int = 1) -> None:
        """`kind` is the cache: "success" or "denial". `times` > 1 when folding hits the
        fast path answered from a reply the cache plugin handed it."""
        _bump(self.cache_hits, kind, times)

    def count_cache_prefetch(self) -> None:
        """A refresh of a cached entry before (prefetch) or after (serve_stale) it expired
        (coredns_cache_prefetch_total)."""
        self.cache_prefetches += 1

    def count_cache_served_stale(self) -> None:
        """An answer from an expired entry (coredns_cache_served_stale_total)."""
        self.cache_served_stale += 1

    def count_cache_miss(self) -> None:
        self.cache_misses += 1

    def count_cache_eviction(self, kind: str) -> None:
        _bump(self.cache_evictions, kind)

    def set_cache_entries(self, kind: str, entries: int) -> None:
        self.cache_entries[kind] = entries

    def count_max_concurrent_reject(self) -> None:
        self.max_concurrent_rejects += 1

    def observe_proxy(self, to: str, rcode: str, seconds: float) -> None:
        """One exchange with upstream `to` that ended in a reply with `rcode`."""
        # (Once per forwarded query: written out inline.)
        hist = self.proxy_durations.get((to, rcode))
        if hist is None:
            hist = _hist(self.proxy_durations, (to, rcode), PROXY_BUCKETS)
        hist.counts[_bisect_left(hist.bounds, seconds)] += 1
        hist.total += seconds
        hist.n += 1

    def count_healthcheck_failure(self, to: str) -> None:
        _bump(self.proxy_healthcheck_failures, to)

    # - autopath (coredns_autopath_*) -

    def count_autopath_success(self, server: str) -> None:
        """A query autopath answered from its search path (`server`: the listener label)."""
        _bump(self.autopath_success, server)

    def count_healthcheck_broken(self) -> None:
        """Every upstream was down, so one was picked at random
        (coredns_forward_healthcheck_broken_total)."""
        self.healthcheck_broken += 1

    # - the Kubernetes source (coredns_kubernetes_*, kdns_*) -

    def observe_programming(self, service_kind: str, seconds: float) -> None:
        _hist(self.programming, service_kind, PROGRAMMING_BUCKETS).observe(seconds)

    def count_relist(self, kind: str) -> None:
        """A list of `kind` after the first one (a 410 or a restart)."""
        _bump(self.relists, kind)

    def count_watch_restart(self, kind: str) -> None:
        """A watch of `kind` after the first one."""
        _bump(self.watch_restarts, kind)

    def mark_synced(self, kind: str, unix_time: float) -> None:
        """`kind`'s data was known current at `unix_time` (a list or a watch event)."""
        self.last_sync_unix[kind] = unix_time

    def set_api_up(self, up: bool) -> None:
        """Whether every watch is connected (kdns_api_up)."""
        self.api_up = int(up)


class CachedReply(Protocol):
    """The labels and sizes `Stats.count_cached` reads (kdns.serve.fastpath.EntryMeta)."""

    @property
    def zone(self) -> str: ...
    @property
    def qtype(self) -> str: ...
    @property
    def rcode(self) -> str: ...
    @property
    def request_size(self) -> int: ...
    @property
    def response_size(self) -> int: ...


def _bump(into: dict[K, int], key: K, n: int = 1) -> None:
    into[key] = into.get(key, 0) + n


def _hist(table: dict[K, Histogram], key: K, bounds: tuple[float, ...]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(bounds)
    return hist


def _add(into: dict[Any, int], other: Mapping[Any, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


def _add_hist(into: dict[Any, Histogram], other: Mapping[Any, Histogram]) -> None:
    for key, h in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = Histogram(h.bounds, list(h.counts), h.total, h.n)
            continue
        mine.counts = [a + b for a, b in zip(mine.counts, h.counts, strict=True)]
        mine.total += h.total
        mine.n += h.n


def snapshot(stats: Stats) -> Stats:
    """A picklable copy (no flushers) to ship from a worker process to the one serving
    /metrics. Call `stats.flush()` first."""
    copy = Stats()
    merge_into(copy, stats)
    copy.api_up = stats.api_up
    copy.last_sync_unix = dict(stats.last_sync_unix)
    return copy


def merge_into(total: Stats, other: Stats) -> None:
    """Add `other`'s counters and histograms to `total` (workers sharing one port).

    Counters, histograms and per-worker gauges (cache entries) add up; `api_up` is the
    minimum and a kind's last sync time the oldest, so a lagging worker shows."""
    for name in (
        "requests", "responses", "do_requests", "cache_hits", "cache_entries",
        "cache_evictions", "proxy_healthcheck_failures", "watch_restarts", "relists", "rrl",
        "autopath_success",
    ):  # fmt: skip
        _add(getattr(total, name), getattr(other, name))
    for name in ("request_sizes", "response_sizes", "durations", "proxy_durations", "programming"):
        _add_hist(getattr(total, name), getattr(other, name))
    total.panics += other.panics
    total.dropped += other.dropped
    total.cache_misses += other.cache_misses
    total.max_concurrent_rejects += other.max_concurrent_rejects
    total.healthcheck_broken += other.healthcheck_broken
    total.cache_prefetches += other.cache_prefetches
    total.cache_served_stale += other.cache_served_stale
    for kind, at in other.last_sync_unix.items():
        total.last_sync_unix[kind] = min(at, total.last_sync_unix.get(kind, at))


def combined(stats: Stats, peers: Iterable[Stats]) -> Stats:
    """This process's stats plus its workers' latest snapshots, as one `Stats`."""
    peers = list(peers)
    if not peers:
        return stats
    total = snapshot(stats)
    for peer in peers:
        merge_into(total, peer)
        total.api_up = min(total.api_up, peer.api_up)
    return total
