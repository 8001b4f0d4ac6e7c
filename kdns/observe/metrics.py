"""Prometheus exposition: folds the plain counters of `Stats` into CoreDNS's metric
names and labels at scrape time, so existing dashboards and alerts work unchanged.

Owns the metric names, label sets and the scrape-time conversion. Must not be called from the
DNS hot path (all work happens in `collect()`, once per scrape), must not import dnslib or the
`kubernetes` package, and must not expose anything sensitive (tokens, kubeconfig paths, names
of cluster objects): label values are zones, protocols, qtypes, rcodes, upstream addresses and
object kinds only.

Names and labels follow CoreDNS `plugin/metrics/vars`, `plugin/cache`, `plugin/forward`,
`plugin/pkg/proxy`, `plugin/kubernetes` and `plugin/health`. `coredns_build_info{goversion}`
carries the Python version string, since there is no Go runtime here.

Only what is true of the running process is exported: the Kubernetes API's families
(`kdns_api_up`, watch restarts, relists, sync age) only with the API source, and a reload
state only for the sources given (`kdns_source_reload_failed{source}`,
`kdns_source_last_success_timestamp_seconds{source}`).

Programming latency comes in two measures. `coredns_kubernetes_dns_programming_duration_
seconds` is CoreDNS's: from an EndpointSlice's last-change-trigger-time to when the index
applied it (`Index.programming`). `kdns_dns_programming_first_query_seconds` is kdns's own:
from a change's arrival to the first answer after it (`Stats.programming`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

import kdns
from kdns.config.settings import HostPort
from kdns.observe.stats import Histogram, Stats, combined

# CoreDNS plugin.SlimTimeBuckets = ExponentialBuckets(0.00025, 10, 5): the health self-check.
HEALTH_BUCKETS: tuple[float, ...] = tuple(0.00025 * 10**i for i in range(5))

ReloadStatus = Callable[[], tuple[bool, float]]
"""A source's reload state: (failing: the last reload attempt failed, last_success: Unix
time of the last successful load). E.g. `ZoneSet.status`."""

# The "plugins" kdns implements, named as CoreDNS names the equivalent plugin, for
# coredns_plugin_enabled (dashboards use it to tell which panels apply).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "cache",
    "errors",
    "forward",
    "health",
    "kubernetes",
    "loadbalance",
    "loop",
    "prometheus",
    "ready",
)

# CoreDNS's cache plugin labels its series with the server block's zones; kdns's forward cache
# sits in the root block, as kubeadm's `cache 30` does in `.:53`.
CACHE_ZONES = "."
# coredns_plugin_enabled: plugin names (under the root zone and this process's server), or
# a callable giving (server, zone, name) for every plugin of every server block, read at
# each scrape so a Corefile reload shows.
PluginsEnabled = Sequence[str] | Callable[[], Iterable[tuple[str, str, str]]]
# The server block zone for coredns_plugin_enabled when only names are given.
BLOCK_ZONE = "."
# CoreDNS's `view` label is "" unless the `view` plugin is used; kdns has no views.
VIEW = ""
# coredns_dns_responses_total{plugin}: the plugin that wrote the reply. Stats does not record
# it yet (its response key is (zone, rcode)), so the label is present but empty.
RESPONSE_PLUGIN = ""
PROXY_NAME = "forward"


def server_label(addr: HostPort) -> str:
    """Return CoreDNS's `server` label for a listener: `dns://:53` for all addresses."""
    return f"dns://{addr}"


def build_info() -> tuple[str, str, str]:
    """Return (version, revision, goversion); goversion is the Python version string."""
    return (kdns.__version__, "", f"python{platform.python_version()}")


def _histogram(hist: Histogram) -> tuple[list[tuple[str, float]], float]:
    """Turn a per-slot histogram into Prometheus cumulative buckets (ending with +Inf)."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        running += count
        buckets.append((repr(float(bound)), float(running)))
    running += hist.counts[-1]
    buckets.append(("+Inf", float(running)))
    return buckets, hist.total


def _add_histograms(
    family: HistogramMetricFamily,
    items: Iterable[tuple[Sequence[str], Histogram]],
) -> HistogramMetricFamily:
    for labels, hist in items:
        buckets, total = _histogram(hist)
        family.add_metric(list(labels), buckets, total)
    return family


class KdnsCollector(Collector):
    """Builds every coredns_* and kdns_* family from `Stats` on each scrape."""

    def __init__(
        self,
        stats: Stats,
        *,
        server: str,
        objects: Callable[[], Mapping[str, int]],
        ready: Callable[[], bool],
        health: Histogram | None = None,
        plugins: PluginsEnabled = DEFAULT_PLUGINS,
        clock: Callable[[], float] = time.time,
        peers: Callable[[], Iterable[Stats]] | None = None,
        api: bool = False,
        reloads: Mapping[str, ReloadStatus] | None = None,
        programming: Callable[[], Mapping[str, Histogram]] | None = None,
    ) -> None:
        self._stats = stats
        self._api = api
        self._reloads = dict(reloads or {})
        self._programming = programming
        self._peers = peers
        self._server = server
        self._objects = objects
        self._ready = ready
        self._health = health if health is not None else Histogram(HEALTH_BUCKETS)
        self._plugins = plugins if callable(plugins) else tuple(plugins)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        stats.flush()  # fold the fast path's own counts in first
        if self._peers is not None:  # --workers: the other workers' latest snapshots
            stats = combined(stats, self._peers())
        yield from self._dns(stats)
        yield from self._cache(stats)
        yield from self._forward(stats)
        yield from self._autopath(stats)
        yield from self._kubernetes(stats)
        yield from self._process_level(stats)
        if self._api:
            yield from self._kube_api(stats)
        yield from self._reload_state()
        yield from self._kdns(stats)

    def _dns(self, stats: Stats) -> Iterator[Metric]:
        srv, view = self._server, VIEW
        requests = CounterMetricFamily(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        for (zone, proto, family, qtype), n in sorted(stats.requests.items()):
            requests.add_metric([srv, zone, view, proto, family, qtype], n)
        yield requests

        responses = CounterMetricFamily(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        for (zone, rcode), n in sorted(stats.responses.items()):
            responses.add_metric([srv, zone, view, rcode, RESPONSE_PLUGIN], n)
        yield responses

        do = CounterMetricFamily(
            "coredns_dns_do_requests_total",
            "Counter of DNS requests with DO bit set per zone.",
            labels=["server", "zone", "view"],
        )
        for zone, n in sorted(stats.do_requests.items()):
            do.add_metric([srv, zone, view], n)
        yield do

        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took per zone.",
                labels=["server", "zone", "view"],
            ),
            (((srv, zone, view), h) for zone, h in sorted(stats.durations.items())),
        )
        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_dns_request_size_bytes",
                "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
                labels=["server", "zone", "view", "proto"],
            ),
            (((srv, z, view, p), h) for (z, p), h in sorted(stats.request_sizes.items())),
        )
        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_dns_response_size_bytes",
                "Size of the returned response in bytes.",
                labels=["server", "zone", "view", "proto"],
            ),
            (((srv, z, view, p), h) for (z, p), h in sorted(stats.response_sizes.items())),
        )

    def _cache(self, stats: Stats) -> Iterator[Metric]:
        srv, zones, view = self._server, CACHE_ZONES, VIEW
        entries = GaugeMetricFamily(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            labels=["server", "type", "zones", "view"],
        )
        for kind, n in sorted(stats.cache_entries.items()):
            entries.add_metric([srv, kind, zones, view], n)
        yield entries

        hits = CounterMetricFamily(
            "coredns_cache_hits_total",
            "The count of cache hits.",
            labels=["server", "type", "zones", "view"],
        )
        for kind, n in sorted(stats.cache_hits.items()):
            hits.add_metric([srv, kind, zones, view], n)
        yield hits

        misses = CounterMetricFamily(
            "coredns_cache_misses_total",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests.",
            labels=["server", "zones", "view"],
        )
        requests = CounterMetricFamily(
            "coredns_cache_requests_total",
            "The count of cache requests.",
            labels=["server", "zones", "view"],
        )
        evictions = CounterMetricFamily(
            "coredns_cache_evictions_total",
            "The count of cache evictions.",
            labels=["server", "type", "zones", "view"],
        )
        # Only once the cache has been used: an idle cache exposes no series, as in CoreDNS.
        if stats.cache_hits or stats.cache_misses:
            misses.add_metric([srv, zones, view], stats.cache_misses)
            # Every lookup is a hit or a miss, so requests = hits + misses.
            total = sum(stats.cache_hits.values()) + stats.cache_misses
            requests.add_metric([srv, zones, view], total)
        for kind, n in sorted(stats.cache_evictions.items()):
            evictions.add_metric([srv, kind, zones, view], n)
        yield misses
        yield requests
        yield evictions
        prefetches = CounterMetricFamily(
            "coredns_cache_prefetch_total",
            "The number of times the cache has prefetched a cached item.",
            labels=["server", "zones", "view"],
        )
        stale = CounterMetricFamily(
            "coredns_cache_served_stale_total",
            "The number of requests served from stale cache entries.",
            labels=["server", "zones", "view"],
        )
        if stats.cache_prefetches:
            prefetches.add_metric([srv, zones, view], stats.cache_prefetches)
        if stats.cache_served_stale:
            stale.add_metric([srv, zones, view], stats.cache_served_stale)
        yield prefetches
        yield stale

    def _forward(self, stats: Stats) -> Iterator[Metric]:
        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_proxy_request_duration_seconds",
                "Histogram of the time each request took.",
                labels=["proxy_name", "to", "rcode"],
            ),
            (((PROXY_NAME, to, rc), h) for (to, rc), h in sorted(stats.proxy_durations.items())),
        )
        failures = CounterMetricFamily(
            "coredns_proxy_healthcheck_failures_total",
            "Counter of the number of failed healthchecks.",
            labels=["proxy_name", "to"],
        )
        for to, n in sorted(stats.proxy_healthcheck_failures.items()):
            failures.add_metric([PROXY_NAME, to], n)
        yield failures
        yield CounterMetricFamily(
            "coredns_forward_healthcheck_broken_total",
            "Counter of the number of complete failures of the healthchecks.",
            value=stats.healthcheck_broken,
        )
        yield CounterMetricFamily(
            "coredns_forward_max_concurrent_rejects_total",
            "Counter of the number of queries rejected because the concurrent queries were at "
            "maximum.",
            value=stats.max_concurrent_rejects,
        )

    def _autopath(self, stats: Stats) -> Iterator[Metric]:
        success = CounterMetricFamily(
            "coredns_autopath_success_total",
            "Counter of requests that did autopath.",
            labels=["server"],
        )
        for server, n in sorted(stats.autopath_success.items()):
            success.add_metric([server], n)
        yield success

    def _kubernetes(self, stats: Stats) -> Iterator[Metric]:
        programmed = self._programming() if self._programming is not None else {}
        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_kubernetes_dns_programming_duration_seconds",
                "Histogram of the time (in seconds) it took to program a dns instance.",
                labels=["service_kind"],
            ),
            (((kind,), h) for kind, h in sorted(programmed.items())),
        )
        yield _add_histograms(
            HistogramMetricFamily(
                "kdns_dns_programming_first_query_seconds",
                "Seconds from a data change's arrival to the first DNS answer after it.",
                labels=["service_kind"],
            ),
            (((kind,), h) for kind, h in sorted(stats.programming.items())),
        )

    def _process_level(self, stats: Stats) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "coredns_panics_total",
            "A metrics that counts the number of panics.",
            value=stats.panics,
        )
        version, revision, pyversion = build_info()
        info = GaugeMetricFamily(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion "
            "from which CoreDNS was built (goversion: the Python version running kdns).",
            labels=["version", "revision", "goversion"],
        )
        info.add_metric([version, revision, pyversion], 1)
        yield info
        enabled = GaugeMetricFamily(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            labels=["server", "zone", "view", "name"],
        )
        for entry in self._plugins() if callable(self._plugins) else self._plugins:
            server, zone, name = (
                (self._server, BLOCK_ZONE, entry) if isinstance(entry, str) else entry
            )
            enabled.add_metric([server, zone, VIEW, name], 1)
        yield enabled
        yield CounterMetricFamily(
            "coredns_reload_failed_total",
            "Counter of the number of failed reload attempts.",
            value=stats.reload_failed,
        )
        yield _add_histograms(
            HistogramMetricFamily(
                "coredns_health_request_duration_seconds",
                "Histogram of the time (in seconds) each request took.",
            ),
            [((), self._health)],
        )

    def _kube_api(self, stats: Stats) -> Iterator[Metric]:
        """The Kubernetes API source's families (only exported with that source)."""
        restarts = CounterMetricFamily(
            "kdns_watch_restarts_total",
            "Watch streams of the Kubernetes source that ended and were restarted, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(stats.watch_restarts.items()):
            restarts.add_metric([kind], n)
        yield restarts
        relists = CounterMetricFamily(
            "kdns_relists_total",
            "Full lists (initial, after 410 Gone or reconnect) of the Kubernetes source, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(stats.relists.items()):
            relists.add_metric([kind], n)
        yield relists
        age = GaugeMetricFamily(
            "kdns_last_sync_age_seconds",
            "Seconds since the data of this kind was last known to be in sync with its source.",
            labels=["kind"],
        )
        now = self._clock()
        for kind, at in sorted(stats.last_sync_unix.items()):
            age.add_metric([kind], max(0.0, now - at))
        yield age
        yield GaugeMetricFamily(
            "kdns_api_up",
            "1 while every watch of the Kubernetes API is connected, else 0.",
            value=stats.api_up,
        )

    def _reload_state(self) -> Iterator[Metric]:
        if not self._reloads:
            return
        failed = GaugeMetricFamily(
            "kdns_source_reload_failed",
            "1 while the last reload attempt of this source failed (older data is served).",
            labels=["source"],
        )
        last = GaugeMetricFamily(
            "kdns_source_last_success_timestamp_seconds",
            "Unix time of the last successful load of this source.",
            labels=["source"],
        )
        for source, status in sorted(self._reloads.items()):
            failing, last_success = status()
            failed.add_metric([source], 1 if failing else 0)
            last.add_metric([source], last_success)
        yield failed
        yield last

    def _kdns(self, stats: Stats) -> Iterator[Metric]:
        indexed = GaugeMetricFamily(
            "kdns_objects_indexed",
            "Objects held in the index, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(self._objects().items()):
            indexed.add_metric([kind], n)
        yield indexed
        yield GaugeMetricFamily(
            "kdns_ready",
            "1 when /ready answers 200, else 0.",
            value=1 if self._ready() else 0,
        )
        yield CounterMetricFamily(
            "kdns_dropped_packets_total",
            "Packets dropped unanswered (responses, unparsable, over limits).",
            value=stats.dropped,
        )
        if stats.rrl:
            rrl = CounterMetricFamily(
                "kdns_rrl_responses_total",
                "UDP replies under response-rate limiting, by outcome (sent, slipped, dropped).",
                labels=["outcome"],
            )
            for outcome, n in sorted(stats.rrl.items()):
                rrl.add_metric([outcome], n)
            yield rrl


def build_registry(
    *,
    stats: Stats,
    server: str,
    objects: Callable[[], Mapping[str, int]],
    ready: Callable[[], bool],
    health: Histogram | None = None,
    plugins: PluginsEnabled = DEFAULT_PLUGINS,
    clock: Callable[[], float] = time.time,
    process: bool = True,
    peers: Callable[[], Iterable[Stats]] | None = None,
    api: bool = False,
    reloads: Mapping[str, ReloadStatus] | None = None,
    programming: Callable[[], Mapping[str, Histogram]] | None = None,
) -> CollectorRegistry:
    """Return a registry of its own (not the global one) with kdns's collector, plus the
    process (`process_*`) and platform (`python_info`) collectors when `process` is set.

    `health` is the histogram `kdns.observe.http` observes /health durations into (CoreDNS's
    coredns_health_request_duration_seconds); pass the same object to both.
    `api`: the data comes from the Kubernetes API (exports kdns_api_up and the watch,
    relist and sync-age families; without it they are left out). `reloads`: per source
    name ("manifests", "zonefile"), a callable returning (failing, last_success) read at
    each scrape. `programming`: returns the CoreDNS programming-latency histograms by
    service_kind (`lambda: index.programming`).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        KdnsCollector(
            stats,
            server=server,
            objects=objects,
            ready=ready,
            health=health,
            plugins=plugins,
            clock=clock,
            peers=peers,
            api=api,
            reloads=reloads,
            programming=programming,
        )
    )
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Return the Prometheus text exposition of `registry`."""
    return generate_latest(registry)
