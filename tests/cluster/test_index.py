"""kdns.cluster.index: the semantics of Index that compaction must keep (model.py and view.py rules:
Replace is a complete list, ready endpoints are merged over slices with each (label, address)
once, reverse owners, reverse-tree prefixes per RFC 8020, synced = every required kind listed).
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

from kdns.cluster.index import BUILT_ENDPOINTS, BULK_OBJECTS, Index, dashed_label
from kdns.cluster.model import (
    Delete,
    Endpoint,
    EndpointSlice,
    Kind,
    Namespace,
    Pod,
    Replace,
    Service,
    ServicePort,
    Upsert,
)
from kdns.dns.view import ReverseName

HTTP = (ServicePort("http", "tcp", 80),)


def svc(name: str, ip: str = "", *, ns: str = "default") -> Service:
    return Service(ns, name, cluster_ips=(ip_address(ip),) if ip else (), ports=HTTP)


def headless(name: str, *, ns: str = "default") -> Service:
    return Service(ns, name, headless=True, ports=HTTP)


def ep(address: str, *, ready: bool = True, hostname: str | None = None) -> Endpoint:
    return Endpoint((ip_address(address),), ready=ready, hostname=hostname)


def eslice(name: str, service: str, *endpoints: Endpoint, ns: str = "default") -> EndpointSlice:
    return EndpointSlice(ns, name, service=service, endpoints=endpoints, ports=HTTP)


def labels(index: Index, service: str, *, ns: str = "default") -> list[tuple[str, str]]:
    return sorted((e.label, str(e.address)) for e in index.endpoints(ns, service))


def test_replace_reuses_equal_objects_and_reports_no_change() -> None:
    index = Index()
    first = svc("web", "10.96.0.5")
    assert index.apply(Replace(Kind.SERVICE, (first,)))
    generation = index.generation
    # An equal but distinct object (a relist of an unchanged cluster): no change, and the
    # object already held is the one kept.
    assert not index.apply(Replace(Kind.SERVICE, (svc("web", "10.96.0.5"),)))
    assert index.generation == generation
    assert index.service("default", "web") is first


def test_relist_removes_objects_missing_from_it() -> None:
    index = Index()
    index.apply(Replace(Kind.SERVICE, (svc("a", "10.96.0.1"), svc("b", "10.96.0.2"))))
    index.apply(Replace(Kind.SERVICE, (svc("b", "10.96.0.2"),)))
    assert index.service("default", "a") is None
    assert index.reverse(ip_address("10.96.0.1")) == ()
    assert index.service("default", "b") is not None


def test_a_changed_object_in_a_relist_replaces_the_old_one() -> None:
    index = Index()
    index.apply(Replace(Kind.SERVICE, (svc("a", "10.96.0.1"),)))
    index.apply(Replace(Kind.SERVICE, (svc("a", "10.96.0.9"),)))
    assert index.reverse(ip_address("10.96.0.1")) == ()
    assert index.reverse(ip_address("10.96.0.9")) == (ReverseName("default", "a"),)


def test_endpoints_merge_over_slices_once_per_label_and_address() -> None:
    index = Index()
    index.apply(Upsert(headless("h")))
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.0.1"), ep("10.244.0.2", ready=False))))
    index.apply(Upsert(eslice("h-2", "h", ep("10.244.0.1"), ep("10.244.0.3", hostname="web-0"))))
    # Not-ready endpoints are left out; the duplicate 10.244.0.1 appears once; a hostname
    # is the label, else the dashed address (spec R7).
    assert labels(index, "h") == [("10-244-0-1", "10.244.0.1"), ("web-0", "10.244.0.3")]
    assert index.counts()["endpoints"] == 2


def test_an_ipv6_endpoint_label_ending_in_a_dash_gets_a_zero() -> None:
    index = Index()
    index.apply(Upsert(eslice("h-1", "h", ep("fd00::"))))
    assert labels(index, "h") == [("fd00--0", "fd00::")]


def test_reverse_follows_slice_changes() -> None:
    index = Index()
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.0.1", hostname="a"))))
    assert index.reverse(ip_address("10.244.0.1")) == (ReverseName("default", "h", "a"),)
    # The slice now holds another address: the old one has no owner any more.
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.0.2", hostname="a"))))
    assert index.reverse(ip_address("10.244.0.1")) == ()
    assert index.reverse(ip_address("10.244.0.2")) == (ReverseName("default", "h", "a"),)
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "h-1"))
    assert index.reverse(ip_address("10.244.0.2")) == ()
    assert index.endpoints("default", "h") == ()


def test_an_address_owned_by_two_services_names_both_until_one_goes() -> None:
    index = Index()
    index.apply(Upsert(eslice("b-1", "b", ep("10.244.0.7"))))
    index.apply(Upsert(eslice("a-1", "a", ep("10.244.0.7"))))
    assert index.reverse(ip_address("10.244.0.7")) == (
        ReverseName("default", "a", "10-244-0-7"),
        ReverseName("default", "b", "10-244-0-7"),
    )
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "a-1"))
    assert index.reverse(ip_address("10.244.0.7")) == (ReverseName("default", "b", "10-244-0-7"),)


def test_a_cluster_ip_names_its_service_first_and_goes_with_it() -> None:
    index = Index()
    index.apply(Upsert(svc("web", "10.96.0.5")))
    index.apply(Upsert(eslice("x-1", "x", ep("10.96.0.5"))))
    # view.py: the ClusterIP's Service first, else the endpoints' owners.
    assert index.reverse(ip_address("10.96.0.5")) == (ReverseName("default", "web"),)
    index.apply(Delete(Kind.SERVICE, "default", "web"))
    assert index.reverse(ip_address("10.96.0.5")) == (ReverseName("default", "x", "10-96-0-5"),)


def test_a_shared_cluster_ip_names_the_first_owner_by_namespace_and_name() -> None:
    index = Index()
    index.apply(Upsert(svc("zeta", "10.96.0.5")))
    index.apply(Upsert(svc("alpha", "10.96.0.5")))
    assert index.reverse(ip_address("10.96.0.5")) == (ReverseName("default", "alpha"),)
    index.apply(Delete(Kind.SERVICE, "default", "alpha"))
    assert index.reverse(ip_address("10.96.0.5")) == (ReverseName("default", "zeta"),)
    index.apply(Delete(Kind.SERVICE, "default", "zeta"))
    assert index.reverse(ip_address("10.96.0.5")) == ()
    assert not index.reverse_prefix_exists(IPv4Network("10.96.0.0/24"))


def test_reverse_prefixes_count_every_owned_address() -> None:
    index = Index()
    index.apply(Upsert(svc("a", "10.96.1.5")))
    index.apply(Upsert(svc("b", "10.96.1.6")))
    index.apply(Upsert(eslice("c-1", "c", ep("fd00::1"))))
    # RFC 8020: a name above an owned address exists (an empty non-terminal).
    for net in ("10.0.0.0/8", "10.96.0.0/16", "10.96.1.0/24", "10.96.1.5/32"):
        assert index.reverse_prefix_exists(IPv4Network(net)), net
    assert not index.reverse_prefix_exists(IPv4Network("10.96.2.0/24"))
    assert index.reverse_prefix_exists(IPv6Network("fd00::/12"))
    index.apply(Delete(Kind.SERVICE, "default", "a"))
    assert index.reverse_prefix_exists(IPv4Network("10.96.1.0/24"))  # b is still there
    index.apply(Delete(Kind.SERVICE, "default", "b"))
    assert not index.reverse_prefix_exists(IPv4Network("10.0.0.0/8"))
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "c-1"))
    assert not index.reverse_prefix_exists(IPv6Network("fd00::/12"))


def test_not_ready_endpoints_own_no_reverse_name_or_prefix() -> None:
    index = Index()
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.9.1", ready=False))))
    assert index.reverse(ip_address("10.244.9.1")) == ()
    assert not index.reverse_prefix_exists(IPv4Network("10.244.9.0/24"))


def test_counts_and_namespaces() -> None:
    index = Index()
    index.apply(Replace(Kind.NAMESPACE, (Namespace("default"), Namespace("empty"))))
    index.apply(Replace(Kind.SERVICE, (svc("a", "10.96.0.1"), svc("b", "10.96.0.2", ns="x"))))
    index.apply(Replace(Kind.ENDPOINT_SLICE, (eslice("a-1", "a", ep("10.244.0.1")),)))
    index.apply(Replace(Kind.POD, (Pod("x", "p", ips=(ip_address("10.244.0.9"),)),)))
    assert index.counts() == {
        "services": 2,
        "endpointslices": 1,
        "namespaces": 2,
        "pods": 1,
        "endpoints": 1,
    }
    assert index.namespace_exists("empty")  # a Namespace object
    assert index.namespace_exists("x")  # an object lives there
    assert not index.namespace_exists("nope")
    assert index.has_services("x")
    assert not index.has_services("empty")
    assert index.pod_exists("x", ip_address("10.244.0.9"))
    assert not index.pod_exists("default", ip_address("10.244.0.9"))
    index.apply(Delete(Kind.SERVICE, "x", "b"))
    index.apply(Delete(Kind.POD, "x", "p"))
    assert not index.namespace_exists("x")


def test_synced_once_every_required_kind_is_listed() -> None:
    index = Index()
    index.apply(Replace(Kind.SERVICE, ()))
    index.apply(Upsert(eslice("a-1", "a", ep("10.244.0.1"))))  # a watch event is no list
    assert not index.synced
    index.apply(Replace(Kind.ENDPOINT_SLICE, ()))
    assert not index.synced
    index.apply(Replace(Kind.NAMESPACE, ()))
    assert index.synced


def test_generation_and_serial_move_only_on_change() -> None:
    now = [1000.0]
    index = Index(clock=lambda: now[0])
    index.apply(Upsert(svc("a", "10.96.0.1")))
    assert (index.generation, index.serial) == (1, 1000)
    now[0] = 2000.0
    assert not index.apply(Upsert(svc("a", "10.96.0.1")))
    assert not index.apply(Delete(Kind.SERVICE, "default", "gone"))
    assert (index.generation, index.serial) == (1, 1000)
    now[0] = 500.0  # the clock stepped back: the SOA serial does not (CoreDNS)
    index.apply(Upsert(svc("a", "10.96.0.2")))
    assert (index.generation, index.serial) == (2, 1000)


def test_a_bulk_replace_keeps_every_object_answerable() -> None:
    index = Index()
    services = tuple(svc(f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}") for i in range(BULK_OBJECTS))
    assert index.apply(Replace(Kind.SERVICE, services))
    last = services[-1]
    assert index.service("default", last.name) is last
    assert index.reverse(last.cluster_ips[0]) == (ReverseName("default", last.name),)


# ---- packed endpoints: the lazily built answers equal a plain merge ----------------------


def merged(slices: list[EndpointSlice], service: str) -> list[tuple[str, str, int]]:
    """The view.py rule written out plainly: slices in name order, endpoints and addresses
    in order, ready only, each (label, address) once; label = hostname else dashed (R7)."""
    out: list[tuple[str, str, int]] = []
    for sl in sorted(slices, key=lambda s: s.name):
        if sl.service != service:
            continue
        for e in sl.endpoints:
            if not e.ready:
                continue
            for a in e.addresses:
                label = e.hostname or dashed_label(a)
                if all((label, str(a)) != (x[0], x[1]) for x in out):
                    out.append((label, str(a), sl.ports[0].port))
    return out


def built(index: Index, service: str) -> list[tuple[str, str, int]]:
    return [(e.label, str(e.address), e.ports[0].port) for e in index.endpoints("default", service)]


def test_packed_slices_give_the_endpoints_of_a_plain_merge_in_order() -> None:
    p80, p81 = (ServicePort("http", "tcp", 80),), (ServicePort("http", "tcp", 81),)
    slices = [
        # Dual stack: one slice per family, as the EndpointSlice controller makes them.
        EndpointSlice("default", "d-v6", "d", (ep("fd00::5"), ep("fd00::"), ep("fd00::6")), p81),
        EndpointSlice("default", "d-v4", "d", (ep("10.1.0.5"), ep("10.1.0.6", ready=False)), p80),
        # One slice mixing families, an endpoint with two addresses, a hostname equal to
        # the dashed label (the same label: one endpoint), duplicates within the slice.
        EndpointSlice(
            "default",
            "m-1",
            "m",
            (
                Endpoint((ip_address("10.1.0.7"), ip_address("fd00::7")), hostname="web-0"),
                ep("10.1.0.8", hostname="10-1-0-8"),
                ep("10.1.0.8"),
                ep("fd00::9", ready=False),
                ep("fd00::7", hostname="web-0"),
                ep("10.1.0.7"),
            ),
            p80,
        ),
        # A later slice repeating what an earlier one has, plus one more.
        EndpointSlice("default", "m-2", "m", (ep("10.1.0.7"), ep("10.1.0.9")), p81),
    ]
    index = Index()
    index.apply(Replace(Kind.ENDPOINT_SLICE, tuple(slices)))
    assert (
        built(index, "d")
        == merged(slices, "d")
        == [
            ("10-1-0-5", "10.1.0.5", 80),
            ("fd00--5", "fd00::5", 81),
            ("fd00--0", "fd00::", 81),
            ("fd00--6", "fd00::6", 81),
        ]
    )
    assert (
        built(index, "m")
        == merged(slices, "m")
        == [
            ("web-0", "10.1.0.7", 80),
            ("web-0", "fd00::7", 80),
            ("10-1-0-8", "10.1.0.8", 80),
            ("10-1-0-7", "10.1.0.7", 80),
            ("10-1-0-9", "10.1.0.9", 81),
        ]
    )
    assert index.counts()["endpoints"] == 9
    # Reverse (R24/N7): each label the address has in the Service, sorted.
    assert index.reverse(ip_address("10.1.0.7")) == (
        ReverseName("default", "m", "10-1-0-7"),
        ReverseName("default", "m", "web-0"),
    )
    assert index.reverse(ip_address("fd00::7")) == (ReverseName("default", "m", "web-0"),)
    assert index.reverse(ip_address("fd00::9")) == ()  # not ready
    assert index.reverse(ip_address("10.1.0.6")) == ()
    # An IPv4-mapped IPv6 address is another address than the IPv4 one.
    assert index.reverse(ip_address("::ffff:10.1.0.7")) == ()
    assert index.reverse_prefix_exists(IPv6Network("fd00::/16"))


def test_a_slice_equal_in_dns_data_is_equal_and_its_endpoints_come_back() -> None:
    endpoints = (
        Endpoint((ip_address("10.1.0.1"), ip_address("fd00::1")), hostname="a", pod_name="p"),
        ep("10.1.0.2", ready=False),
    )
    sl = EndpointSlice("default", "s", "svc", endpoints, HTTP)
    # The pod name is kept only when asked (`endpoint_pod_names`): not here.
    without_pod = Endpoint((ip_address("10.1.0.1"), ip_address("fd00::1")), hostname="a")
    assert sl == EndpointSlice("default", "s", "svc", (without_pod, endpoints[1]), HTTP)
    assert sl.endpoints == (
        Endpoint((ip_address("10.1.0.1"), ip_address("fd00::1")), hostname="a"),
        ep("10.1.0.2", ready=False),
    )
    assert sl != EndpointSlice("default", "s", "svc", (endpoints[0], ep("10.1.0.2")), HTTP)
    assert sl != EndpointSlice("default", "s", "svc", (endpoints[0], ep("10.1.0.3")), HTTP)
    v6 = EndpointSlice("default", "s", "svc", (ep("fd00::1"), ep("fd00::2")), HTTP)
    assert v6.endpoints == (ep("fd00::1"), ep("fd00::2"))
    assert EndpointSlice("default", "s", "svc").endpoints == ()


def test_endpoints_built_lazily_follow_every_change() -> None:
    index = Index()
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.0.1"))))
    assert labels(index, "h") == [("10-244-0-1", "10.244.0.1")]
    index.apply(Upsert(eslice("h-1", "h", ep("10.244.0.2", hostname="x"))))
    assert labels(index, "h") == [("x", "10.244.0.2")]
    index.apply(Upsert(eslice("h-0", "h", ep("10.244.0.2", hostname="x"), ep("10.244.0.3"))))
    assert labels(index, "h") == [("10-244-0-3", "10.244.0.3"), ("x", "10.244.0.2")]
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "h-0"))
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "h-1"))
    assert index.endpoints("default", "h") == ()


def test_endpoints_stay_right_past_the_built_cache() -> None:
    per = 100
    services = BUILT_ENDPOINTS // per + 3
    slices = tuple(
        eslice(f"s{i}-1", f"s{i}", *(ep(f"10.{i}.{j // 256}.{j % 256}") for j in range(per)))
        for i in range(services)
    )
    index = Index()
    index.apply(Replace(Kind.ENDPOINT_SLICE, slices))
    for _ in range(2):  # the second round finds the first services evicted
        for i in range(services):
            got = index.endpoints("default", f"s{i}")
            assert len(got) == per
            assert got[per - 1].address == ip_address(f"10.{i}.0.{per - 1}")


def test_reverse_buckets_grow_dense_and_shrink_back() -> None:
    # 200 addresses in one /24 (a dense bucket), shared by two Services, then removed
    # down to a few (a sparse one again): every lookup stays right.
    addresses = [f"10.244.7.{i}" for i in range(200)]
    index = Index()
    index.apply(Upsert(eslice("a-1", "a", *(ep(a) for a in addresses))))
    index.apply(Upsert(eslice("b-1", "b", *(ep(a) for a in addresses[:50]))))
    assert index.reverse(ip_address("10.244.7.10")) == (
        ReverseName("default", "a", "10-244-7-10"),
        ReverseName("default", "b", "10-244-7-10"),
    )
    assert index.reverse(ip_address("10.244.7.199")) == (
        ReverseName("default", "a", "10-244-7-199"),
    )
    assert index.reverse(ip_address("10.244.7.200")) == ()
    index.apply(Upsert(eslice("a-1", "a", *(ep(a) for a in addresses[:3]))))
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "b-1"))
    assert index.reverse(ip_address("10.244.7.2")) == (ReverseName("default", "a", "10-244-7-2"),)
    assert index.reverse(ip_address("10.244.7.10")) == ()
    assert index.reverse_prefix_exists(IPv4Network("10.244.7.0/24"))
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "a-1"))
    assert index.reverse(ip_address("10.244.7.2")) == ()
    assert not index.reverse_prefix_exists(IPv4Network("10.0.0.0/8"))


def test_slices_of_lists_every_slice_of_a_service_ready_or_not() -> None:
    index = Index()
    index.apply(Upsert(svc("web", "10.96.0.5")))
    index.apply(Upsert(eslice("web-b", "web", ep("10.1.0.2", ready=False))))
    index.apply(Upsert(eslice("web-a", "web", ep("10.1.0.1"))))
    index.apply(Upsert(eslice("other", "api", ep("10.1.0.3"))))
    assert [s.name for s in index.slices_of("default", "web")] == ["web-a", "web-b"]
    assert index.slices_of("default", "nothing") == ()
    index.apply(Delete(Kind.ENDPOINT_SLICE, "default", "web-a"))
    assert [s.name for s in index.slices_of("default", "web")] == ["web-b"]


# ---- endpoint_pod_names, autopath's pod lookup, namespace_labels' namespaces -------------


def pod_ep(address: str, pod: str | None, *, hostname: str | None = None) -> Endpoint:
    return Endpoint((ip_address(address),), hostname=hostname, pod_name=pod)


def test_kept_pod_names_name_endpoints_without_a_hostname() -> None:
    long_name = "p" * 64  # not a DNS label: the dashed address names it (CoreDNS: < 64)
    slice_ = EndpointSlice(
        "default",
        "web-1",
        service="web",
        endpoints=(
            pod_ep("10.1.0.1", "web-7d9f-abcde"),
            pod_ep("10.1.0.2", "web-7d9f-fghij", hostname="web-0"),  # the hostname wins
            pod_ep("10.1.0.3", None),
            pod_ep("10.1.0.4", long_name),
            pod_ep("10.1.0.5", "dotted.name"),
        ),
        ports=HTTP,
        pod_names=True,
    )
    assert slice_.pod_names == ("web-7d9f-abcde", None, None, None, None)
    index = Index()
    index.apply(Replace(Kind.SERVICE, (headless("web"),)))
    index.apply(Replace(Kind.ENDPOINT_SLICE, (slice_,)))
    assert labels(index, "web") == [
        ("10-1-0-3", "10.1.0.3"),
        ("10-1-0-4", "10.1.0.4"),
        ("10-1-0-5", "10.1.0.5"),
        ("web-0", "10.1.0.2"),
        ("web-7d9f-abcde", "10.1.0.1"),
    ]
    assert index.reverse(ip_address("10.1.0.1")) == (
        ReverseName("default", "web", "web-7d9f-abcde"),
    )
    # Built without pod_names, the same endpoints keep none and are named as before.
    plain = EndpointSlice("default", "web-1", "web", slice_.endpoints, HTTP)
    assert plain.pod_names is None
    assert plain != slice_  # a kept pod name is DNS data: it names the endpoint
    index.apply(Upsert(plain))
    assert ("10-1-0-1", "10.1.0.1") in labels(index, "web")


def test_pod_namespace_by_address_with_shared_addresses() -> None:
    node = ip_address("172.18.0.2")  # hostNetwork pods share their node's address
    index = Index()
    index.apply(
        Replace(
            Kind.POD,
            (
                Pod("apps", "web", ips=(ip_address("10.244.0.5"), ip_address("fd00::5"))),
                Pod("kube-system", "proxy", ips=(node,)),
                Pod("monitoring", "exporter", ips=(node,)),
            ),
        )
    )
    assert index.pod_namespace(ip_address("10.244.0.5")) == "apps"
    assert index.pod_namespace(ip_address("fd00::5")) == "apps"
    assert index.pod_namespace(ip_address("10.244.0.6")) is None
    assert index.pod_namespace(node) == "kube-system"  # one of them: the first seen
    assert index.pod_exists("monitoring", node)
    assert index.pod_exists("kube-system", node)
    index.apply(Delete(Kind.POD, "kube-system", "proxy"))
    assert index.pod_namespace(node) == "monitoring"
    assert not index.pod_exists("kube-system", node)
    index.apply(Upsert(Pod("monitoring", "exporter-2", ips=(node,))))
    index.apply(Delete(Kind.POD, "monitoring", "exporter"))
    assert index.pod_exists("monitoring", node)  # the second pod of that namespace
    index.apply(Delete(Kind.POD, "monitoring", "exporter-2"))
    index.apply(Delete(Kind.POD, "apps", "web"))
    assert index.pod_namespace(node) is None
    assert index.pod_namespace(ip_address("10.244.0.5")) is None


def test_listed_namespaces_are_the_namespace_objects_only() -> None:
    index = Index()
    index.apply(Replace(Kind.NAMESPACE, (Namespace("default"), Namespace("prod"))))
    index.apply(Replace(Kind.SERVICE, (svc("a", "10.96.0.1", ns="other"),)))
    assert sorted(index.listed_namespaces()) == ["default", "prod"]
    assert index.namespace_exists("other")  # an object lives there, but it is not listed
