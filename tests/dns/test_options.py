"""Answers under the kubernetes plugin's options that choose what is served, as CoreDNS's
README and kubernetes.go give them: `namespaces` and `namespace_labels` hide every name of
the other namespaces (services, endpoints, SRV, pods, PTR), `ignore empty_service` hides
ClusterIP Services without ready endpoints, `endpoint_pod_names` names endpoints by pod.

Expected records are zone-file lines. Each table runs against `StaticView` and a real
`Index` fed the same objects, both behind `FilteredView`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import ClusterObject, EndpointSlice, Namespace
from kdns.config.settings import PodMode
from kdns.dns.answer import AnswerConfig, answer
from kdns.dns.filtered import FilteredView
from kdns.dns.records import Question, Rcode, RType
from kdns.dns.view import ClusterView
from tests.builders import StaticView, ep, eps, pod, replace_events, svc

CONFIG = AnswerConfig(zone="cluster.local", ttl=5, pods=PodMode.VERIFIED)
SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
SOA4 = "in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
A = ".svc.cluster.local."

# `prod` and `dev` are listed Namespaces (with namespace_labels, the source lists only the
# matching ones: here `prod`); `stray` has objects but no Namespace object.
CLUSTER: list[ClusterObject] = [
    Namespace("prod"),
    Namespace("dev"),
    svc("web", "prod", ips=["10.96.1.1"], ports=["http/tcp/80"]),
    eps("web-a", "web", "prod", endpoints=[ep("10.244.1.1")], ports=["http/tcp/8080"]),
    svc("db", "prod", headless=True, ports=["pg/tcp/5432"]),
    eps("db-a", "db", "prod", endpoints=[ep("10.244.1.2", hostname="db-0")], ports=["pg/tcp/5432"]),
    svc("idle", "prod", ips=["10.96.1.3"], ports=["http/tcp/80"]),
    eps("idle-a", "idle", "prod", endpoints=[ep("10.244.1.3", ready=False)], ports=["http/tcp/80"]),
    svc("ext", "prod", external="example.org"),
    svc("hdls-empty", "prod", headless=True, ports=["http/tcp/80"]),
    svc("web", "dev", ips=["10.96.2.1"], ports=["http/tcp/80"]),
    eps("web-a", "web", "dev", endpoints=[ep("10.244.2.1")], ports=["http/tcp/8080"]),
    svc("db", "dev", headless=True, ports=["pg/tcp/5432"]),
    eps("db-a", "db", "dev", endpoints=[ep("10.244.2.2", hostname="db-0")], ports=["pg/tcp/5432"]),
    svc("web", "stray", ips=["10.96.3.1"], ports=["http/tcp/80"]),
    pod("web-1", "prod", ips=["10.244.1.1"]),
    pod("web-1", "dev", ips=["10.244.2.1"]),
]


@dataclass(frozen=True)
class Case:
    id: str
    qname: str
    qtype: str = "A"
    rcode: str = "NOERROR"
    answer: Sequence[str] = ()


def nx(id: str, qname: str, qtype: str = "A") -> Case:
    return Case(id, qname, qtype, "NXDOMAIN")


def nodata(id: str, qname: str, qtype: str = "A") -> Case:
    return Case(id, qname, qtype)


def run(view: ClusterView, case: Case) -> None:
    reply = answer(Question(case.qname, RType[case.qtype]), view, config=CONFIG)
    assert reply.rcode == Rcode[case.rcode], case.id
    assert sorted(map(str, reply.answer)) == sorted(case.answer), case.id
    if reply.rcode == Rcode.NXDOMAIN or not reply.answer:
        zone_soa = SOA4 if case.qname.endswith("in-addr.arpa.") else SOA
        assert [str(r) for r in reply.authority] == [zone_soa], case.id


def static(objects: list[ClusterObject]) -> ClusterView:
    return StaticView(objects)


def index(objects: list[ClusterObject]) -> ClusterView:
    idx = Index(clock=lambda: 1.0)
    for event in replace_events(objects):
        idx.apply(event)
    return idx


VIEWS: dict[str, Callable[[list[ClusterObject]], ClusterView]] = {
    "static": static,
    "index": index,
}


@pytest.fixture(params=sorted(VIEWS))
def make(request: pytest.FixtureRequest) -> Callable[[list[ClusterObject]], ClusterView]:
    return VIEWS[request.param]


# ---- namespaces prod --------------------------------------------------------------------

NAMESPACES = [
    Case("shown service", f"web.prod{A}", answer=[f"web.prod{A} 5 IN A 10.96.1.1"]),
    Case("shown headless", f"db.prod{A}", answer=[f"db.prod{A} 5 IN A 10.244.1.2"]),
    nx("hidden service", f"web.dev{A}"),
    nx("hidden headless", f"db.dev{A}"),
    nx("hidden endpoint", f"db-0.db.dev{A}"),
    nx("hidden SRV", f"_pg._tcp.db.dev{A}", "SRV"),
    nx("hidden protocol name", f"_tcp.db.dev{A}", "SRV"),
    nx("hidden namespace", "dev.svc.cluster.local."),
    nx("an unlisted namespace with objects", f"web.stray{A}"),
    nodata("shown namespace", "prod.svc.cluster.local."),
    nodata("svc.<zone> has shown services", "svc.cluster.local."),
    Case("shown pod", "10-244-1-1.prod.pod.cluster.local.",
         answer=["10-244-1-1.prod.pod.cluster.local. 5 IN A 10.244.1.1"]),
    nx("hidden pod", "10-244-2-1.dev.pod.cluster.local."),
    nx("hidden pod namespace", "dev.pod.cluster.local."),
    Case("shown ClusterIP PTR", "1.1.96.10.in-addr.arpa.", "PTR",
         answer=[f"1.1.96.10.in-addr.arpa. 5 IN PTR web.prod{A}"]),
    nx("hidden ClusterIP PTR", "1.2.96.10.in-addr.arpa.", "PTR"),
    nx("hidden endpoint PTR", "2.2.244.10.in-addr.arpa.", "PTR"),
    Case("shown endpoint PTR", "2.1.244.10.in-addr.arpa.", "PTR",
         answer=[f"2.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.prod{A}"]),
]  # fmt: skip


@pytest.mark.parametrize("case", NAMESPACES, ids=lambda c: c.id)
def test_namespaces_hide_every_name_of_the_others(
    case: Case, make: Callable[[list[ClusterObject]], ClusterView]
) -> None:
    run(FilteredView(make(CLUSTER), namespaces=("prod", "stray-but-empty")), case)


def test_svc_root_is_nxdomain_when_no_shown_namespace_has_services(
    make: Callable[[list[ClusterObject]], ClusterView],
) -> None:
    view = FilteredView(make(CLUSTER), namespaces=("empty",))
    run(view, nx("no services shown", "svc.cluster.local."))
    run(view, nx("shown, but nothing there", "empty.svc.cluster.local."))


# ---- namespace_labels: only listed namespaces ------------------------------------------

LISTED = [
    Case("listed", f"web.prod{A}", answer=[f"web.prod{A} 5 IN A 10.96.1.1"]),
    nx("not listed (its labels did not match)", f"web.stray{A}"),
    nx("not listed pod", "10-244-2-1.gone.pod.cluster.local."),
    nx("not listed PTR", "1.3.96.10.in-addr.arpa.", "PTR"),
    nx("not listed namespace", "stray.svc.cluster.local."),
    nodata("svc.<zone> has a listed namespace with services", "svc.cluster.local."),
]


@pytest.mark.parametrize("case", LISTED, ids=lambda c: c.id)
def test_namespace_labels_hide_namespaces_that_are_not_listed(
    case: Case, make: Callable[[list[ClusterObject]], ClusterView]
) -> None:
    run(FilteredView(make(CLUSTER), listed_only=True), case)


def test_namespace_labels_follow_the_listed_namespaces(
    make: Callable[[list[ClusterObject]], ClusterView],
) -> None:
    only_dev = [o for o in CLUSTER if not (isinstance(o, Namespace) and o.name == "prod")]
    view = FilteredView(make(only_dev), listed_only=True)
    run(view, nx("prod is no longer listed", f"web.prod{A}"))
    run(view, Case("dev is", f"web.dev{A}", answer=[f"web.dev{A} 5 IN A 10.96.2.1"]))


# ---- ignore empty_service ---------------------------------------------------------------

IGNORE_EMPTY = [
    nx("ClusterIP without ready endpoints", f"idle.prod{A}"),
    nx("its SRV", f"idle.prod{A}", "SRV"),
    nx("its port name", f"_http._tcp.idle.prod{A}", "SRV"),
    nx("its PTR (kdns: it would name an NXDOMAIN)", "3.1.96.10.in-addr.arpa.", "PTR"),
    Case("ClusterIP with a ready endpoint", f"web.prod{A}",
         answer=[f"web.prod{A} 5 IN A 10.96.1.1"]),
    Case("headless is as always", f"db.prod{A}", answer=[f"db.prod{A} 5 IN A 10.244.1.2"]),
    nx("headless without endpoints is NXDOMAIN anyway (R19)", f"hdls-empty.prod{A}"),
    Case("ExternalName is unaffected", f"ext.prod{A}", "CNAME",
         answer=[f"ext.prod{A} 5 IN CNAME example.org."]),
    nodata("the namespace still has Services", "prod.svc.cluster.local."),
]  # fmt: skip


@pytest.mark.parametrize("case", IGNORE_EMPTY, ids=lambda c: c.id)
def test_ignore_empty_service(
    case: Case, make: Callable[[list[ClusterObject]], ClusterView]
) -> None:
    run(FilteredView(make(CLUSTER), ignore_empty_service=True), case)


def test_without_options_the_filtered_view_shows_everything(
    make: Callable[[list[ClusterObject]], ClusterView],
) -> None:
    view = FilteredView(make(CLUSTER))
    run(view, Case("idle", f"idle.prod{A}", answer=[f"idle.prod{A} 5 IN A 10.96.1.3"]))
    run(view, Case("dev", f"web.dev{A}", answer=[f"web.dev{A} 5 IN A 10.96.2.1"]))
    run(view, Case("stray", f"web.stray{A}", answer=[f"web.stray{A} 5 IN A 10.96.3.1"]))


def test_the_asking_pod_is_found_in_any_namespace(
    make: Callable[[list[ClusterObject]], ClusterView],
) -> None:
    view = FilteredView(make(CLUSTER), namespaces=("prod",))
    from ipaddress import ip_address

    assert view.pod_namespace(ip_address("10.244.2.1")) == "dev"  # as CoreDNS's podWithIP


# ---- endpoint_pod_names -----------------------------------------------------------------

PODS: list[ClusterObject] = [
    Namespace("prod"),
    svc("api", "prod", headless=True, ports=["http/tcp/80"]),
    eps(
        "api-a",
        "api",
        "prod",
        endpoints=[
            ep("10.244.1.5", pod_name="api-7d9f-x2b4k"),
            ep("10.244.1.6", pod_name="api-7d9f-q8m2z", hostname="api-0"),
            ep("10.244.1.7"),
            ep("10.244.1.8", pod_name="a" * 64),
        ],
        ports=["http/tcp/8080"],
        pod_names=True,
    ),
]
P = f"api.prod{A}"

POD_NAMES = [
    Case("by pod name", f"api-7d9f-x2b4k.{P}", answer=[f"api-7d9f-x2b4k.{P} 5 IN A 10.244.1.5"]),
    Case("the hostname wins", f"api-0.{P}", answer=[f"api-0.{P} 5 IN A 10.244.1.6"]),
    nx("not by pod name when it has a hostname", f"api-7d9f-q8m2z.{P}"),
    Case("no pod: the dashed address", f"10-244-1-7.{P}",
         answer=[f"10-244-1-7.{P} 5 IN A 10.244.1.7"]),
    Case("a pod name over 63: the dashed address", f"10-244-1-8.{P}",
         answer=[f"10-244-1-8.{P} 5 IN A 10.244.1.8"]),
    nx("not by the dashed address when the pod names it", f"10-244-1-5.{P}"),
    Case("SRV targets", f"_http._tcp.{P}", "SRV", answer=[
        f"_http._tcp.{P} 5 IN SRV 0 25 8080 api-7d9f-x2b4k.{P}",
        f"_http._tcp.{P} 5 IN SRV 0 25 8080 api-0.{P}",
        f"_http._tcp.{P} 5 IN SRV 0 25 8080 10-244-1-7.{P}",
        f"_http._tcp.{P} 5 IN SRV 0 25 8080 10-244-1-8.{P}",
    ]),
    Case("PTR", "5.1.244.10.in-addr.arpa.", "PTR",
         answer=[f"5.1.244.10.in-addr.arpa. 5 IN PTR api-7d9f-x2b4k.{P}"]),
]  # fmt: skip


@pytest.mark.parametrize("case", POD_NAMES, ids=lambda c: c.id)
def test_endpoint_pod_names(case: Case, make: Callable[[list[ClusterObject]], ClusterView]) -> None:
    run(make(PODS), case)


def test_without_kept_pod_names_endpoints_keep_their_dashed_names(
    make: Callable[[list[ClusterObject]], ClusterView],
) -> None:
    plain: list[ClusterObject] = []
    for o in PODS:
        if isinstance(o, EndpointSlice):
            plain.append(
                eps("api-a", "api", "prod", endpoints=o.endpoints, ports=["http/tcp/8080"])
            )
        else:
            plain.append(o)
    view = make(plain)
    run(view, Case("dashed", f"10-244-1-5.{P}", answer=[f"10-244-1-5.{P} 5 IN A 10.244.1.5"]))
    run(view, nx("no pod name", f"api-7d9f-x2b4k.{P}"))
