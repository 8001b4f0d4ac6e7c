"""Stats folded into CoreDNS's metric names and labels (plugin/metrics, cache, forward,
kubernetes, health), scraped as Prometheus text and read back with prometheus_client's own
parser; and only what is true of the running sources is exported."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kdns.config.settings import HostPort
from kdns.observe.metrics import build_registry, render, server_label
from kdns.observe.stats import PROGRAMMING_BUCKETS, SIZE_BUCKETS, Histogram, Stats
from kdns.serve.fastpath import EntryMeta
from kdns.zones.zonefile import ZoneSet

SERVER = "dns://:53"
ZONE = "cluster.local."

# Every family CoreDNS dashboards and alerts read, plus kdns's own, whatever the source.
REQUIRED_FAMILIES = {
    "coredns_dns_requests": "counter",
    "coredns_dns_responses": "counter",
    "coredns_dns_request_duration_seconds": "histogram",
    "coredns_dns_request_size_bytes": "histogram",
    "coredns_dns_response_size_bytes": "histogram",
    "coredns_dns_do_requests": "counter",
    "coredns_cache_entries": "gauge",
    "coredns_cache_hits": "counter",
    "coredns_cache_misses": "counter",
    "coredns_cache_requests": "counter",
    "coredns_cache_evictions": "counter",
    "coredns_cache_prefetch": "counter",
    "coredns_cache_served_stale": "counter",
    "coredns_kubernetes_dns_programming_duration_seconds": "histogram",
    "coredns_proxy_request_duration_seconds": "histogram",
    "coredns_proxy_healthcheck_failures": "counter",
    "coredns_forward_max_concurrent_rejects": "counter",
    "coredns_forward_healthcheck_broken": "counter",
    "coredns_panics": "counter",
    "coredns_build_info": "gauge",
    "coredns_plugin_enabled": "gauge",
    "coredns_health_request_duration_seconds": "histogram",
    "kdns_dns_programming_first_query_seconds": "histogram",
    "kdns_objects_indexed": "gauge",
    "kdns_ready": "gauge",
    "kdns_dropped_packets": "counter",
}
# Only with the Kubernetes API source.
API_FAMILIES = {
    "kdns_watch_restarts": "counter",
    "kdns_relists": "counter",
    "kdns_last_sync_age_seconds": "gauge",
    "kdns_api_up": "gauge",
}
# Only for the sources given a reload-status callable.
RELOAD_FAMILIES = {
    "kdns_source_reload_failed": "gauge",
    "kdns_source_last_success_timestamp_seconds": "gauge",
}


def scrape(
    stats: Stats,
    *,
    objects: Callable[[], Mapping[str, int]] = dict,
    ready: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = lambda: 1000.0,
    **options: Any,
) -> tuple[dict[str, str], list[Sample]]:
    """Scrape a fresh registry; return family name -> type, and every sample."""
    registry = build_registry(
        stats=stats, server=SERVER, objects=objects, ready=ready, clock=clock, **options
    )
    text = render(registry).decode()
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend(family.samples)
    return types, samples


def value(samples: list[Sample], name: str, /, **labels: str) -> float:
    """The one sample called `name` whose labels are exactly `labels`."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


def buckets(samples: list[Sample], name: str, /, **labels: str) -> dict[float, float]:
    """le -> cumulative count for one histogram series."""
    out: dict[float, float] = {}
    for s in samples:
        if (
            s.name == f"{name}_bucket"
            and {k: v for k, v in s.labels.items() if k != "le"} == labels
        ):
            out[float(s.labels["le"])] = s.value
    return out


def test_every_dashboard_family_is_exposed_with_its_type_even_when_idle() -> None:
    types, _ = scrape(Stats(), api=True)
    wanted = {**REQUIRED_FAMILIES, **API_FAMILIES}
    missing = {n: t for n, t in wanted.items() if types.get(n) != t}
    assert missing == {}


def test_without_the_api_source_no_api_family_is_exported() -> None:
    """Manifests mode: no `kdns_api_up 0` (nothing is down), no watch or relist counts."""
    stats = Stats()
    stats.api_up = 0
    types, samples = scrape(stats)
    missing = {n: t for n, t in REQUIRED_FAMILIES.items() if types.get(n) != t}
    assert missing == {}
    assert set(API_FAMILIES) & set(types) == set()
    assert not [s for s in samples if s.name.startswith(tuple(API_FAMILIES))]
    assert set(RELOAD_FAMILIES) & set(types) == set()  # no source said it reloads


def test_process_metrics_are_exposed() -> None:
    types, samples = scrape(Stats())
    assert "process_cpu_seconds" in types
    assert any(s.name == "process_resident_memory_bytes" and s.value > 0 for s in samples)


def test_request_and_response_counters_carry_coredns_labels() -> None:
    stats = Stats()
    for _ in range(3):
        stats.count_request(ZONE, "udp", "1", "A", 40)
    stats.count_request(ZONE, "tcp", "2", "SRV", 50)
    stats.count_response(ZONE, "udp", "NOERROR", 90, 0.001)
    stats.count_response(ZONE, "udp", "NOERROR", 90, 0.001)
    stats.count_response(ZONE, "tcp", "NXDOMAIN", 120, 0.001)
    stats.count_do_request(ZONE)
    stats.count_do_request(ZONE)

    _, samples = scrape(stats)

    base = {"server": SERVER, "zone": ZONE, "view": ""}
    assert (
        value(samples, "coredns_dns_requests_total", **base, proto="udp", family="1", type="A") == 3
    )
    assert (
        value(samples, "coredns_dns_requests_total", **base, proto="tcp", family="2", type="SRV")
        == 1
    )
    assert value(samples, "coredns_dns_responses_total", **base, rcode="NOERROR", plugin="") == 2
    assert value(samples, "coredns_dns_responses_total", **base, rcode="NXDOMAIN", plugin="") == 1
    assert value(samples, "coredns_dns_do_requests_total", **base) == 2


def test_duration_histogram_is_cumulative_over_coredns_buckets() -> None:
    stats = Stats()
    # 0.0001 <= 0.00025 (first bucket); 0.0003 in (0.00025, 0.0005]; 10 s beyond 8.192 s.
    for seconds in (0.0001, 0.0003, 10.0):
        stats.count_response(ZONE, "udp", "NOERROR", 100, seconds)

    _, samples = scrape(stats)

    series = {"server": SERVER, "zone": ZONE, "view": ""}
    got = buckets(samples, "coredns_dns_request_duration_seconds", **series)
    # CoreDNS TimeBuckets: ExponentialBuckets(0.00025, 2, 16) = 0.25 ms .. 8.192 s, then +Inf.
    assert sorted(got) == sorted([*(0.00025 * 2**i for i in range(16)), math.inf])
    assert got[0.00025] == 1
    assert got[0.0005] == 2
    assert got[8.192] == 2
    assert got[math.inf] == 3
    assert value(samples, "coredns_dns_request_duration_seconds_count", **series) == 3
    assert value(samples, "coredns_dns_request_duration_seconds_sum", **series) == pytest.approx(
        10.0004
    )


def test_size_histograms_are_split_by_proto() -> None:
    stats = Stats()
    stats.count_request(ZONE, "udp", "1", "A", 40)
    stats.count_request(ZONE, "tcp", "1", "A", 700)
    stats.count_response(ZONE, "udp", "NOERROR", 550, 0.001)

    _, samples = scrape(stats)

    udp = {"server": SERVER, "zone": ZONE, "view": "", "proto": "udp"}
    tcp = {**udp, "proto": "tcp"}
    req_udp = buckets(samples, "coredns_dns_request_size_bytes", **udp)
    req_tcp = buckets(samples, "coredns_dns_request_size_bytes", **tcp)
    assert sorted(req_udp) == sorted([*map(float, SIZE_BUCKETS), math.inf])
    assert (req_udp[0], req_udp[100], req_udp[math.inf]) == (0, 1, 1)
    assert (req_tcp[511], req_tcp[1023]) == (0, 1)
    resp = buckets(samples, "coredns_dns_response_size_bytes", **udp)
    assert (resp[511], resp[1023]) == (0, 1)
    assert value(samples, "coredns_dns_response_size_bytes_sum", **udp) == 550


def test_fast_path_hits_count_as_udp_requests_and_responses() -> None:
    stats = Stats()
    meta = EntryMeta(ZONE, "AAAA", "NOERROR", request_size=40, response_size=550, negative=False)
    stats.count_cached(meta, "2", 5, 0.0003)  # 0.0003 s in (0.00025, 0.0005]
    stats.count_request(ZONE, "udp", "2", "AAAA", 40)  # one more through the slow path

    _, samples = scrape(stats)

    base = {"server": SERVER, "zone": ZONE, "view": ""}
    requests = "coredns_dns_requests_total"
    assert value(samples, requests, **base, proto="udp", family="2", type="AAAA") == 6
    assert value(samples, "coredns_dns_responses_total", **base, rcode="NOERROR", plugin="") == 5
    took = buckets(samples, "coredns_dns_request_duration_seconds", **base)
    assert (took[0.00025], took[0.0005], took[math.inf]) == (0, 5, 5)
    sizes = buckets(samples, "coredns_dns_response_size_bytes", **base, proto="udp")
    assert (sizes[511], sizes[1023]) == (0, 5)
    assert value(samples, "coredns_dns_request_size_bytes_count", **base, proto="udp") == 6


def test_cache_counters_and_requests_equal_hits_plus_misses() -> None:
    stats = Stats()
    for kind in ("success", "success", "success", "denial"):
        stats.count_cache_hit(kind)
    stats.count_cache_miss()
    stats.count_cache_miss()
    stats.set_cache_entries("success", 7)
    stats.set_cache_entries("denial", 4)
    for _ in range(5):
        stats.count_cache_eviction("success")
    stats.count_cache_hit("success", times=2)  # hits the fast path answered
    stats.count_cache_prefetch()
    stats.count_cache_served_stale()
    stats.count_cache_served_stale()

    _, samples = scrape(stats)

    where = {"server": SERVER, "zones": ".", "view": ""}
    assert value(samples, "coredns_cache_hits_total", **where, type="success") == 5
    assert value(samples, "coredns_cache_hits_total", **where, type="denial") == 1
    assert value(samples, "coredns_cache_misses_total", **where) == 2
    assert value(samples, "coredns_cache_prefetch_total", **where) == 1
    assert value(samples, "coredns_cache_served_stale_total", **where) == 2
    assert value(samples, "coredns_cache_requests_total", **where) == 8
    assert value(samples, "coredns_cache_entries", **where, type="success") == 7
    assert value(samples, "coredns_cache_entries", **where, type="denial") == 4
    assert value(samples, "coredns_cache_evictions_total", **where, type="success") == 5


def test_forward_and_programming_metrics() -> None:
    stats = Stats()
    for _ in range(4):
        stats.count_max_concurrent_reject()
    stats.count_healthcheck_broken()
    stats.count_healthcheck_failure("127.0.0.1:5300")
    stats.count_healthcheck_failure("127.0.0.1:5300")
    # CoreDNS's measure (trigger time to applied) comes from the index's histograms ...
    applied = Histogram(PROGRAMMING_BUCKETS)
    applied.observe(0.0015)  # in (0.001, 0.002]
    # ... kdns's own (arrival to first answer) from the stats the handler feeds.
    stats.observe_programming("headless_with_selector", 0.003)
    stats.observe_proxy("127.0.0.1:5300", "NOERROR", 0.003)

    _, samples = scrape(stats, programming=lambda: {"cluster_ip": applied})

    assert value(samples, "coredns_forward_max_concurrent_rejects_total") == 4
    assert value(samples, "coredns_forward_healthcheck_broken_total") == 1
    assert (
        value(
            samples,
            "coredns_proxy_healthcheck_failures_total",
            proxy_name="forward",
            to="127.0.0.1:5300",
        )
        == 2
    )
    prog = buckets(
        samples, "coredns_kubernetes_dns_programming_duration_seconds", service_kind="cluster_ip"
    )
    # CoreDNS: ExponentialBuckets(0.001, 2, 20).
    assert sorted(prog) == sorted([*PROGRAMMING_BUCKETS, math.inf])
    assert (prog[0.001], prog[0.002], prog[math.inf]) == (0, 1, 1)
    # The first-query measure is not mixed into CoreDNS's name.
    assert not buckets(
        samples,
        "coredns_kubernetes_dns_programming_duration_seconds",
        service_kind="headless_with_selector",
    )
    first = buckets(
        samples, "kdns_dns_programming_first_query_seconds", service_kind="headless_with_selector"
    )
    assert (first[0.002], first[0.004], first[math.inf]) == (0, 1, 1)
    fwd = buckets(
        samples,
        "coredns_proxy_request_duration_seconds",
        proxy_name="forward",
        to="127.0.0.1:5300",
        rcode="NOERROR",
    )
    assert (fwd[0.002], fwd[0.004]) == (0, 1)


def test_kdns_own_metrics() -> None:
    stats = Stats()
    stats.count_watch_restart("Service")
    stats.count_watch_restart("Service")
    for kind in ("Service", "EndpointSlice", "EndpointSlice", "EndpointSlice"):
        stats.count_relist(kind)
    stats.mark_synced("Service", 980.0)
    stats.mark_synced("Service", 990.0)  # the latest sync counts
    stats.set_api_up(True)
    stats.dropped = 9

    _, samples = scrape(
        stats, objects=lambda: {"Service": 12, "Pod": 40}, clock=lambda: 1000.0, api=True
    )

    assert value(samples, "kdns_watch_restarts_total", kind="Service") == 2
    assert value(samples, "kdns_relists_total", kind="EndpointSlice") == 3
    assert value(samples, "kdns_last_sync_age_seconds", kind="Service") == 10
    assert value(samples, "kdns_api_up") == 1
    assert value(samples, "kdns_objects_indexed", kind="Service") == 12
    assert value(samples, "kdns_objects_indexed", kind="Pod") == 40
    assert value(samples, "kdns_dropped_packets_total") == 9


def test_ready_gauge_follows_the_callable_at_each_scrape() -> None:
    stats = Stats()
    state = {"ready": False}
    registry = build_registry(
        stats=stats, server=SERVER, objects=dict, ready=lambda: state["ready"], process=False
    )

    def ready_value() -> float:
        text = render(registry).decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "kdns_ready":
                    return s.value
        raise AssertionError("kdns_ready missing")

    assert ready_value() == 0
    state["ready"] = True
    assert ready_value() == 1


def test_flushers_run_before_each_scrape() -> None:
    stats = Stats()
    pending = {"n": 5}

    def flush() -> None:  # a fast path folding its private count in, as stats.py describes
        stats.panics += pending["n"]
        pending["n"] = 0

    stats.flushers.append(flush)
    _, samples = scrape(stats)
    assert value(samples, "coredns_panics_total") == 5


def test_build_info_and_plugin_enabled() -> None:
    _, samples = scrape(Stats())
    info = [s for s in samples if s.name == "coredns_build_info"]
    assert len(info) == 1
    assert info[0].value == 1
    assert info[0].labels["goversion"].startswith("python3.")
    assert set(info[0].labels) == {"version", "revision", "goversion"}
    enabled = {s.labels["name"] for s in samples if s.name == "coredns_plugin_enabled"}
    assert {"kubernetes", "forward", "cache", "health", "ready", "prometheus"} <= enabled
    assert (
        value(
            samples, "coredns_plugin_enabled", server=SERVER, zone=".", view="", name="kubernetes"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("addr", "label"),
    [
        (HostPort("", 53), "dns://:53"),
        (HostPort("127.0.0.1", 1053), "dns://127.0.0.1:1053"),
        (HostPort("::1", 53), "dns://[::1]:53"),
    ],
)
def test_server_label_is_coredns_style(addr: HostPort, label: str) -> None:
    assert server_label(addr) == label


def test_health_histogram_is_the_one_passed_in() -> None:
    health = Histogram((0.00025, 0.0025, 0.025, 0.25, 2.5))
    health.observe(0.001)
    registry = build_registry(
        stats=Stats(), server=SERVER, objects=dict, ready=lambda: True, health=health
    )
    samples = [
        s for f in text_string_to_metric_families(render(registry).decode()) for s in f.samples
    ]
    got = buckets(samples, "coredns_health_request_duration_seconds")
    # CoreDNS SlimTimeBuckets: ExponentialBuckets(0.00025, 10, 5).
    assert sorted(got) == [0.00025, 0.0025, 0.025, 0.25, 2.5, math.inf]
    assert (got[0.00025], got[0.0025], got[math.inf]) == (0, 1, 1)


def test_worker_snapshots_add_up_and_gauges_take_the_laggard() -> None:
    from kdns.observe.stats import Histogram, Stats, combined, snapshot

    a, b = Stats(), Stats()
    for s, n in ((a, 3), (b, 4)):
        for _ in range(n):
            s.count_request("cluster.local.", "udp", "1", "A", 40)
            s.count_response("cluster.local.", "udp", "NOERROR", 80, 0.0001)
    a.api_up, b.api_up = 1, 0
    a.last_sync_unix["Service"], b.last_sync_unix["Service"] = 200.0, 100.0
    b.programming["cluster_ip"] = Histogram((0.001, 0.002), [1, 0, 0], 0.0005, 1)
    total = combined(a, [snapshot(b)])
    assert total.requests[("cluster.local.", "udp", "1", "A")] == 7
    assert total.responses[("cluster.local.", "NOERROR")] == 7
    assert total.durations["cluster.local."].n == 7
    assert total.api_up == 0  # one worker's watch is down: the API is not fully up
    assert total.last_sync_unix["Service"] == 100.0  # the oldest sync shows
    assert total.programming["cluster_ip"].counts == [1, 0, 0]
    assert a.requests[("cluster.local.", "udp", "1", "A")] == 3  # inputs untouched


def test_reload_state_of_each_source_is_read_at_each_scrape() -> None:
    state = {"manifests": (False, 1700.0)}
    registry = build_registry(
        stats=Stats(),
        server=SERVER,
        objects=dict,
        ready=lambda: True,
        process=False,
        reloads={"manifests": lambda: state["manifests"], "zonefile": lambda: (True, 1600.5)},
    )

    def samples() -> list[Sample]:
        text = render(registry).decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples]

    got = samples()
    assert value(got, "kdns_source_reload_failed", source="manifests") == 0
    assert value(got, "kdns_source_reload_failed", source="zonefile") == 1
    assert value(got, "kdns_source_last_success_timestamp_seconds", source="manifests") == 1700
    assert value(got, "kdns_source_last_success_timestamp_seconds", source="zonefile") == 1600.5
    state["manifests"] = (True, 1700.0)  # a broken edit: the old data stays, and it shows
    assert value(samples(), "kdns_source_reload_failed", source="manifests") == 1


def test_a_zone_set_reports_a_stuck_reload(tmp_path: Path) -> None:
    path = tmp_path / "r.zone"
    path.write_text("$ORIGIN r.test.\n$TTL 30\n@ SOA ns hm 1 2 3 4 5\nwww A 192.0.2.1\n")
    zones = ZoneSet((path,), clock=lambda: 1234.0)

    def failed() -> float:
        _, got = scrape(Stats(), reloads={"zonefile": zones.status})
        assert value(got, "kdns_source_last_success_timestamp_seconds", source="zonefile") == 1234
        return value(got, "kdns_source_reload_failed", source="zonefile")

    assert failed() == 0
    stat = path.stat()
    path.write_text("garbage\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    zones.reload_if_changed()
    assert failed() == 1


def test_autopath_successes_per_server_add_up_over_workers() -> None:
    from kdns.observe.stats import combined, snapshot

    a, b = Stats(), Stats()
    a.count_autopath_success(SERVER)
    b.count_autopath_success(SERVER)
    b.count_autopath_success("dns://:1053")
    types, samples = scrape(combined(a, [snapshot(b)]))
    assert types["coredns_autopath_success"] == "counter"
    assert value(samples, "coredns_autopath_success_total", server=SERVER) == 2
    assert value(samples, "coredns_autopath_success_total", server="dns://:1053") == 1
