"""The query decoder: client bytes -> `Query`, the boundary for hostile input.

`decode_query` is hand-written, not dnslib's parser, because it is the first thing every
packet from the network meets and the slow path's first step. dnslib's parser is lenient
where it matters: of the 21 FORMERR packets in tests/data/hostile/packets.txt,
`dnslib.DNSRecord.parse` accepts 10 (QDCOUNT 0, two questions, a pointer into the header,
a 64-octet label, a 256-octet name, trailing bytes, a repeated OPT, an OPT in the
authority section), never checks that an rdata parser used exactly RDLENGTH octets (an A
record with RDLENGTH 6 parses as a plain A), yet rejects names with non-UTF-8 octets
(legal in DNS); and a two-pointer cycle (a pointer at offset 191 to 192 and back) ends in
RecursionError after ~3 ms. Ours rejects all of these in one pass, raising only
`QueryError`/`FormatError`, and costs a few microseconds.

What it decides (docs/rules.md, "kdns's own choices", Protocol; `kdns.handler` applies it):

* A packet with QR=1 is never answered; shorter than a header: dropped.
* Opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1).
* QDCOUNT != 1, malformed names, lying counts, trailing bytes, a repeated OPT or an OPT
  outside the additional section or not owned by the root: FORMERR (RFC 6891 §6.1.1).

The question is kept as received (`Query.question_wire`): the reply repeats it byte for
byte, 0x20 spelling included (docs/rules.md D4). Pure: no sockets, no asyncio, no logging,
no dnslib.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kdns.dns.records import Question, Rcode
from kdns.dns.wire.common import (
    DO,
    FLAG_CD,
    FLAG_QR,
    FLAG_RD,
    HEADER,
    TYPE_OPT,
    FormatError,
    QueryError,
    labels_to_text,
    name_to_wire,
    read_name,
    skip_rr,
)

# Query and Edns are values, never changed once decoded (`dataclasses.replace` makes a
# changed copy), but not frozen dataclasses: every query off the fast path makes them,
# and a frozen dataclass's constructor costs several times a plain one's (1.4 us for a
# Query, against 0.2 positionally). Their `__init__`s are written out (`init=False`):
# compiled, the one `dataclass` generates stays interpreted Python, about 9x as slow as a
# compiled one (0.45 against 0.05 us for eleven fields); `repr`, `==` and
# `dataclasses.replace` still come from `dataclass`.


@dataclass(init=False)
class Edns:
    """The query's OPT pseudo-record (RFC 6891 §6.1.2)."""

    payload: int  # as sent; the handler treats values below 512 as 512 (§6.2.5)
    do: bool  # DNSSEC OK (RFC 3225)
    version: int
    has_options: bool

    def __init__(self, payload: int, do: bool, version: int, has_options: bool) -> None:
        self.payload = payload
        self.do = do
        self.version = version
        self.has_options = has_options


@dataclass(init=False)
class Query:
    id: int
    opcode: int
    flags: int  # the raw 16-bit flags word
    question: Question  # qname as spelled, escaped presentation form, absolute
    qclass: int
    question_wire: bytes  # the question section's bytes exactly as received
    edns: Edns | None
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    def __init__(
        self,
        id: int,
        opcode: int,
        flags: int,
        question: Question,
        qclass: int,
        question_wire: bytes,
        edns: Edns | None,
        qdcount: int,
        ancount: int,
        nscount: int,
        arcount: int,
    ) -> None:
        self.id = id
        self.opcode = opcode
        self.flags = flags
        self.question = question
        self.qclass = qclass
        self.question_wire = question_wire
        self.edns = edns
        self.qdcount = qdcount
        self.ancount = ancount
        self.nscount = nscount
        self.arcount = arcount

    @property
    def rd(self) -> bool:
        return bool(self.flags & FLAG_RD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & FLAG_CD)

    @property
    def qname_wire(self) -> bytes:
        return self.question_wire[:-4]


def _parse_opt(data: bytes, name_offset: int, rclass: int, ttl: int, rd: int, rdlen: int) -> Edns:
    if data[name_offset] != 0:
        raise FormatError("OPT owner is not the root (RFC 6891 §6.1.2)")
    pos, end = rd, rd + rdlen
    while pos < end:  # options: code, length, data (RFC 6891 §6.1.2)
        if pos + 4 > end:
            raise FormatError("truncated EDNS option")
        olen = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + olen
        if pos > end:
            raise FormatError("EDNS option runs past the OPT rdata")
    # (payload, do, version, has_options), positionally: see the note above Edns.
    return Edns(rclass, bool(ttl & DO), (ttl >> 16) & 0xFF, rdlen > 0)


def decode_query(data: bytes) -> Query:
    """Parse a query. Raises QueryError (rcode None = drop) or FormatError, saying why."""
    if len(data) < 12:
        raise QueryError("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data, 0)
    if flags & FLAG_QR:
        raise QueryError("QR=1: a response, never answered")
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        raise QueryError(f"opcode {opcode} is not QUERY", Rcode.NOTIMP)
    if qd != 1:
        raise FormatError(f"QDCOUNT is {qd}, not 1")
    labels, pos = read_name(data, 12, pointers=False)
    if pos + 4 > len(data):
        raise FormatError("question runs past the end")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    qend = pos + 4
    edns: Edns | None = None
    offset = qend
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            rtype, rclass, ttl, rd, rdlen, nxt = skip_rr(data, offset)
            if rtype == TYPE_OPT:
                if section != 3:
                    raise FormatError("OPT outside the additional section")
                if edns is not None:
                    raise FormatError("more than one OPT (RFC 6891 §6.1.1)")
                edns = _parse_opt(data, offset, rclass, ttl, rd, rdlen)
            offset = nxt
    if offset != len(data):
        raise FormatError(f"{len(data) - offset} bytes after the last record")
    # (id, opcode, flags, question, qclass, question_wire, edns, qdcount, ancount,
    # nscount, arcount), positionally: see the note above Edns.
    question = Question(labels_to_text(labels), qtype)
    return Query(qid, opcode, flags, question, qclass, data[12:qend], edns, qd, an, ns, ar)


def with_qname(data: bytes, query: Query, name: str) -> bytes:
    """The query `data` (decoded as `query`) asking `name` instead: the same header, type,
    class and EDNS, for a plugin that asks the rest of its chain another name on the
    client's behalf (`autopath`). The question sits at offset 12 without pointers (the
    decoder refuses others), so only its name changes. Raises ValueError for a name that
    has no wire form (a label over 63 octets, a name over 255)."""
    return data[:12] + name_to_wire(name) + data[12 + len(query.qname_wire) :]
