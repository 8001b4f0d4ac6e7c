"""`kdns explain` from small clusters: the reply is the real one, and the reasons are the
spec's (docs/rules.md): readiness is conditions.ready (R6), a headless Service answers its
ready endpoints only (R17, R18) and does not exist without one (R19), a ClusterIP Service
answers its ClusterIP whatever its endpoints (R8), a name that exists without the type is
NODATA and one that does not is NXDOMAIN (D1), ExternalName is a CNAME (R26, R27), names
outside the zones are forwarded (D6)."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import Endpoint, Kind, Namespace, Pod
from kdns.config.flags import config_from_settings
from kdns.config.settings import HostPort, PodMode, Settings
from kdns.dns.records import RType
from kdns.explain.model import Explanation
from kdns.explain.render import render
from kdns.explain.run import Explainer, ExplainError, parse_type, question_for
from tests.builders import eps, replace_events, svc
from tests.fakes.upstream import FakeUpstream

ZONE = "cluster.local."


def endpoint(
    address: str, *, ready: bool = True, terminating: bool = False, hostname: str | None = None
) -> Endpoint:
    return Endpoint((ip_address(address),), ready=ready, hostname=hostname, terminating=terminating)


def cluster(*extra: Any, synced: bool = True) -> Index:
    objects: list[Any] = [
        Namespace("shop"),
        Namespace("prod"),
        svc("web", "shop", headless=True, ports=["http/tcp/80"]),
        eps(
            "web-v4",
            "web",
            "shop",
            endpoints=[
                endpoint("10.244.1.10", hostname="web-0"),
                endpoint("10.244.1.11", ready=False, hostname="web-1"),
                endpoint("10.244.1.12", ready=False, terminating=True, hostname="web-2"),
            ],
            ports=["http/tcp/8080"],
        ),
        eps(
            "web-v6",
            "web",
            "shop",
            endpoints=[endpoint("fd00::10", hostname="web-0")],
            ports=["http/tcp/8080"],
        ),
        svc("queue", "shop", headless=True, ports=["amqp/tcp/5672"]),
        eps("queue-1", "queue", "shop", endpoints=[endpoint("10.244.2.20", ready=False)]),
        svc("payments", "shop", ips=["10.96.5.5"], ports=["https/tcp/443"]),
        eps("payments-1", "payments", "shop", endpoints=[endpoint("10.244.3.30", ready=False)]),
        svc("api", "prod", ips=["10.96.6.6"], ports=["http/tcp/80"]),
        svc("db", "shop", external="db.example.com"),
        Pod("shop", "web-0", (ip_address("10.244.1.10"),)),
        *extra,
    ]
    index = Index()
    events = replace_events(objects)
    if not synced:
        events = [e for e in events if e.kind is not Kind.SERVICE]
    for event in events:
        index.apply(event)
    return index


def config(**kw: Any) -> Any:
    kw.setdefault("upstreams", ())
    return config_from_settings(Settings(**kw))


async def explain(
    name: str,
    qtype: str | None = None,
    *,
    index: Index | None = None,
    send: bool = False,
    **kw: Any,
) -> Explanation:
    explainer = Explainer.offline(config(**kw), index or cluster(), send=send)
    try:
        qname, number = question_for(name, qtype)
        return await explainer.explain(qname, number)
    finally:
        await explainer.close()


def codes(exp: Explanation) -> list[str]:
    return [r.code for r in exp.reasons]


def excluded(exp: Explanation) -> dict[str, str]:
    return {e.address: e.reason.code for e in exp.endpoints if e.status == "excluded" and e.reason}


def statuses(exp: Explanation) -> dict[str, str]:
    return {e.address: e.status for e in exp.endpoints}


# ---- endpoints left out ------------------------------------------------------------------


async def test_headless_answers_ready_endpoints_and_says_why_the_others_are_left_out() -> None:
    exp = await explain("web.shop.svc.cluster.local")
    assert exp.answer.rcode == "NOERROR"
    assert exp.answer.answer == ("web.shop.svc.cluster.local. 5 IN A 10.244.1.10",)
    assert exp.route.plugin == "kubernetes"
    assert exp.route.zone == ZONE
    assert codes(exp) == ["headless"]
    assert statuses(exp)["10.244.1.10"] == "answered"
    assert excluded(exp) == {
        "10.244.1.11": "not-ready",  # conditions.ready false (R6)
        "10.244.1.12": "terminating",
        "fd00::10": "other-family",  # A answers IPv4 only (R17)
    }
    assert exp.service is not None
    assert (exp.service.namespace, exp.service.name, exp.service.type) == (
        "shop",
        "web",
        "headless",
    )
    assert [(s.name, s.endpoints, s.ready) for s in exp.slices] == [
        ("web-v4", 3, 1),
        ("web-v6", 1, 1),
    ]
    assert [p.name for p in exp.pods] == ["web-0"]
    assert next(e.pod for e in exp.endpoints if e.address == "10.244.1.10") == "web-0"


async def test_aaaa_of_the_same_service_turns_the_families_around() -> None:
    exp = await explain("web.shop.svc.cluster.local", "AAAA")
    assert exp.answer.answer == ("web.shop.svc.cluster.local. 5 IN AAAA fd00::10",)
    assert excluded(exp)["10.244.1.10"] == "other-family"
    assert statuses(exp)["fd00::10"] == "answered"


async def test_headless_without_a_ready_endpoint_does_not_exist() -> None:
    exp = await explain("queue.shop.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"  # R19
    assert codes(exp) == ["headless-no-ready-endpoints"]
    assert exp.reasons[0].rule == "R19"
    assert "its one endpoint is not ready" in exp.reasons[0].message
    assert excluded(exp) == {"10.244.2.20": "not-ready"}


async def test_headless_with_ipv6_only_ready_is_nodata_for_a() -> None:
    index = cluster(
        svc("v6", "shop", headless=True),
        eps(
            "v6-1",
            "v6",
            "shop",
            endpoints=[endpoint("fd00::20"), endpoint("10.244.9.9", ready=False)],
        ),
    )
    exp = await explain("v6.shop.svc.cluster.local", index=index)
    assert exp.answer.rcode == "NOERROR"
    assert exp.answer.answer == ()  # NODATA: the name exists (R19, D1)
    assert codes(exp) == ["nodata"]
    assert excluded(exp) == {"fd00::20": "other-family", "10.244.9.9": "not-ready"}


async def test_clusterip_resolves_whatever_its_endpoints_but_says_none_is_ready() -> None:
    exp = await explain("payments.shop.svc.cluster.local")
    assert exp.answer.answer == ("payments.shop.svc.cluster.local. 5 IN A 10.96.5.5",)  # R8
    assert codes(exp) == ["clusterip", "no-ready-endpoints"]
    assert excluded(exp) == {"10.244.3.30": "not-ready"}


async def test_clusterip_without_an_ipv6_address_is_nodata_for_aaaa() -> None:
    exp = await explain("payments.shop.svc.cluster.local", "AAAA")
    assert (exp.answer.rcode, exp.answer.answer) == ("NOERROR", ())  # R9, D1
    assert codes(exp)[0] == "nodata"


async def test_a_not_ready_endpoint_name_is_explained() -> None:
    exp = await explain("web-1.web.shop.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"  # R20 names ready endpoints only
    assert codes(exp) == ["no-endpoint-label"]
    assert "web-1 exists but is not ready" in exp.reasons[0].message
    assert excluded(exp)["10.244.1.11"] == "not-ready"
    assert excluded(exp)["10.244.1.10"] == "other-label"
    assert [s.name for s in exp.suggestions] == ["web-0.web.shop.svc.cluster.local."]


async def test_headless_srv_lists_ready_endpoints_only() -> None:
    exp = await explain("_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert exp.answer.answer == (
        "_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 0 100 8080 "
        "web-0.web.shop.svc.cluster.local.",
    )  # R22 with Conflict 2: the endpoint's port
    assert statuses(exp) == {
        "10.244.1.10": "answered",
        "10.244.1.11": "excluded",
        "10.244.1.12": "excluded",
        "fd00::10": "answered",
    }


async def test_a_misspelt_port_name_is_nxdomain_with_the_port_suggested() -> None:
    exp = await explain("_htpt._tcp.web.shop.svc.cluster.local", "SRV")
    assert exp.answer.rcode == "NXDOMAIN"
    assert codes(exp) == ["no-port"]
    assert [s.name for s in exp.suggestions] == ["_http._tcp.web.shop.svc.cluster.local."]
    assert statuses(exp)["10.244.1.10"] == "ready"  # not left out: the name decided


async def test_ptr_of_a_not_ready_address_says_so() -> None:
    exp = await explain("10.244.1.11")
    assert exp.name == "11.1.244.10.in-addr.arpa."
    assert exp.type == "PTR"
    assert exp.answer.rcode == "NXDOMAIN"  # R24: ready endpoints only
    assert "not-ready" in codes(exp)
    ready = await explain("10.244.1.10")
    assert ready.answer.answer == (
        "10.1.244.10.in-addr.arpa. 5 IN PTR web-0.web.shop.svc.cluster.local.",
    )


# ---- names that do not exist ---------------------------------------------------------------


async def test_a_service_in_the_wrong_namespace_is_pointed_at() -> None:
    exp = await explain("api.shop.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"
    assert codes(exp) == ["no-service"]
    assert [s.name for s in exp.suggestions] == ["api.prod.svc.cluster.local."]
    assert "namespace prod" in exp.suggestions[0].why


@pytest.mark.parametrize(
    "asked",
    [
        "paymants",  # one letter wrong
        "paymnets",  # two neighbours swapped
        "paymets",  # one letter missing
        "paymentts",  # one letter extra
    ],
)
async def test_a_misspelt_service_gets_the_real_one(asked: str) -> None:
    exp = await explain(f"{asked}.shop.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"
    assert [s.name for s in exp.suggestions] == ["payments.shop.svc.cluster.local."]


async def test_two_typos_are_too_far() -> None:
    exp = await explain("pyamnets.shop.svc.cluster.local")
    assert exp.suggestions == []


async def test_a_misspelt_namespace() -> None:
    exp = await explain("payments.sohp.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"
    assert codes(exp) == ["no-namespace"]
    assert "shop one typo away" in exp.reasons[0].message
    assert [s.name for s in exp.suggestions] == ["payments.shop.svc.cluster.local."]


async def test_a_search_list_expansion_points_at_the_service() -> None:
    # E7: the resolver tries web.shop.shop.svc... first; NXDOMAIN is right, and explain
    # names what the short name meant.
    exp = await explain("web.shop.shop.svc.cluster.local")
    assert exp.answer.rcode == "NXDOMAIN"
    assert "web.shop.svc.cluster.local." in [s.name for s in exp.suggestions]


async def test_before_the_first_sync_misses_are_servfail() -> None:
    exp = await explain("web.shop.svc.cluster.local", index=cluster(synced=False))
    assert exp.answer.rcode == "SERVFAIL"
    assert "not-synced" in codes(exp)


# ---- ExternalName and forwarding -----------------------------------------------------------


async def test_external_name_offline_would_chase_the_target_upstream() -> None:
    async with FakeUpstream() as up:
        up.add("db.example.com. 60 IN A 192.0.2.7")
        exp = await explain("db.shop.svc.cluster.local", upstreams=(up.addr,))
        assert up.queries == []  # offline: nothing is sent
    assert exp.answer.answer == ("db.shop.svc.cluster.local. 5 IN CNAME db.example.com.",)
    assert codes(exp) == ["external-name", "external-name"]
    assert [r.rule for r in exp.reasons] == ["R26, D5", "R27"]
    assert exp.forward is not None
    assert (exp.forward.name, exp.forward.asked) == ("db.example.com.", False)
    assert exp.forward.upstreams == (str(up.addr),)


async def test_external_name_without_upstream_is_the_cname_alone() -> None:
    exp = await explain("db.shop.svc.cluster.local")
    assert exp.answer.answer == ("db.shop.svc.cluster.local. 5 IN CNAME db.example.com.",)
    assert exp.forward is None
    assert "forwards nothing there, so the CNAME goes alone" in exp.reasons[1].message


async def test_external_name_sent_for_real_follows_the_cname() -> None:
    async with FakeUpstream() as up:
        up.add("db.example.com. 60 IN A 192.0.2.7")
        exp = await explain("db.shop.svc.cluster.local", upstreams=(up.addr,), send=True)
    assert exp.answer.answer == (
        "db.shop.svc.cluster.local. 5 IN CNAME db.example.com.",
        "db.example.com. 60 IN A 192.0.2.7",  # R27: with the upstream's TTL
    )


async def test_a_forwarded_name_offline_says_where_it_would_go() -> None:
    async with FakeUpstream() as up:
        exp = await explain("www.example.com", upstreams=(up.addr,))
        assert up.queries == []
    assert not exp.answer.obtained
    assert codes(exp) == ["forwarded"]
    assert exp.route.zone == "."
    assert exp.route.chain == ("errors", "cache", "kubernetes", "loop", "forward")
    assert exp.forward is not None
    assert (exp.forward.name, exp.forward.asked) == ("www.example.com.", False)
    assert exp.forward.upstreams == (str(up.addr),)


async def test_a_forwarded_name_names_the_upstream_then_the_cache() -> None:
    async with FakeUpstream() as up:
        up.add("www.example.com. 60 IN A 192.0.2.1")
        explainer = Explainer.offline(config(upstreams=(up.addr,)), cluster(), send=True)
        try:
            first = await explainer.explain("www.example.com.", RType.A)
            again = await explainer.explain("www.example.com.", RType.A)
        finally:
            await explainer.close()
    assert first.answer.answer == ("www.example.com. 30 IN A 192.0.2.1",)
    assert first.forward is not None
    assert (first.forward.answered_by, first.forward.from_cache) == (str(up.addr), False)
    assert again.route.plugin == "cache"
    assert again.forward is not None
    assert again.forward.from_cache


async def test_without_an_upstream_outside_names_are_refused() -> None:
    exp = await explain("web.shop")
    assert exp.answer.rcode == "REFUSED"  # D6
    assert exp.route.zone is None
    assert codes(exp) == ["refused"]
    assert [s.name for s in exp.suggestions] == ["web.shop.svc.cluster.local."]


# ---- pods, filters, input ------------------------------------------------------------------


async def test_pods_verified_needs_a_running_pod() -> None:
    exp = await explain("10-244-1-99.shop.pod.cluster.local", pods=PodMode.VERIFIED)
    assert exp.answer.rcode == "NXDOMAIN"
    assert codes(exp) == ["pod-not-found"]
    found = await explain("10-244-1-10.shop.pod.cluster.local", pods=PodMode.VERIFIED)
    assert found.answer.answer == ("10-244-1-10.shop.pod.cluster.local. 5 IN A 10.244.1.10",)
    disabled = await explain("10-244-1-10.shop.pod.cluster.local", pods=PodMode.DISABLED)
    assert (disabled.answer.rcode, codes(disabled)) == ("NXDOMAIN", ["pods-disabled"])


async def test_a_filter_hook_marks_the_service_and_its_endpoints() -> None:
    explainer = Explainer.offline(
        config(),
        cluster(),
        filters=[lambda ns, _svc: "namespace shop is not served" if ns == "shop" else None],
    )
    exp = await explainer.explain("web.shop.svc.cluster.local.", RType.A)
    assert "filtered" in codes(exp)
    assert set(excluded(exp).values()) == {"filtered"}


def test_types_and_names_are_checked() -> None:
    assert parse_type("aaaa") == RType.AAAA
    assert parse_type("TYPE99") == 99
    assert question_for("10.96.0.10", None) == ("10.0.96.10.in-addr.arpa.", RType.PTR)
    assert question_for("web.shop.svc.cluster.local", None)[0].endswith(".local.")
    with pytest.raises(ExplainError, match="TYPE 'AXX'"):
        parse_type("AXX")
    with pytest.raises(ExplainError, match="NAME"):
        question_for("a..b", None)


# ---- output --------------------------------------------------------------------------------


async def test_json_lists_what_was_left_out_and_text_says_it() -> None:
    exp = await explain("web.shop.svc.cluster.local")
    data = exp.as_json()
    assert data["version"] == 1
    assert {(e["address"], e["reason"]) for e in data["excluded"]} == {
        ("10.244.1.11", "not-ready"),
        ("10.244.1.12", "terminating"),
        ("fd00::10", "other-family"),
    }
    text = render(data)
    assert "LEFT OUT: not ready" in text
    assert "LEFT OUT: terminating" in text
    assert "docs/rules.md R17" in text


async def test_text_of_a_forwarded_name_offline() -> None:
    exp = await explain("www.example.com", upstreams=(HostPort("127.0.0.1", 9),))
    text = render(exp.as_json())
    assert "not asked" in text
    assert "would be sent to 127.0.0.1:9" in text


async def test_a_zone_other_than_cluster_local() -> None:
    exp = await explain("web.shop.svc.k8s.example", zone="k8s.example")
    assert exp.answer.answer == ("web.shop.svc.k8s.example. 5 IN A 10.244.1.10",)
    assert exp.route.zone == "k8s.example."
    ttl = await explain("web.shop.svc.cluster.local", ttl=30)
    assert ttl.answer.answer == ("web.shop.svc.cluster.local. 30 IN A 10.244.1.10",)


# ---- the Corefile front end ----------------------------------------------------------------

COREFILE = """\
cluster.local:53 {
    errors
    kubernetes cluster.local {
        pods insecure
        ttl 30
    }
}
.:53 {
    forward . 127.0.0.1:1
}
"""


async def test_a_corefile_routes_names_to_its_server_blocks(tmp_path: Path) -> None:
    pytest.importorskip("kdns.config.corefile")
    from kdns.app import load_config, source_plan
    from kdns.explain.offline import offline_explainer

    corefile = tmp_path / "Corefile"
    corefile.write_text(COREFILE)
    data = Path(__file__).parents[1] / "data" / "explain"
    settings = Settings(corefile=corefile, manifests=(data,))
    config = load_config(settings)
    explainer = offline_explainer(config, settings, kinds=source_plan(settings, config).kinds)
    try:
        web = await explainer.explain("web.shop.svc.cluster.local.", RType.A)
        out = await explainer.explain("www.example.com.", RType.A)
    finally:
        await explainer.close()
    assert web.answer.answer == ("web.shop.svc.cluster.local. 30 IN A 10.244.1.10",)
    assert (web.route.zone, web.route.plugin) == ("cluster.local.", "kubernetes")
    assert web.route.chain == ("errors", "kubernetes")
    assert (out.route.zone, out.route.chain) == (".", ("forward",))
    assert out.forward is not None
    assert (out.forward.upstreams, out.forward.asked) == (("127.0.0.1:1",), False)
