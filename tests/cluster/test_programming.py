"""DNS programming latency as CoreDNS measures it (coredns_kubernetes_dns_programming_duration
_seconds): from an EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`
annotation to when the index applies the slice, labelled by the Service's kind
(`cluster_ip`, `headless_with_selector`), only for changes after the initial sync, with
CoreDNS's buckets ExponentialBuckets(0.001, 2, 20).
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import (
    Endpoint,
    EndpointSlice,
    Kind,
    Namespace,
    Replace,
    Service,
    ServicePort,
    Upsert,
)
from kdns.observe.stats import PROGRAMMING_BUCKETS
from kdns.sources.convert import endpointslice_from_api, slices_from_endpoints, trigger_time

HTTP = (ServicePort("http", "tcp", 80),)
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC).timestamp()
ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def eslice(
    name: str, service: str, address: str = "10.244.0.5", *, at: float | None = T0
) -> EndpointSlice:
    endpoint = Endpoint((ip_address(address),))
    return EndpointSlice("default", name, service, (endpoint,), HTTP, trigger_time=at)


def synced(clock: Clock, *slices: EndpointSlice) -> Index:
    """An index after its initial sync: a ClusterIP Service `web`, a headless `db`."""
    index = Index(clock=clock)
    index.apply(Replace(Kind.NAMESPACE, (Namespace("default"),)))
    index.apply(
        Replace(
            Kind.SERVICE,
            (
                Service("default", "web", cluster_ips=(ip_address("10.96.0.5"),), ports=HTTP),
                Service("default", "db", headless=True, ports=HTTP),
            ),
        )
    )
    index.apply(Replace(Kind.ENDPOINT_SLICE, slices))
    assert index.synced
    return index


def observed(index: Index) -> dict[str, tuple[int, float]]:
    """service_kind -> (observations, sum of seconds)."""
    return {kind: (h.n, h.total) for kind, h in index.programming.items()}


def test_a_slice_change_is_timed_from_its_trigger_time_to_when_it_is_applied() -> None:
    clock = Clock(T0 + 10)
    index = synced(clock)
    clock.now = T0 + 0.0015
    assert index.apply(Upsert(eslice("web-1", "web")))
    assert list(index.programming) == ["cluster_ip"]
    hist = index.programming["cluster_ip"]
    assert hist.n == 1
    assert hist.total == pytest.approx(0.0015, abs=1e-6)
    assert hist.bounds == PROGRAMMING_BUCKETS
    assert hist.bounds[:3] == (0.001, 0.002, 0.004)
    assert len(hist.bounds) == 20
    assert hist.counts[1] == 1  # in (0.001, 0.002]


def test_a_headless_services_slice_is_headless_with_selector() -> None:
    clock = Clock(T0 + 2)
    index = synced(clock)
    index.apply(Upsert(eslice("db-1", "db")))
    assert observed(index) == {"headless_with_selector": (1, 2.0)}


def test_the_initial_list_is_not_a_change_to_program() -> None:
    clock = Clock(T0 + 3600)
    index = synced(clock, eslice("web-1", "web"), eslice("db-1", "db"))
    assert index.programming == {}


def test_a_relist_times_only_the_slices_that_changed() -> None:
    clock = Clock(T0 + 60)
    index = synced(clock, eslice("web-1", "web"), eslice("db-1", "db"))
    relist = (
        eslice("web-1", "web"),  # unchanged while the watch was away
        eslice("db-1", "db", "10.244.0.9", at=T0 + 55),  # changed
        eslice("web-2", "web", "10.244.0.7", at=T0 + 50),  # new
    )
    assert index.apply(Replace(Kind.ENDPOINT_SLICE, relist))
    assert observed(index) == {"headless_with_selector": (1, 5.0), "cluster_ip": (1, 10.0)}


def test_what_is_not_timed() -> None:
    clock = Clock(T0 + 1)
    index = synced(clock, eslice("web-1", "web"))
    # No annotation (a slice written by hand).
    index.apply(Upsert(eslice("web-2", "web", "10.244.0.2", at=None)))
    # A Service kdns does not know (CoreDNS skips these too).
    index.apply(Upsert(eslice("gone-1", "gone", "10.244.0.3")))
    # A slice belonging to no Service.
    index.apply(Upsert(EndpointSlice("default", "x", None, (), HTTP, trigger_time=T0)))
    # An update that changes nothing DNS serves: nothing was programmed.
    assert not index.apply(Upsert(eslice("web-1", "web", at=T0 + 0.5)))
    assert index.programming == {}


def test_a_node_clock_behind_the_api_servers_counts_as_zero() -> None:
    clock = Clock(T0 - 5)
    index = synced(clock)
    index.apply(Upsert(eslice("web-1", "web")))
    assert observed(index) == {"cluster_ip": (1, 0.0)}


def test_the_first_query_measure_still_gets_its_pending_changes() -> None:
    """kdns's own measure (change arrival to first answer) is fed as before."""
    index = synced(Clock(T0))
    index.take_pending()
    index.apply(Upsert(eslice("web-1", "web")), received_at=5.0)
    pending = index.take_pending()
    assert [(c.received_at, c.service_kind) for c in pending] == [(5.0, "cluster_ip")]


# ---- the annotation, converted ----------------------------------------------------------


def api_slice(annotation: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "web-abc",
        "namespace": "default",
        "labels": {"kubernetes.io/service-name": "web"},
    }
    if annotation is not None:
        metadata["annotations"] = {ANNOTATION: annotation}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
    }


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2024-05-01T10:00:00Z", T0),
        ("2024-05-01T10:00:00.5Z", T0 + 0.5),
        ("2024-05-01T10:00:00.123456789Z", T0 + 0.123456),  # RFC3339Nano, to microseconds
        ("2024-05-01T12:00:00+02:00", T0),
        ("2024-05-01t10:00:00z", T0),  # RFC 3339 §5.6 allows lower case
        ("2024-05-01T10:00:00", None),  # no offset: not RFC 3339
        ("yesterday", None),
        (12345, None),
        (None, None),
    ],
)
def test_the_trigger_time_annotation_is_parsed_as_rfc_3339(text: Any, want: float | None) -> None:
    converted = endpointslice_from_api(api_slice(text))
    assert converted is not None
    if want is None:
        assert converted.trigger_time is None
    else:
        assert converted.trigger_time == pytest.approx(want, abs=1e-6)
    # Served all the same, and equal to the slice without the annotation (not DNS data).
    plain = endpointslice_from_api(api_slice(None))
    assert converted == plain


def test_legacy_endpoints_carry_the_annotation_too() -> None:
    obj = {
        "kind": "Endpoints",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {ANNOTATION: "2024-05-01T10:00:00Z"},
        },
        "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}],
    }
    assert [s.trigger_time for s in slices_from_endpoints(obj)] == [T0]
    assert trigger_time({"metadata": {"annotations": None}}) is None
