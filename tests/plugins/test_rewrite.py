"""`rewrite`: the rest of the chain sees the rewritten question (in `question`, `query` and
the bytes of `data` alike), the client sees the name it asked for, as CoreDNS's rewrite
README describes each rule. Replies come back structured (as `kubernetes` answers) and as
wire bytes (as `forward` relays them); expected answers are zone-file lines."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

import pytest

from kdns.config.model import RewriteConfig
from kdns.dns import wire
from kdns.dns.records import CNAME, MX, PTR, SRV, A, Rcode, Record, Reply, RType
from kdns.plugins.rewrite import RewritePlugin, subnet_option
from kdns.serve.chain import Plugin, Request, Response, Result, link
from tests.config.corefiles import block, load
from tests.dns.test_wire import make_query, opt_rr
from tests.plugins.canned import make_request, resolve


def a(name: str, last: int, ttl: int = 60) -> Record:
    return Record(name, ttl, A(ipaddress.IPv4Address(f"192.0.2.{last}")))


class Zone(Plugin):
    """The rest of the chain: answers from `records` for the question its query bytes ask
    (what an upstream would see), structured or (`wire`) as relayed bytes whose OPT echoes
    the query's options."""

    name = "zone"

    def __init__(self, records: Sequence[Record], *, wire: bool, rcode: Rcode = Rcode.NOERROR):
        super().__init__()
        self.records = records
        self.wire = wire
        self.rcode = rcode
        self.seen: list[Request] = []

    def serve(self, request: Request) -> Result:
        self.seen.append(request)
        asked = wire.decode_query(request.data).question
        assert asked == request.question == request.query.question  # one question, three views
        found: list[Record] = []
        name = asked.lname
        for _ in range(8):  # follow a CNAME chain, as a resolver would
            found += [r for r in self.records if r.name == name and (
                r.rtype in (asked.qtype, RType.CNAME) or asked.qtype == RType.ANY)]  # fmt: skip
            cname = next((r for r in found if r.name == name and r.rtype == RType.CNAME), None)
            if cname is None:
                break
            name = str(cname.rdata)
        reply = Reply(rcode=self.rcode, answer=tuple(found))
        if not self.wire:
            return Response(reply, plugin="kubernetes", cacheable=True, dep=("ns", "svc"))
        out = wire.encode_reply(request.query, reply, max_size=65535, ra=True)
        if request.query.edns is not None:
            message = wire.parse_message(out)
            opt = message.opt
            assert opt is not None
            opt.rdata = [wire.join_options(wire.query_options(request.data, request.query))]
            out = wire.build_message(message, request.query.question_wire)
        return Response(wire=out, plugin="forward")


def make(*lines: str, records: Sequence[Record] = (), relay: bool = False, **kw: Rcode) -> tuple[
    RewritePlugin, Zone
]:  # fmt: skip
    config = load(block(*lines)).blocks[0].plugins["rewrite"]
    assert isinstance(config, RewriteConfig)
    plugin = RewritePlugin(config)
    zone = Zone(records, wire=relay, **kw)
    link([plugin, zone])
    return plugin, zone


async def client_view(plugin: RewritePlugin, request: Request) -> tuple[str, str, list[str]]:
    """(question as the client gets it, rcode, answer lines) of the reply."""
    response = await resolve(plugin.serve(request))
    if response.reply is not None:
        # Structured: the server encodes it for the client's own query.
        out = wire.encode_reply(request.query, response.reply, max_size=65535)
    else:
        assert response.wire is not None
        out = response.wire
    decoded = wire.decode_reply(out)
    assert decoded.id == request.query.id
    assert out[12 : 12 + len(request.query.question_wire)] == request.query.question_wire
    assert decoded.question is not None
    # Owner names are lower-cased: one that points into the question has its spelling (D4).
    lines = [str(r) for r in decoded.answer]
    lines = [f"{line.split(' ', 1)[0].lower()} {line.split(' ', 1)[1]}" for line in lines]
    return decoded.question.qname, wire.rcode_name(decoded.rcode), lines


RELAYS = pytest.mark.parametrize("relay", [False, True], ids=["structured", "relayed"])


@RELAYS
async def test_exact_rewrites_the_question_and_maps_answers_back(relay: bool) -> None:
    plugin, zone = make(
        "rewrite name exact alias.example.org web.testns.svc.cluster.local",
        records=[a("web.testns.svc.cluster.local.", 20)],
        relay=relay,
    )
    request = make_request("Alias.Example.ORG.", RType.A)
    question = request.question
    assert await client_view(plugin, request) == (
        "Alias.Example.ORG.",
        "NOERROR",
        ["alias.example.org. 60 IN A 192.0.2.20"],
    )
    (seen,) = zone.seen
    assert seen.question.qname == "web.testns.svc.cluster.local."
    assert (seen.query.id, seen.query.flags) == (request.query.id, request.query.flags)
    assert request.question is question is request.query.question  # the client's, untouched


async def test_a_structured_reply_keeps_what_the_fast_path_needs() -> None:
    plugin, _ = make(
        "rewrite name exact alias.example.org web.testns.svc.cluster.local",
        records=[a("web.testns.svc.cluster.local.", 20)],
    )
    response = await resolve(plugin.serve(make_request("alias.example.org.", RType.A)))
    assert (response.cacheable, response.dep, response.plugin) == (
        True,
        ("ns", "svc"),
        "kubernetes",
    )


async def test_no_rule_applies_the_request_goes_on_as_it_is() -> None:
    plugin, zone = make("rewrite name exact alias.example.org web.example.org")
    request = make_request("other.example.org.", RType.A)
    await resolve(plugin.serve(request))
    assert zone.seen == [request]


@RELAYS
async def test_continue_chains_rules_and_stop_ends_them(relay: bool) -> None:
    lines = (
        "rewrite continue name suffix .a.example. .b.example. answer auto",
        "rewrite name exact x.b.example final.example",
        "rewrite name exact final.example never.example",
    )
    plugin, zone = make(*lines, records=[a("final.example.", 1)], relay=relay)
    assert await client_view(plugin, make_request("x.a.example.", RType.A)) == (
        "x.a.example.",
        "NOERROR",
        ["x.a.example. 60 IN A 192.0.2.1"],  # exact maps back, then the suffix's auto
    )
    assert [r.question.qname for r in zone.seen] == ["final.example."]


@RELAYS
async def test_regex_with_an_answer_name_rule_readme_example(relay: bool) -> None:
    plugin, zone = make(
        "rewrite stop {",
        "  name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul",
        "  answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks",
        "}",
        records=[a("ftp.service.us-west-1.consul.", i, ttl=0) for i in (10, 20, 30)],
        relay=relay,
    )
    assert await client_view(plugin, make_request("ftp-us-west-1.coredns.rocks.", RType.A)) == (
        "ftp-us-west-1.coredns.rocks.",
        "NOERROR",
        [f"ftp-us-west-1.coredns.rocks. 0 IN A 192.0.2.{i}" for i in (10, 20, 30)],
    )
    assert zone.seen[0].question.qname == "ftp.service.us-west-1.consul."


@RELAYS
async def test_suffix_answer_auto_maps_names_and_values_back(relay: bool) -> None:
    records = [
        Record("www.service.consul.", 60, CNAME("web.service.consul.")),
        a("web.service.consul.", 5),
        Record("mail.service.consul.", 60, MX(10, "mx.service.consul.")),
        Record("_http._tcp.www.service.consul.", 60, SRV(0, 100, 80, "web.service.consul.")),
    ]
    plugin, _ = make(
        "rewrite name suffix .coredns.rocks. .service.consul. answer auto",
        records=records,
        relay=relay,
    )
    view = await client_view(plugin, make_request("www.coredns.rocks.", RType.A))
    assert view[2] == [
        "www.coredns.rocks. 60 IN CNAME web.coredns.rocks.",
        "web.coredns.rocks. 60 IN A 192.0.2.5",
    ]
    view = await client_view(plugin, make_request("mail.coredns.rocks.", RType.MX))
    assert view[2] == ["mail.coredns.rocks. 60 IN MX 10 mx.coredns.rocks."]
    view = await client_view(plugin, make_request("_http._tcp.www.coredns.rocks.", RType.SRV))
    assert view[2] == ["_http._tcp.www.coredns.rocks. 60 IN SRV 0 100 80 web.coredns.rocks."]


@RELAYS
async def test_prefix_without_answer_rules_leaves_answers_as_they_came(relay: bool) -> None:
    plugin, zone = make("rewrite name prefix foo bar", records=[a("bar.example.", 7)], relay=relay)
    assert await client_view(plugin, make_request("foo.example.", RType.A)) == (
        "foo.example.",
        "NOERROR",
        ["bar.example. 60 IN A 192.0.2.7"],
    )
    assert zone.seen[0].question.qname == "bar.example."


@RELAYS
async def test_answer_value_rewrites_what_a_ptr_points_to(relay: bool) -> None:
    reverse = "30.30.30.10.in-addr.arpa."
    plugin, _ = make(
        "rewrite stop {",
        "  name suffix .arpa .arpa",
        "  answer value (.*)\\.service\\.consul\\. {1}.coredns.rocks.",
        "}",
        records=[Record(reverse, 60, PTR("ftp-us-west-1.service.consul."))],
        relay=relay,
    )
    assert await client_view(plugin, make_request(reverse, RType.PTR)) == (
        reverse,
        "NOERROR",
        [f"{reverse} 60 IN PTR ftp-us-west-1.coredns.rocks."],
    )


@RELAYS
async def test_type_rule_asks_another_type_and_answers_under_the_asked_one(relay: bool) -> None:
    plugin, zone = make("rewrite type AAAA A", records=[a("www.example.", 1)], relay=relay)
    request = make_request("www.example.", RType.AAAA)
    assert await client_view(plugin, request) == (
        "www.example.",
        "NOERROR",
        ["www.example. 60 IN A 192.0.2.1"],
    )
    assert zone.seen[0].question.qtype == RType.A


@RELAYS
async def test_ttl_and_rcode_rules_change_the_reply(relay: bool) -> None:
    plugin, _ = make(
        "rewrite continue ttl regex (.*)\\.example\\. 30-300",
        "rewrite rcode suffix example. NXDOMAIN NOERROR",
        records=[a("low.example.", 1, ttl=5), a("high.example.", 2, ttl=3600)],
        relay=relay,
    )
    assert (await client_view(plugin, make_request("low.example.", RType.A)))[2] == [
        "low.example. 30 IN A 192.0.2.1"
    ]
    assert (await client_view(plugin, make_request("high.example.", RType.A)))[2] == [
        "high.example. 300 IN A 192.0.2.2"
    ]
    plugin, _ = make(
        "rewrite rcode suffix example. NXDOMAIN NOERROR", relay=relay, rcode=Rcode.NXDOMAIN
    )
    assert await client_view(plugin, make_request("gone.example.", RType.A)) == (
        "gone.example.",
        "NOERROR",
        [],
    )


async def test_a_name_that_is_not_a_name_after_the_rewrite_is_servfail() -> None:
    plugin, zone = make("rewrite name regex ^(.*)$ {1}{1}{1}{1}{1}")
    response = await resolve(plugin.serve(make_request("a" * 60 + ".example.", RType.A)))
    assert response.rcode == Rcode.SERVFAIL
    assert response.error is not None
    assert response.error.startswith("rewrite: invalid name after rewrite: ")
    assert zone.seen == []


async def test_edns0_local_client_ip_goes_upstream_and_is_reverted_in_the_reply() -> None:
    plugin, zone = make(
        "rewrite edns0 local set 0xffee {client_ip} revert", records=[a("www.example.", 1)],
        relay=True,
    )  # fmt: skip
    data = make_query("www.example", opt=opt_rr(1232, rdata=struct.pack("!HH", 10, 8) + bytes(8)))
    request = make_request("www.example.", RType.A, data=data, client=("192.0.2.200", 5353))
    response = await resolve(plugin.serve(request))
    (seen,) = zone.seen
    assert wire.query_options(seen.data, seen.query) == [
        (10, bytes(8)),
        (0xFFEE, bytes((192, 0, 2, 200))),
    ]
    assert not response.cacheable  # the query carried the client's address
    assert response.wire is not None
    opt = wire.parse_message(response.wire).opt
    assert opt is not None
    (raw,) = opt.rdata
    assert isinstance(raw, bytes)
    assert wire.split_options(raw) == [(10, bytes(8))]  # the option reverted


async def test_edns0_gives_a_bare_query_an_opt_the_client_never_sees() -> None:
    plugin, zone = make(
        "rewrite edns0 subnet set 24 56", records=[a("www.example.", 1)], relay=True
    )
    request = make_request("www.example.", RType.A, data=make_query("www.example"))
    response = await resolve(plugin.serve(request))
    (seen,) = zone.seen
    assert seen.query.edns is not None
    assert seen.query.edns.payload == 4096
    assert wire.query_options(seen.data, seen.query) == [(8, subnet_option("10.0.0.1", 24, 56))]
    assert subnet_option("10.0.0.1", 24, 56) == bytes((0, 1, 24, 0, 10, 0, 0))  # RFC 7871 §6
    v6 = bytes((0, 2, 56, 0)) + bytes.fromhex("20010db8000000")
    assert subnet_option("2001:db8::1", 24, 56) == v6
    assert response.wire is not None
    assert wire.parse_message(response.wire).opt is None  # RFC 6891 §7
