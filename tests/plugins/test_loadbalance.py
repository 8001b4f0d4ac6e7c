"""`loadbalance`: each query starts the A/AAAA/MX records one further; CNAMEs stay first."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import dnslib
import pytest

from kdns.config.model import LoadbalanceConfig, Origin
from kdns.dns.message import parse_layout
from kdns.dns.records import AAAA, CNAME, MX, TXT, A, Rcode, Record, Reply, RType
from kdns.plugins.loadbalance import LoadbalancePlugin, rotate_wire, rotations
from kdns.serve.chain import Response, link
from tests.plugins.canned import Canned, make_request, resolve

NAME = "www.example.org."


def a(last: int, name: str = NAME) -> Record:
    return Record(name, 60, A(IPv4Address(f"192.0.2.{last}")))


def mx(preference: int, exchange: str) -> Record:
    return Record("example.org.", 60, MX(preference, exchange))


CNAME_RECORD = Record(NAME, 60, CNAME("web.example.org."))


def balancer(response: Response, *, pending: bool = False) -> LoadbalancePlugin:
    plugin = LoadbalancePlugin(LoadbalanceConfig())
    link([plugin, Canned(response, pending=pending)])
    return plugin


async def answers(
    plugin: LoadbalancePlugin, n: int, qname: str = NAME, qtype: int = RType.A
) -> list[tuple[Record, ...]]:
    out = []
    for _ in range(n):
        response = await resolve(plugin.serve(make_request(qname, qtype)))
        assert response.reply is not None
        out.append(response.reply.answer)
    return out


# ---- structured replies -------------------------------------------------------------------


@pytest.mark.parametrize("pending", [False, True], ids=["now", "pending"])
async def test_each_address_comes_first_in_turn_after_the_cname(pending: bool) -> None:
    web = [a(i, "web.example.org.") for i in (1, 2, 3)]
    reply = Reply(answer=(CNAME_RECORD, *web))
    seen = await answers(balancer(Response(reply), pending=pending), 4)
    assert [answer[0] for answer in seen] == [CNAME_RECORD] * 4
    assert [answer[1] for answer in seen] == [web[0], web[1], web[2], web[0]]
    assert all(sorted(map(str, answer)) == sorted(map(str, reply.answer)) for answer in seen)


async def test_a_cname_after_the_addresses_is_moved_first() -> None:
    web = [a(1, "web.example.org."), a(2, "web.example.org.")]
    reply = Reply(answer=(web[0], CNAME_RECORD, web[1]))
    seen = await answers(balancer(Response(reply)), 2)
    assert seen == [(CNAME_RECORD, web[0], web[1]), (CNAME_RECORD, web[1], web[0])]


async def test_mx_records_rotate_and_other_types_keep_their_place() -> None:
    txt = Record("example.org.", 60, TXT(("v=spf1 -all",)))
    mxs = [mx(10, "mx1.example.org."), mx(20, "mx2.example.org.")]
    reply = Reply(answer=(mxs[0], txt, mxs[1]))
    seen = await answers(balancer(Response(reply)), 3, "example.org.", RType.MX)
    assert seen == [(txt, mxs[0], mxs[1]), (txt, mxs[1], mxs[0]), (txt, mxs[0], mxs[1])]


async def test_a_and_aaaa_rotate_as_one_group() -> None:
    v6 = Record(NAME, 60, AAAA(IPv6Address("2001:db8::1")))
    reply = Reply(answer=(a(1), v6))
    seen = await answers(balancer(Response(reply)), 2)
    assert seen == [(a(1), v6), (v6, a(1))]


async def test_questions_rotate_independently() -> None:
    """A stub asking A and AAAA in pairs still sees its A records rotate."""
    v4 = Reply(answer=(a(1), a(2)))
    plugin = balancer(Response(v4))
    firsts: list[Record] = []
    for _ in range(4):
        firsts.extend(answer[0] for answer in await answers(plugin, 1, NAME, RType.A))
        await answers(plugin, 1, NAME, RType.AAAA)
    assert firsts == [a(1), a(2), a(1), a(2)]


async def test_rotate_is_set_and_cacheable_kept() -> None:
    for cacheable in (True, False):
        original = Response(Reply(answer=(a(1), a(2))), cacheable=cacheable)
        response = await resolve(balancer(original).serve(make_request(NAME, RType.A)))
        assert response.rotate is True
        assert response.cacheable is cacheable
        assert original.rotate is False  # the response below is copied, never edited


@pytest.mark.parametrize(
    "reply",
    [
        Reply(answer=(a(1),)),
        Reply(answer=(CNAME_RECORD, a(1, "web.example.org."))),
        Reply(rcode=Rcode.NXDOMAIN, answer=(a(1), a(2))),
        Reply(rcode=Rcode.SERVFAIL),
    ],
    ids=["one-address", "cname-then-address", "nxdomain", "servfail"],
)
async def test_nothing_to_rotate_returns_the_response_as_it_came(reply: Reply) -> None:
    original = Response(reply)
    response = await resolve(balancer(original).serve(make_request(NAME, RType.A)))
    assert response is original
    assert response.rotate is False


async def test_zone_transfers_are_not_reordered() -> None:
    original = Response(Reply(answer=(a(1), a(2))))
    plugin = balancer(original)
    for _ in range(2):
        assert await resolve(plugin.serve(make_request("example.org.", RType.AXFR))) is original


def test_rotations_lists_each_distinct_order_once() -> None:
    reply = Reply(answer=(CNAME_RECORD, a(1), a(2), a(3)))
    assert [r.answer[1] for r in rotations(reply, 10)] == [a(1), a(2), a(3)]
    assert len(rotations(reply, 2)) == 2
    assert rotations(reply, 0) == []
    # two addresses and three MX: 6 combinations before the orders repeat
    mixed = Reply(answer=(a(1), a(2), mx(1, "m1."), mx(2, "m2."), mx(3, "m3.")))
    assert len({r.answer for r in rotations(mixed, 100)}) == 6
    single = Reply(answer=(a(1),))
    assert rotations(single, 5) == [single]


async def test_successive_queries_get_the_rotations_in_order() -> None:
    reply = Reply(answer=(a(1), a(2), mx(1, "m1."), mx(2, "m2."), mx(3, "m3.")))
    variants = rotations(reply, 100)
    seen = await answers(balancer(Response(reply)), 8)
    assert seen == [variants[k % len(variants)].answer for k in range(8)]


def test_only_round_robin_is_supported() -> None:
    config = LoadbalanceConfig(policy="weighted", origin=Origin("Corefile", 3))
    with pytest.raises(ValueError, match=r"^Corefile:3: loadbalance: policy 'weighted'"):
        LoadbalancePlugin(config)


# ---- relayed upstream replies ---------------------------------------------------------------


def upstream(qname: str, qtype: str, answer: list[str], additional: tuple[str, ...] = ()) -> bytes:
    """An upstream's reply, compressed as dnslib compresses (owners point backwards)."""
    reply = dnslib.DNSRecord.question(qname, qtype).reply()
    reply.header.id = 4242
    for zone in answer:
        reply.add_answer(*dnslib.RR.fromZone(zone))
    for zone in additional:
        reply.add_ar(*dnslib.RR.fromZone(zone))
    return bytes(reply.pack())


def records(wire: bytes) -> list[str]:
    """The answer section as dnslib reads it."""
    return [
        f"{rr.rname} {dnslib.QTYPE[rr.rtype]} {rr.rdata}" for rr in dnslib.DNSRecord.parse(wire).rr
    ]


async def wire_answers(wire: bytes, n: int, qname: str = NAME, qtype: int = RType.A) -> list[bytes]:
    plugin = balancer(Response(wire=wire, cacheable=True))
    out = []
    for _ in range(n):
        response = await resolve(plugin.serve(make_request(qname, qtype)))
        assert response.wire is not None
        assert response.cacheable is True
        assert response.rotate is True
        out.append(response.wire)
    return out


async def test_a_relayed_reply_rotates_its_addresses() -> None:
    wire = upstream(NAME, "A", [f"{NAME} 60 IN A 192.0.2.{i}" for i in (1, 2, 3)])
    seen = await wire_answers(wire, 4)
    assert [records(w)[0] for w in seen] == [f"{NAME} A 192.0.2.{i}" for i in (1, 2, 3, 1)]
    for w in seen:
        assert len(w) == len(wire)
        assert w[:33] == wire[:33]  # header (ID 4242, counts) and question untouched
        assert sorted(records(w)) == sorted(records(wire))
        parse_layout(w)  # still well formed: every pointer points backwards to a name


async def test_a_relayed_cname_chain_keeps_the_cname_first() -> None:
    """The addresses' owners point into the CNAME's rdata, which does not move."""
    web = "web.example.org."
    wire = upstream(
        NAME, "A", [f"{NAME} 60 IN CNAME {web}"] + [f"{web} 60 IN A 192.0.2.{i}" for i in (1, 2)]
    )
    cname_span = parse_layout(wire).answer[0]
    assert any(
        cname_span.rdata <= target < cname_span.end for _, target in parse_layout(wire).pointers
    )
    first, second = await wire_answers(wire, 2)
    assert records(first) == [
        f"{NAME} CNAME {web}",
        f"{web} A 192.0.2.1",
        f"{web} A 192.0.2.2",
    ]
    assert records(second) == [
        f"{NAME} CNAME {web}",
        f"{web} A 192.0.2.2",
        f"{web} A 192.0.2.1",
    ]
    parse_layout(second)


async def test_a_pointer_into_a_record_that_would_move_leaves_the_reply_as_it_came() -> None:
    """The glue's owners point into the MX rdata: moving an MX would break them."""
    wire = upstream(
        "example.org.",
        "MX",
        ["example.org. 60 IN MX 10 mx1.example.org.", "example.org. 60 IN MX 20 mx2.example.org."],
        ("mx1.example.org. 60 IN A 192.0.2.1", "mx2.example.org. 60 IN A 192.0.2.2"),
    )
    layout = parse_layout(wire)
    second_mx = layout.answer[1]
    assert any(second_mx.start <= target < second_mx.end for _, target in layout.pointers)
    original = Response(wire=wire)
    plugin = balancer(original)
    for _ in range(3):
        response = await resolve(plugin.serve(make_request("example.org.", RType.MX)))
        assert response is original


async def test_uncompressed_records_move_freely() -> None:
    header = b"\x00\x07\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
    qname = b"\x03www\x07example\x03org\x00"
    rr1 = qname + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    rr2 = qname + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x02"
    wire = header + qname + b"\x00\x01\x00\x01" + rr1 + rr2
    assert records(wire) == [f"{NAME} A 192.0.2.1", f"{NAME} A 192.0.2.2"]
    assert rotate_wire(wire, 1) == header + qname + b"\x00\x01\x00\x01" + rr2 + rr1
    assert rotate_wire(wire, 2) == wire


TWO = upstream(NAME, "A", [f"{NAME} 60 IN A 192.0.2.{i}" for i in (1, 2)])


@pytest.mark.parametrize(
    "wire",
    [TWO[:-3], TWO[:3] + bytes([TWO[3] | Rcode.NXDOMAIN]) + TWO[4:]],
    ids=["cut-short", "nxdomain"],
)
async def test_replies_that_cannot_be_rotated_are_relayed_as_they_came(wire: bytes) -> None:
    original = Response(wire=wire)
    plugin = balancer(original)
    for _ in range(2):
        assert await resolve(plugin.serve(make_request(NAME, RType.A))) is original


def test_a_forward_pointer_is_not_trusted() -> None:
    header = b"\x00\x07\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
    question = b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"
    rdata = b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02"
    first = b"\xc0\x31" + rdata + b"\x01"  # owner points at the second record (offset 49)
    second = b"\xc0\x0c" + rdata + b"\x02"
    wire = header + question + first + second
    assert len(header + question + first) == 49
    assert rotate_wire(wire, 1) == wire
