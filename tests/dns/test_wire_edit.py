"""Editing messages as bytes (`kdns.dns.wire.edit`): queries with another question, payload
or EDNS options; replies taken apart and written again. Messages are built by hand (RFC
1035 §4.1, RFC 6891 §6.1.2) and read back with dnslib, an independent decoder."""

from __future__ import annotations

import struct

import dnslib
import pytest

from kdns.dns.wire import (
    FormatError,
    build_message,
    decode_query,
    join_options,
    parse_message,
    query_options,
    requery,
    split_options,
    with_options,
    with_payload,
)
from tests.dns.test_wire import header, make_query, opt_rr, wire_name

QID = 0x4242


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def zone_lines(message: bytes) -> list[str]:
    """Every record but the OPT, as zone-file lines with single spaces and a lower-case
    owner (one that points into the question has its spelling); dnslib's view."""
    parsed = dnslib.DNSRecord.parse(message)
    return [_lower_owner(" ".join(str(r).split())) for r in (*parsed.rr, *parsed.auth, *parsed.ar)
            if r.rtype != 41]  # fmt: skip


def _lower_owner(line: str) -> str:
    owner, rest = line.split(" ", 1)
    return f"{owner.lower()} {rest}"


# ---- queries ---------------------------------------------------------------------------


def test_requery_keeps_id_flags_class_and_opt_and_changes_the_question() -> None:
    opt = opt_rr(4096, do=True, rdata=struct.pack("!HH", 0xFFEE, 2) + b"hi")
    data = make_query("Alias.Example.ORG", 1, qid=QID, flags=0x0110, opt=opt)
    out, query = requery(data, decode_query(data), "web.testns.svc.cluster.local.", 28)
    assert out == (
        struct.pack("!6H", QID, 0x0110, 1, 0, 0, 1)
        + wire_name("web.testns.svc.cluster.local")
        + struct.pack("!HH", 28, 1)
        + opt
    )
    assert (query.id, query.question.qname, query.question.qtype) == (
        QID,
        "web.testns.svc.cluster.local.",
        28,
    )
    assert query.edns is not None
    assert (query.edns.payload, query.edns.do, query.edns.has_options) == (4096, True, True)


def test_requery_drops_records_a_query_should_not_carry_but_keeps_the_opt() -> None:
    answer = rr(b"\xc0\x0c", 1, 60, bytes(4))
    data = make_query("a.example", counts=(1, 1, 0, 1), tail=answer + opt_rr())
    out, query = requery(data, decode_query(data), "b.example.", 1)
    assert header(out)[2:] == (1, 0, 0, 1)
    assert query.edns is not None


def test_requery_refuses_a_name_that_is_not_a_name() -> None:
    data = make_query("a.example")
    with pytest.raises(ValueError, match="63"):
        requery(data, decode_query(data), "x" * 64 + ".example.", 1)


def test_with_payload_rewrites_only_the_opt_class() -> None:
    data = make_query("a.example", opt=opt_rr(4096, do=True))
    out, query = with_payload(data, decode_query(data), 1232)
    assert out == make_query("a.example", opt=opt_rr(1232, do=True))
    assert query.edns is not None
    assert (query.edns.payload, query.edns.do) == (1232, True)
    assert (
        query.question is decode_query(data).question
        or query.question == decode_query(data).question
    )


def test_options_are_read_replaced_and_an_opt_is_added_when_missing() -> None:
    options = [(0xFFEE, b"abcd"), (3, b"")]
    data = make_query("a.example", opt=opt_rr(1400, rdata=join_options(options)))
    assert query_options(data, decode_query(data)) == options
    out, query = with_options(data, decode_query(data), [(8, b"\x00\x01\x18\x00\x0a\x00\x00")])
    assert out == make_query(
        "a.example",
        opt=opt_rr(1400, rdata=struct.pack("!HH", 8, 7) + b"\x00\x01\x18\x00\x0a\x00\x00"),
    )
    bare = make_query("a.example")
    out, query = with_options(bare, decode_query(bare), [(0xFFEE, b"x")])
    assert out == make_query(
        "a.example", opt=opt_rr(4096, rdata=struct.pack("!HH", 0xFFEE, 1) + b"x")
    )
    assert query.edns is not None


def test_split_options_refuses_a_short_option() -> None:
    with pytest.raises(FormatError):
        split_options(struct.pack("!HH", 10, 8) + b"abc")


# ---- whole messages --------------------------------------------------------------------


def upstream(answer: bytes, an: int, additional: bytes = b"", ar: int = 0) -> bytes:
    head = struct.pack("!6H", QID, 0x8180, 1, an, 0, ar)
    return head + wire_name("www.example.org") + struct.pack("!HH", 1, 1) + answer + additional


def test_names_in_rdata_are_read_through_compression_and_written_back() -> None:
    # www.example.org CNAME web.example.org (pointer), web A, example.org MX 10 mail (pointer),
    # and an SOA whose names point into the question.
    cname = rr(b"\xc0\x0c", 5, 60, b"\x03web\xc0\x10")
    a = rr(b"\x03web\xc0\x10", 1, 60, bytes((192, 0, 2, 1)))
    mx = rr(b"\xc0\x10", 15, 60, struct.pack("!H", 10) + b"\x04mail\xc0\x10")
    soa = rr(
        b"\xc0\x10",
        6,
        60,
        b"\x02ns\xc0\x10\x0ahostmaster\xc0\x10" + struct.pack("!5I", 1, 2, 3, 4, 5),
    )
    message = parse_message(upstream(cname + a + mx + soa, 4))
    assert [(r.name, r.rtype, r.value) for r in message.answer] == [
        ("www.example.org.", 5, "web.example.org."),
        ("web.example.org.", 1, None),
        ("example.org.", 15, "mail.example.org."),
        ("example.org.", 6, "ns.example.org."),
    ]
    message.answer[0].value = "web.example.net."
    question = wire_name("WWW.example.org") + struct.pack("!HH", 1, 1)
    out = build_message(message, question)
    assert out[12 : 12 + len(question)] == question
    assert zone_lines(out) == [
        "www.example.org. 60 IN CNAME web.example.net.",
        "web.example.org. 60 IN A 192.0.2.1",
        "example.org. 60 IN MX 10 mail.example.org.",
        "example.org. 60 IN SOA ns.example.org. hostmaster.example.org. 1 2 3 4 5",
    ]
    assert out[12 + len(question) : 12 + len(question) + 2] == b"\xc0\x0c"  # owner -> question


def test_unknown_types_keep_their_octets_and_the_opt_keeps_its_place_and_rcode() -> None:
    https = rr(b"\xc0\x0c", 65, 300, b"\x00\x01\x00")  # SVCB-style rdata, no names
    opt = opt_rr(1232, rdata=struct.pack("!HH", 0xFFEE, 1) + b"z")
    opt = opt[:5] + struct.pack("!I", 1 << 24) + opt[9:]  # extended rcode 1 -> BADVERS (16)
    message = parse_message(upstream(https, 1, opt, 1))
    assert message.rcode == 16
    message.answer[0].ttl = 30
    out = build_message(message, wire_name("www.example.org") + struct.pack("!HH", 1, 1))
    assert out.endswith(opt)
    assert rr(b"\xc0\x0c", 65, 30, b"\x00\x01\x00") in out


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 11,
        upstream(rr(b"\xc0\x0c", 1, 60, bytes(5)), 1)[:-1],  # rdata runs past the end
        upstream(rr(b"\xc0\x0c", 5, 60, b"\x03web\xc0\x10\x00"), 1),  # CNAME longer than its name
        upstream(rr(b"\xc0\x0c", 5, 60, b"\x03web\xc0\xff"), 1),  # pointer forward
        upstream(b"", 1),  # ANCOUNT lies
        upstream(b"", 0) + b"\x00",  # trailing octet
    ],
    ids=["short", "past-end", "rdlength", "pointer", "count", "trailing"],
)
def test_malformed_replies_are_format_errors(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_message(data)
