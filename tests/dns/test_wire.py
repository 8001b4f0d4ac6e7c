"""Wire format: queries built by hand, replies checked byte by byte against RFC 1035/6891."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.dns.records import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Question,
    Rcode,
    Record,
    Reply,
)
from kdns.dns.wire import (
    FormatError,
    QueryError,
    build_query,
    cap_ttls,
    decode_query,
    decode_reply,
    encode_badvers,
    encode_error,
    encode_reply,
    labels_to_text,
    name_to_wire,
    reply_matches,
    rewrite_ttls,
    scan_reply,
    truncate_for,
    ttl_offsets,
    with_id,
    with_qname,
    with_question,
)
from kdns.dns.wire.common import _label_text, read_name, skip_name

QID = 0x1234


def wire_name(name: str) -> bytes:
    """Uncompressed wire form of a plain dotted name (test-side, independent of kdns)."""
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


def opt_rr(payload: int = 1232, *, do: bool = False, version: int = 0, rdata: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def make_query(
    name: str,
    qtype: int = 1,
    *,
    qid: int = QID,
    flags: int = 0x0100,
    qclass: int = 1,
    opt: bytes | None = None,
    counts: tuple[int, int, int, int] | None = None,
    tail: bytes = b"",
) -> bytes:
    """A query with RD set by default; `opt` appended to the additional section."""
    if counts is None:
        counts = (1, 0, 0, 1 if opt is not None else 0)
    head = struct.pack("!HH4H", qid, flags, *counts)
    return head + wire_name(name) + struct.pack("!HH", qtype, qclass) + (opt or b"") + tail


def header(data: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack_from("!6H", data, 0)


QNAME = "svc1.testns.svc.cluster.local."
A_RECORD = Record(QNAME, 5, A(IPv4Address("10.0.0.1")))
SOA_RECORD = Record(
    "cluster.local.",
    5,
    SOA("ns.dns.cluster.local.", "hostmaster.cluster.local.", 7, 7200, 1800, 86400, 5),
)


# ---- decoding queries --------------------------------------------------------------------


def test_decode_query_reads_header_question_and_case_as_spelled() -> None:
    data = make_query("SvC1.TestNS.svc.cluster.local", 33, flags=0x0110)
    query = decode_query(data)
    assert query.id == QID
    assert query.rd
    assert query.cd
    assert query.question == Question("SvC1.TestNS.svc.cluster.local.", 33)
    assert query.qclass == 1
    assert query.question_wire == data[12:]
    assert query.edns is None


def test_decode_query_reads_edns() -> None:
    query = decode_query(make_query(QNAME, opt=opt_rr(4096, do=True, version=0)))
    assert query.edns is not None
    assert (query.edns.payload, query.edns.do, query.edns.version) == (4096, True, 0)
    assert not query.edns.has_options
    with_cookie = opt_rr(rdata=b"\x00\x0a\x00\x08" + b"12345678")  # RFC 7873 client cookie
    edns = decode_query(make_query(QNAME, opt=with_cookie)).edns
    assert edns is not None
    assert edns.has_options


def test_with_qname_asks_another_name_with_the_same_header_type_and_edns() -> None:
    data = make_query("Web.prod.svc.cluster.local", 28, flags=0x0110, opt=opt_rr(4096, do=True))
    query = decode_query(data)
    other = decode_query(with_qname(data, query, "web.dev.svc.cluster.local."))
    assert other.question == Question("web.dev.svc.cluster.local.", 28)
    assert (other.id, other.flags, other.qclass) == (query.id, query.flags, query.qclass)
    assert other.edns == query.edns
    with pytest.raises(ValueError, match="longer than 63"):
        with_qname(data, query, "a" * 64 + ".example.")


BAD_QUERIES = {
    "junk": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff\xff",
    "no question": make_query(QNAME, counts=(0, 0, 0, 0))[:12],
    "two questions": make_query(QNAME, counts=(2, 0, 0, 0))
    + wire_name("a.b")
    + b"\x00\x01\x00\x01",
    "pointer loop": struct.pack("!6H", QID, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
    "forward pointer": struct.pack("!6H", QID, 0x0100, 1, 0, 0, 0) + b"\xc0\x14\x00\x01\x00\x01",
    "label of 64": struct.pack("!6H", QID, 0x0100, 1, 0, 0, 0)
    + b"\x40"
    + b"a" * 64
    + b"\x00\x00\x01\x00\x01",
    "name over 255": make_query(".".join(["a" * 63] * 4) + ".b"),
    "lying arcount": make_query(QNAME, counts=(1, 0, 0, 1)),
    "lying ancount": make_query(QNAME, counts=(1, 2, 0, 0)),
    "trailing garbage": make_query(QNAME) + b"\x00\x00",
    "repeated OPT": make_query(QNAME, opt=opt_rr() + opt_rr(), counts=(1, 0, 0, 2)),
    "OPT in answer section": make_query(QNAME, opt=opt_rr(), counts=(1, 1, 0, 0)),
    "OPT not owned by root": make_query(
        QNAME, opt=b"\x01a" + opt_rr()[0:0] + b"\x00" + opt_rr()[1:], counts=(1, 0, 0, 1)
    ),
    "truncated option": make_query(QNAME, opt=opt_rr(rdata=b"\x00\x0a\x00\x08abc")),
    "question cut short": make_query(QNAME)[:-2],
    "loop in an additional record": make_query(QNAME, counts=(1, 0, 0, 1))
    + b"\xc0\x30\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01",
}


@pytest.mark.parametrize("name", sorted(BAD_QUERIES))
def test_malformed_queries_are_format_errors(name: str) -> None:
    with pytest.raises(FormatError):
        decode_query(BAD_QUERIES[name])
    reply = encode_error(BAD_QUERIES[name], Rcode.FORMERR)
    assert reply is not None
    qid, flags, *_ = header(reply)
    assert qid == QID
    assert flags & 0x8000  # QR
    assert flags & 0xF == Rcode.FORMERR


def test_response_and_short_packets_are_dropped() -> None:
    response = make_query(QNAME, flags=0x8100)
    with pytest.raises(QueryError) as info:
        decode_query(response)
    assert info.value.rcode is None
    assert encode_error(response, Rcode.FORMERR) is None
    with pytest.raises(QueryError) as info:
        decode_query(b"\x12\x34\x01")
    assert info.value.rcode is None
    assert encode_error(b"\x12\x34\x01", Rcode.FORMERR) is None


@pytest.mark.parametrize("opcode", [1, 2, 4, 5])  # IQUERY, STATUS, NOTIFY, UPDATE
def test_other_opcodes_are_notimp_with_opcode_kept(opcode: int) -> None:
    data = make_query(QNAME, flags=(opcode << 11) | 0x0100)
    with pytest.raises(QueryError) as info:
        decode_query(data)
    assert info.value.rcode == Rcode.NOTIMP
    reply = encode_error(data, Rcode.NOTIMP)
    assert reply is not None
    _, flags, qd, an, ns, ar = header(reply)
    assert (flags >> 11) & 0xF == opcode
    assert flags & 0xF == Rcode.NOTIMP
    assert (qd, an, ns, ar) == (1, 0, 0, 0)
    assert reply[12:] == data[12:]  # question echoed


# ---- encoding replies --------------------------------------------------------------------


def test_reply_header_question_echo_and_a_record_bytes() -> None:
    data = make_query("SVC1.testns.Svc.cluster.LOCAL")
    reply = encode_reply(decode_query(data), Reply(answer=(A_RECORD,)), max_size=512)
    qid, flags, qd, an, ns, ar = header(reply)
    assert qid == QID
    assert flags == 0x8000 | 0x0400 | 0x0100  # QR AA RD, RA clear, NOERROR
    assert (qd, an, ns, ar) == (1, 1, 0, 0)
    assert reply[12 : len(data)] == data[12:]  # 0x20 spelling kept (D4)
    # owner: pointer to the question (0xC00C), A IN, TTL 5, RDLENGTH 4, 10.0.0.1
    assert reply[len(data) :] == b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01"


def test_reply_rd_clear_and_ra_when_asked() -> None:
    data = make_query(QNAME, flags=0x0000)
    reply = encode_reply(decode_query(data), Reply(rcode=Rcode.NXDOMAIN), max_size=512, ra=True)
    _, flags, *_ = header(reply)
    assert flags == 0x8000 | 0x0400 | 0x0080 | Rcode.NXDOMAIN


def test_edns_is_echoed_with_our_payload_and_do_copied() -> None:
    data = make_query(QNAME, opt=opt_rr(4096, do=True))
    reply = encode_reply(decode_query(data), Reply(answer=(A_RECORD,)), max_size=1232)
    assert header(reply)[5] == 1
    # RFC 6891 §6.1.2: root owner, TYPE 41, CLASS = our payload, TTL: ext-rcode 0,
    # version 0, DO copied (RFC 3225 §3), RDLENGTH 0.
    assert reply[-11:] == b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"


def test_badvers_for_edns_version_above_zero() -> None:
    data = make_query(QNAME, opt=opt_rr(version=1))
    reply = encode_badvers(decode_query(data))
    _, flags, qd, an, ns, ar = header(reply)
    assert flags & 0xF == 0  # BADVERS = 16: low bits 0 in the header...
    assert (qd, an, ns, ar) == (1, 0, 0, 1)
    assert reply[-11:] == b"\x00\x00\x29\x04\xd0\x01\x00\x00\x00\x00\x00"  # ...high bits 1


def many_a(n: int) -> tuple[Record, ...]:
    return tuple(
        Record(QNAME, 5, A(IPv4Address(f"10.0.{i // 250}.{i % 250 + 1}"))) for i in range(n)
    )


def test_truncation_at_512_without_edns_keeps_whole_answers_and_sets_tc() -> None:
    data = make_query(QNAME)
    reply_obj = Reply(answer=many_a(40), authority=(SOA_RECORD,))
    reply = encode_reply(decode_query(data), reply_obj, max_size=512)
    _, flags, _, an, ns, ar = header(reply)
    assert len(reply) <= 512
    assert flags & 0x0200  # TC
    # each compressed A record is 16 bytes: as many as fit after header + question
    assert an == (512 - len(data)) // 16
    assert (ns, ar) == (0, 0)
    assert len(reply) == len(data) + 16 * an


def test_truncation_keeps_opt_and_honours_the_limit() -> None:
    data = make_query(QNAME, opt=opt_rr(700))
    reply = encode_reply(decode_query(data), Reply(answer=many_a(60)), max_size=700)
    _, flags, _, an, _, ar = header(reply)
    assert len(reply) <= 700
    assert flags & 0x0200
    assert ar == 1
    assert reply[-11:-8] == b"\x00\x00\x29"
    assert an == (700 - (len(data) - 11) - 11) // 16


def test_no_truncation_when_it_fits() -> None:
    data = make_query(QNAME)
    reply = encode_reply(decode_query(data), Reply(answer=many_a(60)), max_size=65535)
    _, flags, _, an, _, _ = header(reply)
    assert not flags & 0x0200
    assert an == 60


def test_additional_dropped_before_answers() -> None:
    data = make_query(QNAME)
    answers = many_a(20)
    extra = many_a(20)
    reply = encode_reply(decode_query(data), Reply(answer=answers, additional=extra), max_size=512)
    _, flags, _, an, _, ar = header(reply)
    assert an == 20
    assert 0 < ar < 20
    assert flags & 0x0200


def test_srv_target_is_not_compressed_and_cname_is() -> None:
    data = make_query("_http._tcp." + QNAME, 33)
    srv = Record("_http._tcp." + QNAME, 5, SRV(0, 100, 80, QNAME))
    reply = encode_reply(decode_query(data), Reply(answer=(srv,)), max_size=512)
    # RFC 2782: the SRV target is written out in full
    assert reply.endswith(b"\x00\x00\x00\x64\x00\x50" + wire_name(QNAME))
    cname = Record(QNAME, 5, CNAME("svc2.testns.svc.cluster.local."))
    data = make_query(QNAME)
    reply = encode_reply(decode_query(data), Reply(answer=(cname,)), max_size=512)
    # "svc2" then a pointer to "testns.svc.cluster.local." in the question (offset 12+5)
    assert reply.endswith(b"\x00\x07\x04svc2\xc0\x11")


def test_encode_then_decode_round_trip() -> None:
    data = make_query(QNAME, opt=opt_rr())
    reply_obj = Reply(
        rcode=Rcode.NXDOMAIN, authority=(SOA_RECORD,), answer=(A_RECORD,), additional=()
    )
    decoded = decode_reply(encode_reply(decode_query(data), reply_obj, max_size=1232))
    assert decoded.rcode == Rcode.NXDOMAIN
    assert decoded.question == Question(QNAME, 1)
    assert decoded.answer == (A_RECORD,)
    assert decoded.authority == (SOA_RECORD,)
    assert decoded.soa_negative_ttl == 5


# ---- names -------------------------------------------------------------------------------


def test_names_with_odd_octets_round_trip_through_escapes() -> None:
    labels = [b"a.b", b"c\\d", b"\x00\xff ", b"Ok"]
    text = labels_to_text(labels)
    assert text == "a\\.b.c\\\\d.\\000\\255\\032.Ok."
    assert name_to_wire(text) == b"\x03a.b\x03c\\d\x03\x00\xff \x02Ok\x00"
    assert name_to_wire(".") == b"\x00"
    with pytest.raises(ValueError, match="63"):
        name_to_wire("a" * 64 + ".")


# ---- upstream helpers --------------------------------------------------------------------


def upstream_reply(
    qname: str,
    qtype: int,
    *,
    qid: int,
    rcode: int,
    answer: bytes = b"",
    an: int = 0,
    authority: bytes = b"",
    ns: int = 0,
) -> bytes:
    head = struct.pack("!6H", qid, 0x8180 | rcode, 1, an, ns, 0)
    return head + wire_name(qname) + struct.pack("!HH", qtype, 1) + answer + authority


def test_build_query_bytes() -> None:
    assert build_query("Example.com.", 1, qid=7, edns_payload=None) == (
        b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07Example\x03com\x00\x00\x01\x00\x01"
    )
    with_opt = build_query("example.com.", 28, qid=7, rd=False)
    assert with_opt[2:4] == b"\x00\x00"
    assert with_opt.endswith(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


def test_reply_matches_per_rfc_5452() -> None:
    query = build_query("example.com.", 1, qid=99)
    good = upstream_reply("EXAMPLE.com.", 1, qid=99, rcode=0)
    assert reply_matches(query, good)
    assert reply_matches(decode_query(query), good)
    assert not reply_matches(query, upstream_reply("example.com.", 1, qid=98, rcode=0))
    assert not reply_matches(query, upstream_reply("example.org.", 1, qid=99, rcode=0))
    assert not reply_matches(query, upstream_reply("example.com.", 28, qid=99, rcode=0))
    assert not reply_matches(query, query)  # QR clear: not a reply
    assert not reply_matches(query, good[:20])


def test_decode_reply_ttls_feed_the_forward_cache() -> None:
    a_rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\x01\x02\x03\x04"  # TTL 300
    a_rr2 = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x05"  # TTL 60
    positive = decode_reply(
        upstream_reply("a.example.", 1, qid=1, rcode=0, answer=a_rr + a_rr2, an=2)
    )
    assert (positive.rcode, positive.min_ttl, positive.record_min_ttl) == (0, 60, 60)
    assert positive.soa_negative_ttl is None
    soa_rdata = (
        wire_name("ns.example.") + wire_name("h.example.") + struct.pack("!5I", 1, 2, 3, 4, 30)
    )
    soa = (
        b"\xc0\x0e\x00\x06\x00\x01\x00\x00\x0e\x10" + struct.pack("!H", len(soa_rdata)) + soa_rdata
    )
    nx = decode_reply(upstream_reply("a.example.", 1, qid=1, rcode=3, authority=soa, ns=1))
    # RFC 2308 §5: a denial lives min(SOA TTL 3600, MINIMUM 30).
    assert (nx.rcode, nx.min_ttl, nx.soa_negative_ttl, nx.record_min_ttl) == (3, None, 30, 3600)
    nodata = decode_reply(upstream_reply("a.example.", 1, qid=1, rcode=0))
    assert (nodata.min_ttl, nodata.soa_negative_ttl, nodata.record_min_ttl) == (None, None, None)
    with pytest.raises(FormatError):
        decode_reply(b"\x00\x01\x81\x80\x00\x01")


def test_with_id() -> None:
    assert with_id(b"\x00\x01rest", 0xABCD) == b"\xab\xcdrest"


# ---- every record type, compression limits ----------------------------------------------


def test_every_record_type_round_trips_through_the_wire() -> None:
    long_text = "x" * 300  # RFC 1035 §3.3.14: character-strings hold at most 255 octets
    records = (
        Record(QNAME, 5, A(IPv4Address("10.0.0.1"))),
        Record(QNAME, 5, AAAA(IPv6Address("fd00::1"))),
        Record("alias.testns.svc.cluster.local.", 5, CNAME(QNAME)),
        Record("1.0.0.10.in-addr.arpa.", 5, PTR(QNAME)),
        Record("cluster.local.", 5, NS("ns.dns.cluster.local.")),
        Record("_http._tcp." + QNAME, 5, SRV(10, 20, 8080, "pod-1." + QNAME)),
        Record(QNAME, 5, MX(10, "mail.example.")),
        Record(QNAME, 5, TXT(("v=1", "caf\u00e9"))),
        SOA_RECORD,
    )
    data = make_query(QNAME, 255)
    out = encode_reply(decode_query(data), Reply(answer=records), max_size=65535)
    decoded = decode_reply(out)
    assert decoded.answer == records
    split = Record(QNAME, 5, TXT((long_text,)))
    out = encode_reply(decode_query(data), Reply(answer=(split,)), max_size=65535)
    assert decode_reply(out).answer == (Record(QNAME, 5, TXT(("x" * 255, "x" * 45))),)


def test_owner_names_in_other_case_point_into_the_question_and_keep_their_labels() -> None:
    # RFC 4343: suffixes match case-insensitively; labels not compressed keep their case.
    data = make_query(QNAME)  # svc1.testns.svc.cluster.local: "svc" sits at 12 + 5 + 7 = 24
    record = Record("Other.SVC.Cluster.local.", 5, A(IPv4Address("10.0.0.2")))
    out = encode_reply(decode_query(data), Reply(answer=(record,)), max_size=512)
    assert out[len(data) :].startswith(b"\x05Other\xc0\x18\x00\x01")


def test_names_first_written_past_16k_are_never_pointer_targets() -> None:
    # RFC 1035 §4.1.4: a pointer holds 14 bits, so a name written at offset >= 0x4000 can
    # only be repeated in full. 1100 A records of 16 octets put the additional ones past it.
    answers = many_a(1100)
    pod = "pod-1.other.example."
    extra = tuple(Record(pod, 5, A(IPv4Address(f"10.9.0.{i}"))) for i in (1, 2))
    data = make_query(QNAME)
    out = encode_reply(decode_query(data), Reply(answer=answers, additional=extra), max_size=65535)
    assert len(out) > 0x4000
    assert out.count(wire_name(pod)) == 2  # written twice, not pointed to
    decoded = decode_reply(out)
    assert decoded.additional == extra
    assert decoded.answer == answers


def test_escaped_names_keep_their_label_boundaries() -> None:
    # RFC 1035 §5.1: "\." is a dot inside a label, "\255" an octet.
    name = "a\\.b.\\255x.example."
    data = make_query(QNAME)
    record = Record(QNAME, 5, CNAME(name))
    out = encode_reply(decode_query(data), Reply(answer=(record,)), max_size=512)
    assert b"\x03a.b\x02\xffx\x07example\x00" in out
    assert decode_reply(out).answer == (record,)
    query = build_query(name, 1, qid=1, edns_payload=None)
    assert query[12:-4] == b"\x03a.b\x02\xffx\x07example\x00"


def test_error_reply_sets_ra_when_asked() -> None:
    reply = encode_error(make_query(QNAME), Rcode.REFUSED, ra=True)
    assert reply is not None
    assert header(reply)[1] == 0x8000 | 0x0100 | 0x0080 | Rcode.REFUSED


# ---- upstream replies: hostile input ends in FormatError ---------------------------------


def a_rr(rdata: bytes, *, ttl: int = 60, rtype: int = 1) -> bytes:
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def test_decode_reply_checks_rdlength() -> None:
    # RFC 1035 §3.4.1: A rdata is 4 octets; dnslib alone would read 4 and go on.
    bad = upstream_reply(
        "a.example.", 1, qid=1, rcode=0, answer=a_rr(b"\x01\x02\x03\x04\x00\x00"), an=1
    )
    with pytest.raises(FormatError, match="RDLENGTH"):
        decode_reply(bad)


def test_decode_reply_skips_types_it_does_not_know_even_with_empty_rdata() -> None:
    null = a_rr(b"", rtype=10)  # NULL with empty rdata: legal (RFC 1035 §3.3.10)
    good = a_rr(b"\x01\x02\x03\x04", ttl=30)
    data = upstream_reply("a.example.", 1, qid=1, rcode=0, answer=null + good, an=2)
    decoded = decode_reply(data)
    assert decoded.answer == (Record("a.example.", 30, A(IPv4Address("1.2.3.4"))),)
    assert decoded.min_ttl == 30


def test_decode_reply_pointer_cycle_is_a_format_error() -> None:
    # A question ending at offset 191, then an owner name whose pointer at 191 targets 192,
    # whose pointer targets 191 again.
    qname = b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x2d" + b"a" * 45 + b"\x00"
    head = struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0) + qname + b"\x00\x01\x00\x01"
    assert len(head) == 191
    data = head + b"\xc0\xc0\xbf" + struct.pack("!HHIH", 1, 1, 1, 4) + b"\x01\x02\x03\x04"
    with pytest.raises(FormatError):
        decode_reply(data)


def test_decode_reply_raises_only_format_error_on_mangled_bytes() -> None:
    rng = random.Random(20240611)
    records = (A_RECORD, Record(QNAME, 5, SRV(0, 1, 80, "pod." + QNAME)), SOA_RECORD)
    reply = Reply(answer=records[:2], authority=records[2:])
    base = encode_reply(decode_query(make_query(QNAME, opt=opt_rr())), reply, max_size=1232)
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        try:
            decode_reply(cut)
        except FormatError:
            pass


# ---- relaying: TTLs, the client's question, truncation -----------------------------------


def test_ttl_offsets_and_rewrite_leave_the_opt_alone() -> None:
    rr = a_rr(b"\x01\x02\x03\x04", ttl=300)
    opt = opt_rr(1232, do=True)
    head = struct.pack("!6H", 7, 0x8180, 1, 1, 0, 1)
    data = head + wire_name("a.example.") + b"\x00\x01\x00\x01" + rr + opt
    (offset,) = ttl_offsets(data)
    assert data[offset : offset + 4] == struct.pack("!I", 300)
    capped = rewrite_ttls(data, 0, cap=60)
    assert capped[offset : offset + 4] == struct.pack("!I", 60)
    assert capped[-11:] == opt  # the OPT's TTL field is its flags (RFC 6891 §6.1.3)
    aged = rewrite_ttls(capped, 25, offsets=(offset,))
    assert aged[offset : offset + 4] == struct.pack("!I", 35)
    assert rewrite_ttls(capped, 99)[offset : offset + 4] == b"\x00\x00\x00\x00"
    with pytest.raises(FormatError):
        ttl_offsets(data[:-3])


@settings(max_examples=300, deadline=None)
@given(
    ttls=st.lists(
        st.one_of(st.integers(0, 1200), st.integers(0, 2**32 - 1)), min_size=1, max_size=6
    ),
    cap=st.one_of(st.integers(1, 600), st.integers(1, 2**31 - 1)),
)
def test_cap_ttls_sets_each_ttl_to_at_most_the_cap(ttls: list[int], cap: int) -> None:
    # The forward cache stores a reply with every TTL capped at the entry's TTL (CoreDNS);
    # a TTL with the top bit set counts as 0 (RFC 2181 §8); the OPT's "TTL" is left alone.
    records = [a_rr(bytes((10, 0, 0, i)), ttl=ttl) for i, ttl in enumerate(ttls)]
    head = struct.pack("!6H", 7, 0x8180, 1, len(records), 0, 1)
    data = head + wire_name("a.example.") + b"\x00\x01\x00\x01" + b"".join(records) + opt_rr()
    scan = scan_reply(data)
    assert scan.max_ttl == max(ttls)
    assert scan.min_ttl == min(0 if t >= 2**31 else t for t in ttls)
    out = cap_ttls(data, cap, scan)
    expected = [min(0 if t >= 2**31 else t, cap) for t in ttls]
    assert [struct.unpack_from("!I", out, o)[0] for o in scan.ttl_offsets] == expected
    assert len(out) == len(data)
    assert out[-11:] == opt_rr()
    assert out == rewrite_ttls(data, 0, cap=cap)  # the general path agrees


def test_with_question_takes_the_clients_id_and_spelling() -> None:
    stored = upstream_reply(
        "www.example.com.", 1, qid=1, rcode=0, answer=a_rr(b"\x01\x02\x03\x04"), an=1
    )
    query = decode_query(make_query("WWW.Example.COM", qid=0x4242))
    out = with_question(stored, query)
    assert out[:2] == b"\x42\x42"
    assert out[2:12] == stored[2:12]
    assert out[12 : 12 + len(query.question_wire)] == query.question_wire
    assert out[12 + len(query.question_wire) :] == stored[12 + len(query.question_wire) :]
    with pytest.raises(FormatError):
        with_question(stored, decode_query(make_query("www.example.org")))
    with pytest.raises(FormatError):
        with_question(stored, decode_query(make_query("www.example.com", 28)))
    https = upstream_reply("www.example.com.", 65, qid=1, rcode=0)  # type 0x0041, "A"
    with pytest.raises(FormatError):  # must not match type 0x0061 through a case fold
        with_question(https, decode_query(make_query("www.example.com", 0x61)))


def test_truncate_for_replaces_an_oversized_reply_by_an_empty_tc_one() -> None:
    query = decode_query(make_query(QNAME, opt=opt_rr(700)))
    big = encode_reply(query, Reply(answer=many_a(60)), max_size=65535)
    assert truncate_for(query, big, max_size=len(big)) == big
    small = truncate_for(query, big, max_size=700)
    _, flags, qd, an, ns, ar = header(small)
    assert flags & 0x0200  # TC (RFC 1035 §4.2.1)
    assert (qd, an, ns, ar) == (1, 0, 0, 1)  # the question and our OPT only
    assert small[12 : 12 + len(query.question_wire)] == query.question_wire


# ---- skip_name walks names exactly as read_name reads them ----------------------------------

_NAME_PIECES = st.one_of(
    st.binary(min_size=1, max_size=70).map(lambda b: bytes((min(len(b), 63),)) + b[:63]),
    st.integers(0, 0x3FFF).map(lambda t: (0xC000 | t).to_bytes(2, "big")),  # a pointer
    st.sampled_from([b"\x00", b"\x40", b"\x80", b"\x3f"]),  # end, reserved types, long label
)


@settings(max_examples=2000, deadline=None)
@given(
    head=st.lists(_NAME_PIECES, max_size=6).map(b"".join),
    name=st.lists(_NAME_PIECES, max_size=8).map(b"".join),
)
def test_skip_name_ends_where_read_name_ends_or_fails_as_it_fails(head: bytes, name: bytes) -> None:
    data = head + name
    try:
        expected: int | None = read_name(data, len(head), pointers=True)[1]
    except FormatError:
        expected = None
    try:
        got: int | None = skip_name(data, len(head))
    except FormatError:
        got = None
    assert got == expected


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=63), st.text("abcXYZ019-_", min_size=1).map(str.encode)
        ),
        max_size=5,
    )
)
def test_names_as_text_are_escaped_label_by_label(labels: list[bytes]) -> None:
    # RFC 1035 §5.1: "." and "\\" escaped, other non-printable octets as \\DDD; plain
    # names (the common case) take a shortcut that must give the same text.
    expected = "".join(_label_text(label) + "." for label in labels) if labels else "."
    assert labels_to_text(labels) == expected
