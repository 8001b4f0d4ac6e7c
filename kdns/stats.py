"""Plain counters the DNS hot path bumps; `kdns.metrics` folds them into Prometheus on scrape.

The hot path never touches a Prometheus object: it adds to ints in dicts (or to its own
per-cache-entry counts, folded in here by a flusher before each scrape), so counting costs
a few tens of nanoseconds. Bucket bounds are CoreDNS's, so dashboards read the same.
No I/O here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

# CoreDNS plugin/metrics/vars: request duration ExponentialBuckets(0.00025, 2, 16).
DURATION_BUCKETS: tuple[float, ...] = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS plugin/metrics/vars: size buckets.
SIZE_BUCKETS: tuple[float, ...] = (
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
PROGRAMMING_BUCKETS: tuple[float, ...] = tuple(0.001 * 2**i for i in range(20))
# Forward (proxy) request duration, CoreDNS plugin/pkg/proxy: ExponentialBuckets(0.00025, 2, 16).
PROXY_BUCKETS: tuple[float, ...] = DURATION_BUCKETS


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
    # Forwarding: (to, rcode) -> histogram of seconds; health-check failures by `to`.
    proxy_durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    proxy_healthcheck_failures: dict[str, int] = field(default_factory=dict)
    max_concurrent_rejects: int = 0
    # Kubernetes source: service_kind -> seconds from event arrival to first answer.
    programming: dict[str, Histogram] = field(default_factory=dict)
    # kdns's own: per kind.
    watch_restarts: dict[str, int] = field(default_factory=dict)
    relists: dict[str, int] = field(default_factory=dict)
    last_sync_unix: dict[str, float] = field(default_factory=dict)  # kind -> time of last good sync
    api_up: int = 0  # 1 while every watch is connected
    # Callables run before each scrape to fold fast-path counts into the fields above.
    flushers: list[Callable[[], None]] = field(default_factory=list)

    def flush(self) -> None:
        for flush in self.flushers:
            flush()

    def count_request(
        self, zone: str, proto: str, family: str, qtype: str, request_size: int
    ) -> None:
        key = (zone, proto, family, qtype)
        self.requests[key] = self.requests.get(key, 0) + 1
        skey = (zone, proto)
        hist = self.request_sizes.get(skey)
        if hist is None:
            hist = self.request_sizes[skey] = Histogram(SIZE_BUCKETS)
        hist.observe(request_size)

    def count_response(
        self, zone: str, proto: str, rcode: str, response_size: int, seconds: float
    ) -> None:
        key = (zone, rcode)
        self.responses[key] = self.responses.get(key, 0) + 1
        skey = (zone, proto)
        hist = self.response_sizes.get(skey)
        if hist is None:
            hist = self.response_sizes[skey] = Histogram(SIZE_BUCKETS)
        hist.observe(response_size)
        dur = self.durations.get(zone)
        if dur is None:
            dur = self.durations[zone] = Histogram(DURATION_BUCKETS)
        dur.observe(seconds)

    def observe_programming(self, service_kind: str, seconds: float) -> None:
        hist = self.programming.get(service_kind)
        if hist is None:
            hist = self.programming[service_kind] = Histogram(PROGRAMMING_BUCKETS)
        hist.observe(seconds)
