"""Codec-free views of a message: mnemonics, header flags, RR boundaries and pointers."""

from __future__ import annotations

import dnslib
import pytest

from kdns.dns.message import (
    LayoutError,
    class_name,
    first_moved,
    header_flags,
    movable_from,
    parse_layout,
    permute_answer,
    rcode_text,
    type_name,
)

HEADER_1Q_2AN = b"\x00\x07\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
QUESTION = b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"  # offsets 12..32
A_FIXED = b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04"


def message(*records: str, qname: str = "example.org.", qtype: str = "A") -> bytes:
    reply = dnslib.DNSRecord.question(qname, qtype).reply()
    for zone in records:
        reply.add_answer(*dnslib.RR.fromZone(zone))
    return bytes(reply.pack())


@pytest.mark.parametrize(
    ("number", "text"), [(1, "A"), (28, "AAAA"), (65, "HTTPS"), (252, "AXFR"), (65280, "TYPE65280")]
)
def test_type_name(number: int, text: str) -> None:
    assert type_name(number) == text  # RFC 3597 §5 for unknown types


@pytest.mark.parametrize(("number", "text"), [(1, "IN"), (3, "CH"), (255, "ANY"), (9, "CLASS9")])
def test_class_name(number: int, text: str) -> None:
    assert class_name(number) == text


@pytest.mark.parametrize(
    ("number", "text"), [(0, "NOERROR"), (3, "NXDOMAIN"), (16, "BADVERS"), (12, "12")]
)
def test_rcode_text(number: int, text: str) -> None:
    assert rcode_text(number) == text


def test_header_flags_in_coredns_order() -> None:
    assert header_flags(b"\x00\x00\x87\xf0" + bytes(8)) == "qr,aa,tc,rd,ra,z,ad,cd"
    assert header_flags(b"\x00\x00\x81\x80" + bytes(8)) == "qr,rd,ra"
    assert header_flags(bytes(12)) == ""


def test_layout_of_an_answer_with_names_in_rdata() -> None:
    wire = message(
        "example.org. 60 IN MX 10 mail.example.org.",
        "example.org. 60 IN SOA ns.example.org. admin.example.org. 1 2 3 4 5",
        qtype="MX",
    )
    layout = parse_layout(wire)
    assert layout.question_end == 12 + 13 + 4
    assert [rr.rtype for rr in layout.answer] == [15, 6]
    assert layout.answer[0].start == layout.question_end
    assert layout.answer[1].start == layout.answer[0].end
    assert layout.answer[1].end == len(wire)
    # every name after the question ends in a pointer to example.org. at offset 12
    assert (layout.answer[0].rdata + 2 + 5, 12) in layout.pointers  # MX: "mail" + pointer
    assert sum(1 for _, target in layout.pointers if target == 12) == 5


def test_the_extended_rcode_comes_from_the_opt() -> None:
    reply = dnslib.DNSRecord.question("example.org.", "A").reply()
    reply.add_ar(dnslib.EDNS0(udp_len=1232, ext_rcode=1))
    wire = bytes(reply.pack())
    assert parse_layout(wire).extended_rcode(wire) == 16  # RFC 6891 §6.1.3


@pytest.mark.parametrize(
    "wire",
    [
        HEADER_1Q_2AN[:6] + b"\x00\x00" + HEADER_1Q_2AN[8:] + b"\x03www",  # name cut short
        HEADER_1Q_2AN + QUESTION + b"\xc0\x0d" + A_FIXED + b"\xc0\x00\x02\x01",  # into a label
        HEADER_1Q_2AN + QUESTION + b"\xc0\x40" + A_FIXED + b"\xc0\x00\x02\x01",  # forward
        HEADER_1Q_2AN + QUESTION + b"\x80\x00" + A_FIXED + b"\xc0\x00\x02\x01",  # reserved
        HEADER_1Q_2AN + QUESTION + b"\xc0\x0c" + A_FIXED + b"\xc0\x00",  # rdata cut short
    ],
    ids=["cut-short", "pointer-into-label", "forward-pointer", "reserved-label", "short-rdata"],
)
def test_messages_it_cannot_vouch_for_are_rejected(wire: bytes) -> None:
    with pytest.raises(LayoutError):
        parse_layout(wire)


def test_a_pointer_to_a_label_boundary_inside_a_name_is_accepted() -> None:
    owner = b"\xc0\x10"  # "example.org." inside the question's www.example.org.
    record = owner + A_FIXED + b"\xc0\x00\x02\x01"
    wire = HEADER_1Q_2AN[:7] + b"\x01" + HEADER_1Q_2AN[8:] + QUESTION + record
    assert parse_layout(wire).pointers == ((33, 16),)


def test_permute_answer_wants_a_permutation() -> None:
    wire = message("example.org. 60 IN A 192.0.2.1", "example.org. 60 IN A 192.0.2.2")
    layout = parse_layout(wire)
    with pytest.raises(ValueError, match="not a permutation"):
        permute_answer(wire, layout, [0, 0])
    assert permute_answer(wire, layout, [0, 1]) is wire
    swapped = permute_answer(wire, layout, [1, 0])
    assert swapped is not None
    assert [str(rr.rdata) for rr in dnslib.DNSRecord.parse(swapped).rr] == [
        "192.0.2.2",
        "192.0.2.1",
    ]


def test_records_can_move_only_when_nothing_points_into_them() -> None:
    wire = message(
        "www.example.org. 60 IN CNAME web.example.org.",
        "web.example.org. 60 IN A 192.0.2.1",
        "web.example.org. 60 IN A 192.0.2.2",
        qname="www.example.org.",
    )
    layout = parse_layout(wire)
    assert movable_from(layout, 1)  # the addresses' owners point into the CNAME
    assert not movable_from(layout, 0)
    assert permute_answer(wire, layout, [1, 0, 2]) is None
    assert first_moved([0, 2, 1]) == 1
    assert first_moved([0, 1, 2]) == 3
