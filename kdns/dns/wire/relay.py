"""Relaying upstream replies as bytes, for `kdns.upstream.forward`.

A forward cache hit must cost a copy and a few TTL writes, not a parse and a re-encode
(which would also change the upstream's bytes). These helpers work on raw messages:
`reply_matches` (RFC 5452 §9.1), `ttl_offsets` and `rewrite_ttls` (TTLs count down while
cached), `with_question` and `with_id` (the client's ID and 0x20 spelling),
`truncated`/`header_rcode` (header bits), `truncate_for` (the client's UDP limit), and for
the forwarder's hot path `question_key`/`answers` (the RFC 5452 match as two slice
compares) and `scan_reply` (everything the cache needs in one pass, no dnslib). They read
names with `read_name`, the strict reader of the query decoder, and raise only
`FormatError` on malformed bytes.

Pure: no sockets, no asyncio, no logging, no dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kdns.dns.records import Rcode
from kdns.dns.wire.common import (
    CLASS_IN,
    HEADER,
    TYPE_OPT,
    TYPE_SOA,
    FormatError,
    read_name,
    skip_name,
    skip_rr,
)
from kdns.dns.wire.encode import encode_truncated
from kdns.dns.wire.query import Query

_U32: Final = struct.Struct("!I")


def _question_key(data: bytes) -> tuple[int, int, bytes, int, int] | None:
    """(id, opcode, lower-case qname wire, qtype, qclass) of a message's first question."""
    if len(data) < 12:
        return None
    qid, flags, qd, *_ = HEADER.unpack_from(data, 0)
    if qd != 1:
        return None
    try:
        labels, pos = read_name(data, 12, pointers=True)
    except FormatError:
        return None
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    wire = b"".join(bytes((len(lab),)) + lab for lab in labels) + b"\x00"
    return qid, (flags >> 11) & 0xF, wire.lower(), qtype, qclass


def reply_matches(query: Query | bytes, reply: bytes) -> bool:
    """RFC 5452 §9.1: the reply is a response with the query's ID, opcode and question
    (name compared case-insensitively, type, class)."""
    if len(reply) < 12 or not reply[2] & 0x80:
        return False
    if isinstance(query, Query):
        want = (
            query.id,
            query.opcode,
            query.qname_wire.lower(),
            query.question.qtype,
            query.qclass,
        )
    else:
        got_q = _question_key(query)
        if got_q is None:
            return False
        want = got_q
    return _question_key(reply) == want


def question_key(query: Query) -> bytes:
    """The question a reply to `query` must carry, for `answers`: the name lower-cased,
    type and class as asked."""
    qwire = query.question_wire
    return qwire[:-4].lower() + qwire[-4:]


def answers(reply: bytes, qid: int, opcode: int, key: bytes) -> bool:
    """RFC 5452 §9.1 on the hot path: `reply` is a response with ID `qid`, the opcode and
    exactly the one question `key` (from `question_key`; the name compared
    case-insensitively). The first name of a message cannot be compressed, so the
    question's bytes are compared as they are; a reply that does compress it is no match."""
    end = 12 + len(key)
    if len(reply) < end or (reply[0] << 8 | reply[1]) != qid or reply[4:6] != b"\x00\x01":
        return False
    flags = reply[2]
    if not flags & 0x80 or (flags >> 3) & 0xF != opcode:
        return False
    # bytes.lower() is safe on a wire name (label lengths <= 63 sit below "A"), not on the
    # type and class, which are compared exactly.
    return reply[12 : end - 4].lower() == key[:-4] and reply[end - 4 : end] == key[-4:]


@dataclass(init=False)
class ReplyScan:
    """What the forward cache needs of a relayed reply, read in one pass (`scan_reply`).
    Read-only by use; not a frozen dataclass, whose constructor would cost a third of
    the scan (one per forwarded reply), and its `__init__` written out (compiled, the
    generated one stays interpreted: see the note above `Query`)."""

    rcode: int  # the header's 4 bits and an OPT's extended bits (RFC 6891 §6.1.3)
    truncated: bool
    answer_count: int
    ttl_offsets: tuple[int, ...]  # as `ttl_offsets`
    min_ttl: int | None  # over every record but the OPT, in every section
    max_ttl: int  # the largest TTL field as sent (0 without records; >= 2**31 if one is "negative")
    soa_negative_ttl: int | None  # min(SOA TTL, SOA MINIMUM) of authority SOAs (RFC 2308 §5)

    def __init__(
        self,
        rcode: int,
        truncated: bool,
        answer_count: int,
        ttl_offsets: tuple[int, ...],
        min_ttl: int | None,
        max_ttl: int,
        soa_negative_ttl: int | None,
    ) -> None:
        self.rcode = rcode
        self.truncated = truncated
        self.answer_count = answer_count
        self.ttl_offsets = ttl_offsets
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.soa_negative_ttl = soa_negative_ttl


_SOA_MIN_RDATA: Final = 22  # two one-octet names and five 32-bit fields


def scan_reply(reply: bytes) -> ReplyScan:
    """Read a relayed reply's rcode, TC bit, record TTLs and negative-caching TTL without
    decoding its records. Raises FormatError (only) if it is malformed."""
    if len(reply) < 12:
        raise FormatError("shorter than a DNS header")
    _, flags, qd, an, ns, ar = HEADER.unpack_from(reply, 0)
    pos = 12
    for _ in range(qd):
        pos = skip_name(reply, pos) + 4
        if pos > len(reply):
            raise FormatError("question runs past the end")
    rcode = flags & 0xF
    offsets: list[int] = []
    min_ttl: int | None = None
    max_ttl = 0
    negative: int | None = None
    authority = range(an, an + ns)
    for index in range(an + ns + ar):
        rtype, rclass, ttl, rdata, rdlen, end = skip_rr(reply, pos)
        if rtype == TYPE_OPT:
            rcode |= (ttl >> 24) << 4
            pos = end
            continue
        offsets.append(rdata - 6)
        if ttl > max_ttl:
            max_ttl = ttl
        if ttl & 0x80000000:  # RFC 2181 §8: treated as 0
            ttl = 0
        min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
        if rtype == TYPE_SOA and rclass == CLASS_IN and index in authority:
            if rdlen < _SOA_MIN_RDATA:
                raise FormatError("SOA rdata too short")
            (minimum,) = _U32.unpack_from(reply, end - 4)
            neg = min(ttl, minimum)
            negative = neg if negative is None else min(negative, neg)
        pos = end
    # (rcode, truncated, answer_count, ttl_offsets, min_ttl, max_ttl, soa_negative_ttl)
    return ReplyScan(rcode, bool(flags & 0x0200), an, tuple(offsets), min_ttl, max_ttl, negative)


def ttl_offsets(reply: bytes) -> tuple[int, ...]:
    """Where the TTL field of every record but the OPT sits in `reply` (RFC 1035 §4.1.3).

    Raises FormatError if the message is malformed; kept by the forward cache so a hit only
    rewrites these fields.
    """
    if len(reply) < 12:
        raise FormatError("shorter than a DNS header")
    _, _, qd, an, ns, ar = HEADER.unpack_from(reply, 0)
    pos = 12
    for _ in range(qd):
        pos = skip_name(reply, pos) + 4
        if pos > len(reply):
            raise FormatError("question runs past the end")
    offsets = []
    for _ in range(an + ns + ar):
        rtype, _, _, rdata, _, pos = skip_rr(reply, pos)
        if rtype != TYPE_OPT:  # the OPT's "TTL" is its extended rcode and flags
            offsets.append(rdata - 6)
    return tuple(offsets)


def rewrite_ttls(
    reply: bytes,
    elapsed: int,
    *,
    cap: int | None = None,
    offsets: Sequence[int] | None = None,
) -> bytes:
    """`reply` with every record's TTL set to max(0, min(TTL, cap) - elapsed): the TTL
    counts down while cached (RFC 1035 §4.1.3, RFC 2181 §8). `offsets` from `ttl_offsets`
    (computed when None). Raises FormatError if the message is malformed."""
    out = bytearray(reply)
    for offset in ttl_offsets(reply) if offsets is None else offsets:
        (ttl,) = _U32.unpack_from(out, offset)
        if ttl & 0x80000000:  # RFC 2181 §8: treated as 0
            ttl = 0
        if cap is not None:
            ttl = min(ttl, cap)
        _U32.pack_into(out, offset, max(0, ttl - elapsed))
    return bytes(out)


def cap_ttls(reply: bytes, cap: int, scan: ReplyScan) -> bytes:
    """`rewrite_ttls(reply, 0, cap=cap)` for a reply read by `scan_reply`, cheaper where the
    scan tells: `reply` itself when no TTL is above `cap`; every field set to `cap` in one
    join when none is below it (the forward cache's common case, a cap under every TTL the
    upstream sent; a "negative" TTL counts as 0, so it is never this case)."""
    if scan.max_ttl <= cap:
        return reply
    offsets = scan.ttl_offsets
    if scan.min_ttl is None or scan.min_ttl < cap:
        return rewrite_ttls(reply, 0, cap=cap, offsets=offsets)
    field = cap.to_bytes(4, "big")
    parts = []
    prev = 0
    for offset in offsets:
        parts.append(reply[prev:offset])
        parts.append(field)
        prev = offset + 4
    parts.append(reply[prev:])
    return b"".join(parts)


def with_question(reply: bytes, query: Query) -> bytes:
    """`reply` carrying the query's ID and its question bytes (the client's 0x20 spelling,
    RFC 4343 §4.1). The reply's question must be the query's: same name but for case (the
    query's has no pointers, so equal bytes mean an equal name), same type and class;
    raises FormatError otherwise."""
    qwire = query.question_wire
    name_end = 12 + len(qwire) - 4
    end = name_end + 4
    # bytes.lower() is safe on a wire name (label lengths <= 63 sit below "A"), not on the
    # type and class, which are compared exactly.
    if (
        len(reply) < end
        or reply[12:name_end].lower() != query.qname_wire.lower()
        or reply[name_end:end] != qwire[-4:]
    ):
        raise FormatError("the reply's question is not the query's")
    return query.id.to_bytes(2, "big") + reply[2:12] + qwire + reply[end:]


def with_id(reply: bytes, qid: int) -> bytes:
    """The same message with its ID replaced."""
    return qid.to_bytes(2, "big") + reply[2:]


def truncated(reply: bytes) -> bool:
    """The TC bit of a message's header (False when shorter than a header)."""
    return len(reply) >= 12 and bool(reply[2] & 0x02)


def header_rcode(reply: bytes) -> int:
    """The 4-bit rcode of a message's header (SERVFAIL when shorter than a header)."""
    return reply[3] & 0xF if len(reply) >= 12 else int(Rcode.SERVFAIL)


def truncate_for(query: Query, reply: bytes, *, max_size: int) -> bytes:
    """`reply` if it fits `max_size`, else an empty TC=1 copy (`encode_truncated`), so the
    client retries over TCP (RFC 7766 §5, RFC 6891 §6.2.5)."""
    if len(reply) <= max_size:
        return reply
    return encode_truncated(query, reply)
