"""`autopath`: CoreDNS's server-side search path completion (autopath.go, cname.go and the
kubernetes plugin's AutoPath), through a real kubernetes plugin and a fake upstream.

A pod of namespace `prod` (10.244.1.50) has the kubelet's search path `prod.svc.<zone>
svc.<zone> <zone>`, then the host's domain `corp.example.`; the upstream knows
`example.upstream.test` and `host.b.example`. Expected answers are zone-file lines."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable
from ipaddress import IPv4Address

import pytest

from kdns.cluster.model import ClusterObject, Namespace
from kdns.config.model import AutopathConfig, KubernetesConfig
from kdns.config.settings import PodMode
from kdns.dns import wire
from kdns.dns.records import SOA, A, Rcode, Record, Reply, RType
from kdns.observe.stats import Stats
from kdns.plugins.autopath import AutopathPlugin
from kdns.plugins.kubernetes import KubernetesPlugin
from kdns.serve.chain import Plugin, Request, Response, Result, link
from tests.builders import StaticView, ep, eps, pod, svc
from tests.plugins.canned import make_request, resolve

POD = ("10.244.1.50", 40000)
STRANGER = ("192.0.2.99", 40000)
SERVER = "dns://:53"
ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
S = ".svc.cluster.local."
NX_SOA = (
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
)
UPSTREAM_SOA = Record("test.", 60, SOA("ns.test.", "admin.test.", 1, 60, 60, 60, 60))

CLUSTER = StaticView(
    [
        Namespace("prod"),
        Namespace("dev"),
        svc("web", "prod", ips=["10.96.1.1"], ports=["http/tcp/80"]),
        svc("web", "dev", ips=["10.96.2.1"], ports=["http/tcp/80"]),
        svc("db", "dev", headless=True, ports=["pg/tcp/5432"]),
        eps("db-a", "db", "dev", endpoints=[ep("10.244.2.2", hostname="db-0")],
            ports=["pg/tcp/5432"]),
        pod("client", "prod", ips=["10.244.1.50", "fd00::50"]),
    ]
)  # fmt: skip


class Upstream(Plugin):
    """The rest of the chain past kubernetes: answers from `known` as wire bytes, NXDOMAIN
    otherwise; `fail` names get a failed response; `pending` answers after a yield."""

    name = "forward"

    def __init__(self, *, pending: bool = False) -> None:
        super().__init__()
        self.known = {
            "example.upstream.test.": IPv4Address("192.0.2.7"),
            "host.b.example.": IPv4Address("192.0.2.8"),
        }
        self.fail = {"fail.test."}
        self.weird = {"weird.test."}
        self.pending = pending
        self.asked: list[str] = []

    def serve(self, request: Request) -> Result:
        self.asked.append(request.question.lname)
        response = self._answer(request)
        return self._later(response) if self.pending else response

    async def _later(self, response: Response) -> Response:
        await asyncio.sleep(0)
        return response

    def _answer(self, request: Request) -> Response:
        lname = request.question.lname
        if lname in self.fail:
            reply = Reply(rcode=Rcode.SERVFAIL, authoritative=False)
            return Response(reply, plugin=self.name, error="no upstream answered (tried x)")
        if lname in self.weird:
            return Response(wire=_https_reply(request), plugin=self.name)
        address = self.known.get(lname)
        if address is None:
            reply = Reply(rcode=Rcode.NXDOMAIN, authoritative=False, authority=(UPSTREAM_SOA,))
        elif request.question.qtype == RType.A:
            reply = Reply(
                authoritative=False, answer=(Record(request.question.qname, 300, A(address)),)
            )
        else:
            reply = Reply(authoritative=False, authority=(UPSTREAM_SOA,))  # NODATA
        data = wire.encode_reply(request.query, reply, max_size=65535, ra=True)
        return Response(wire=data, plugin=self.name)


def _https_reply(request: Request) -> bytes:
    """NOERROR with one HTTPS (type 65) record, a type kdns's records do not know."""
    query = request.query
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 65, 1, 300, 3) + b"\x00\x01\x00"
    header = struct.pack("!HHHHHH", query.id, 0x8180, 1, 1, 0, 0)
    return header + query.question_wire + rr


def chain(
    *,
    search: tuple[str, ...] = ("corp.example.",),
    static: bool = False,
    pending: bool = False,
) -> tuple[AutopathPlugin, Upstream, Stats]:
    stats = Stats()
    config = AutopathConfig(zones=(".",), plugin=None if static else "kubernetes", search=search)
    autopath = AutopathPlugin(config, stats=stats)
    kubernetes = KubernetesPlugin(
        KubernetesConfig(zones=ZONES, pods=PodMode.VERIFIED, ttl=5), CLUSTER
    )
    if not static:
        autopath.search_path = kubernetes.search_path
        autopath.set_cluster_zones(kubernetes.cluster_zones)
    upstream = Upstream(pending=pending)
    link([autopath, kubernetes, upstream])
    return autopath, upstream, stats


async def ask(
    plugin: Plugin, qname: str, qtype: str | int = "A", client: tuple[str, int] | None = POD
) -> Response:
    request = make_request(qname, RType[qtype] if isinstance(qtype, str) else qtype, client=client)
    request.server = SERVER
    return await resolve(plugin.serve(request))


def lines(response: Response) -> tuple[str, list[str], list[str]]:
    """(rcode, answer lines in order, authority lines) of a structured or wire reply."""
    if response.reply is not None:
        reply = response.reply
        return reply.rcode.name, [str(r) for r in reply.answer], [str(r) for r in reply.authority]
    assert response.wire is not None
    decoded = wire.decode_reply(response.wire)
    return (
        Rcode(decoded.rcode).name,
        [str(r) for r in decoded.answer],
        [str(r) for r in decoded.authority],
    )


# ---- a pod's search path, walked here ----------------------------------------------------


async def test_an_external_name_is_found_at_the_end_of_the_search_path() -> None:
    autopath, upstream, stats = chain()
    got = await ask(autopath, f"example.upstream.test.prod{S}")
    assert lines(got) == (
        "NOERROR",
        [
            f"example.upstream.test.prod{S} 300 IN CNAME example.upstream.test.",
            "example.upstream.test. 300 IN A 192.0.2.7",
        ],
        [],
    )
    # The cluster zone's candidates are the kubernetes plugin's NXDOMAINs; the rest went on.
    assert upstream.asked == ["example.upstream.test.corp.example.", "example.upstream.test."]
    assert not got.cacheable
    assert stats.autopath_success == {SERVER: 1}


async def test_a_service_of_another_namespace_is_found_by_its_short_name() -> None:
    autopath, upstream, _ = chain()
    got = await ask(autopath, f"web.dev.prod{S}")  # `web.dev` from a pod of prod
    assert lines(got) == (
        "NOERROR",
        [f"web.dev.prod{S} 5 IN CNAME web.dev{S}", f"web.dev{S} 5 IN A 10.96.2.1"],
        [],
    )
    assert upstream.asked == []
    assert not got.cacheable


async def test_the_asked_names_own_answer_goes_as_it_came() -> None:
    autopath, _, stats = chain()
    got = await ask(autopath, f"web.prod{S}")
    assert lines(got) == ("NOERROR", [f"web.prod{S} 5 IN A 10.96.1.1"], [])
    assert got.cacheable  # the same for every client
    assert stats.autopath_success == {SERVER: 1}  # CoreDNS counts it too


async def test_nodata_is_an_answer_and_gets_no_cname() -> None:
    autopath, _, _ = chain()
    # `dev` from a pod of prod: dev.prod.svc is NXDOMAIN, dev.svc.<zone> exists (NODATA).
    got = await ask(autopath, f"dev.prod{S}")
    assert lines(got) == ("NOERROR", [], [NX_SOA])
    assert not got.cacheable


async def test_every_candidate_nxdomain_answers_the_asked_names_own_nxdomain() -> None:
    autopath, upstream, stats = chain()
    got = await ask(autopath, f"nothing.here.prod{S}")
    assert lines(got) == ("NXDOMAIN", [], [NX_SOA])
    assert upstream.asked == ["nothing.here.corp.example.", "nothing.here."]
    assert not got.cacheable  # another search domain may answer later
    assert stats.autopath_success == {}


async def test_a_failed_candidate_ends_the_walk_with_servfail() -> None:
    autopath, upstream, stats = chain()
    got = await ask(autopath, f"fail.test.prod{S}")
    assert got.rcode == Rcode.SERVFAIL
    assert got.error == "no upstream answered (tried x)"
    assert upstream.asked == ["fail.test.corp.example.", "fail.test."]
    assert stats.autopath_success == {}


async def test_an_upstream_reply_kdns_cannot_rewrite_gives_the_first_reply() -> None:
    autopath, _, _ = chain()
    got = await ask(autopath, f"weird.test.prod{S}", 65)  # HTTPS
    assert lines(got) == ("NXDOMAIN", [], [NX_SOA])


async def test_every_query_type_is_completed() -> None:
    autopath, _, _ = chain()
    got = await ask(autopath, f"example.upstream.test.prod{S}", "AAAA")
    assert lines(got) == ("NOERROR", [], [str(UPSTREAM_SOA)])  # the upstream's NODATA
    got = await ask(autopath, f"db.dev.prod{S}", "SRV")
    assert lines(got)[1][0] == f"db.dev.prod{S} 5 IN CNAME db.dev{S}"


async def test_pending_candidates_are_walked_too() -> None:
    autopath, _upstream, _ = chain(pending=True)
    got = await ask(autopath, f"example.upstream.test.prod{S}")
    assert lines(got)[1] == [
        f"example.upstream.test.prod{S} 300 IN CNAME example.upstream.test.",
        "example.upstream.test. 300 IN A 192.0.2.7",
    ]
    got = await ask(autopath, f"nothing.prod{S}")
    assert lines(got) == ("NXDOMAIN", [], [NX_SOA])


async def test_the_pods_ipv6_address_and_a_mapped_ipv4_address_are_the_pod() -> None:
    autopath, _, _ = chain()
    for client in (("fd00::50", 1), ("::ffff:10.244.1.50", 1)):
        got = await ask(autopath, f"web.dev.prod{S}", client=client)
        assert lines(got)[1][0] == f"web.dev.prod{S} 5 IN CNAME web.dev{S}"


# ---- when autopath stays out ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "client"),
    [
        (f"web.dev.prod{S}", STRANGER),  # not a known pod
        (f"web.dev.prod{S}", None),  # no client address
        (f"web.prod.dev{S}", POD),  # not under the pod's first search domain
        (f"prod{S}", POD),  # the first search domain itself (CoreDNS: SERVFAIL)
        ("web.dev.cluster.local.", POD),
    ],
)
async def test_other_queries_pass_untouched(qname: str, client: tuple[str, int] | None) -> None:
    autopath, _, stats = chain()
    got = await ask(autopath, qname, client=client)
    alone = await ask(autopath.next, qname, client=client)  # the kubernetes plugin's reply
    assert lines(got) == lines(alone)
    assert stats.autopath_success == {}


async def test_names_outside_the_zones_pass_untouched() -> None:
    stats = Stats()
    autopath = AutopathPlugin(AutopathConfig(zones=("cluster.local.",), search=()), stats=stats)
    upstream = Upstream()
    autopath.search_path = lambda _r, _h: ("prod.svc.example.", "")
    link([autopath, upstream])
    got = await ask(autopath, "x.prod.svc.example.")
    assert got.rcode == Rcode.NXDOMAIN
    assert upstream.asked == ["x.prod.svc.example."]


async def test_a_strangers_negative_answer_under_a_namespace_is_not_kept() -> None:
    """The fast path keys on the name only: an NXDOMAIN kept for a stranger would be served
    to the namespace's pods, which autopath answers differently."""
    autopath, _, _ = chain()
    got = await ask(autopath, f"web.dev.prod{S}", client=STRANGER)
    assert got.rcode == Rcode.NXDOMAIN
    assert not got.cacheable
    got = await ask(autopath, f"web.prod{S}", client=STRANGER)
    assert got.rcode == Rcode.NOERROR
    assert got.cacheable
    got = await ask(autopath, f"nothing{S}", client=STRANGER)  # no pod's first domain
    assert got.rcode == Rcode.NXDOMAIN
    assert got.cacheable


# ---- a resolv.conf file: one search path for everyone --------------------------------------


async def test_a_static_search_path_applies_to_every_client() -> None:
    autopath, upstream, stats = chain(search=("a.example.", "b.example."), static=True)
    got = await ask(autopath, "host.a.example.", client=None)
    assert lines(got) == (
        "NOERROR",
        ["host.a.example. 300 IN CNAME host.b.example.", "host.b.example. 300 IN A 192.0.2.8"],
        [],
    )
    assert upstream.asked == ["host.a.example.", "host.b.example."]
    assert stats.autopath_success == {SERVER: 1}
    got = await ask(autopath, "host.c.example.", client=None)  # not under a.example.
    assert lines(got) == ("NXDOMAIN", [], [str(UPSTREAM_SOA)])  # the upstream's own
    assert upstream.asked[2:] == ["host.c.example."]


# ---- the kubernetes plugin's side --------------------------------------------------------


def test_the_search_path_is_the_kubelets_for_the_pods_namespace() -> None:
    kubernetes = KubernetesPlugin(KubernetesConfig(zones=ZONES, pods=PodMode.VERIFIED), CLUSTER)
    request = make_request("x.prod.svc.cluster.local.", RType.A, client=POD)
    assert kubernetes.search_path(request, ("corp.example.",)) == (
        "prod.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
        "corp.example.",
        "",
    )
    reverse = make_request("1.0.0.10.in-addr.arpa.", RType.PTR, client=POD)
    assert kubernetes.search_path(reverse, ()) == (
        "prod.svc.in-addr.arpa.", "svc.in-addr.arpa.", "in-addr.arpa.", ""
    )  # fmt: skip
    outside = make_request("example.org.", RType.A, client=POD)
    assert kubernetes.search_path(outside, ()) is None
    insecure = KubernetesPlugin(KubernetesConfig(zones=ZONES, pods=PodMode.INSECURE), CLUSTER)
    assert insecure.search_path(request, ()) is None


def test_a_pending_walk_is_an_awaitable() -> None:
    autopath, _, _ = chain(pending=True)
    request = make_request(f"web.dev.prod{S}", RType.A, client=POD)
    result = autopath.serve(request)
    assert isinstance(result, Response)  # the cluster answered before the upstream was asked
    result = autopath.serve(make_request(f"example.upstream.test.prod{S}", RType.A, client=POD))
    assert isinstance(result, Awaitable)
    asyncio.run(resolve(result))


# ---- through the server: the fast path in front --------------------------------------------


def test_the_fast_path_never_serves_a_strangers_nxdomain_to_a_pod() -> None:
    from kdns.build import standalone
    from kdns.cluster.index import Index
    from kdns.config.model import Config, ServerBlock
    from tests.builders import replace_events

    index = Index(clock=lambda: 1.0)
    objects: list[ClusterObject] = [*CLUSTER.services, *CLUSTER.slices, *CLUSTER.pods]
    objects += [Namespace(n) for n in sorted(CLUSTER.namespaces)]
    for event in replace_events(objects):
        index.apply(event)
    block = ServerBlock(
        zones=("cluster.local.",),
        port=53,
        plugins={
            "autopath": AutopathConfig(zones=("cluster.local.",), search=()),
            "kubernetes": KubernetesConfig(zones=("cluster.local.",), pods=PodMode.VERIFIED),
        },
    )
    stats = Stats()
    server = standalone(Config(blocks=(block,)), index=index, view=index, stats=stats)
    query = wire.build_query(f"web.dev.prod{S}", RType.A, qid=7, edns_payload=None)

    def rcode_and_answers(client: tuple[str, int]) -> tuple[int, int]:
        out = server.handle(query, False, "1", client)
        assert isinstance(out, bytes)
        return out[3] & 0x0F, int.from_bytes(out[6:8], "big")

    for _ in range(3):  # a stranger asks, again and again: NXDOMAIN each time
        assert rcode_and_answers(STRANGER) == (Rcode.NXDOMAIN, 0)
    assert rcode_and_answers(POD) == (Rcode.NOERROR, 2)  # CNAME + A, not the stranger's
    assert rcode_and_answers(POD) == (Rcode.NOERROR, 2)
    assert rcode_and_answers(STRANGER) == (Rcode.NXDOMAIN, 0)  # nor the other way round
