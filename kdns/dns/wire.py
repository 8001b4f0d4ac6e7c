"""The DNS wire format: query bytes -> `Query`, `Reply` -> reply bytes, and upstream-reply checks.

Owns every byte-level rule: header flags, the question echo (0x20 case kept, RFC 1035
§4.1.2 / D4), name compression (RFC 1035 §4.1.4), EDNS (RFC 6891), truncation (RFC 1035
§4.2.1, RFC 2181 §9) and the strict parsing of hostile input. Records are written from
their typed rdata, never by re-parsing text. Pure: no sockets, no asyncio, no logging.

The parser and encoder are hand-written: they are small, hostile input must end in a
`FormatError` (never in some other exception from a library), and the fast path needs
replies whose names point into the question. dnslib (allowed only here) is used for
`describe()`, a dig-like rendering of any message for debug logs and test failures.

Decisions (documented here, applied by `kdns.handler`):

* A packet with QR=1 is never answered; shorter than a header: dropped.
* Opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1), question echoed when parsable.
* QDCOUNT != 1, malformed names, lying counts, trailing bytes, a repeated OPT or an OPT
  outside the additional section or not owned by the root: FORMERR (RFC 6891 §6.1.1).
* QCLASS other than IN (CH, HS, ANY, ...): REFUSED: kdns serves data of class IN only.
* RA is set when the server offers recursion, i.e. an upstream is configured (RFC 1035
  §4.1.1: RA says whether recursive service is available); the handler passes it in.
* EDNS version > 0: BADVERS with no records (RFC 6891 §6.1.3); our OPT carries version 0.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import dnslib

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
    RType,
)

# Our advertised EDNS UDP payload (DNS flag day 2020 recommendation).
EDNS_PAYLOAD = 1232
BADVERS = 16  # RFC 6891 §9: extended rcode 16
CLASS_IN = 1
MAX_NAME = 255  # RFC 1035 §3.1: a name is at most 255 octets on the wire
MAX_LABEL = 63

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
_FLAG_RA = 0x0080
_FLAG_CD = 0x0010
_DO = 0x8000  # RFC 3225: in the OPT TTL's low 16 bits


class QueryError(Exception):
    """A query kdns will not answer normally: `rcode` says how to reply, None = drop."""

    rcode: Rcode | None = None

    def __init__(self, why: str, rcode: Rcode | None = None) -> None:
        super().__init__(why)
        self.rcode = rcode


class FormatError(QueryError):
    """Malformed bytes; answered FORMERR when the header is readable (RFC 1035 §4.1.1)."""

    def __init__(self, why: str) -> None:
        super().__init__(why, Rcode.FORMERR)


@dataclass(frozen=True, slots=True)
class Edns:
    """The query's OPT pseudo-record (RFC 6891 §6.1.2)."""

    payload: int  # as sent; the handler treats values below 512 as 512 (§6.2.5)
    do: bool  # DNSSEC OK (RFC 3225)
    version: int
    has_options: bool


@dataclass(frozen=True, slots=True)
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

    @property
    def rd(self) -> bool:
        return bool(self.flags & _FLAG_RD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & _FLAG_CD)

    @property
    def qname_wire(self) -> bytes:
        return self.question_wire[:-4]


@dataclass(frozen=True, slots=True)
class DecodedReply:
    """An upstream reply, reduced to what the forwarder and the ExternalName chase use."""

    id: int
    flags: int
    rcode: int  # including the extended bits from an OPT
    question: Question | None
    qclass: int
    answer: tuple[Record, ...]  # records of class IN whose type records.py knows
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    min_ttl: int | None  # over every answer RR of class IN, whatever its type
    soa_negative_ttl: int | None  # min(SOA TTL, SOA MINIMUM) of the authority SOA (RFC 2308 §5)


# ---- names ---------------------------------------------------------------------------------


_PLAIN_LABEL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _label_text(label: bytes) -> str:
    if _PLAIN_LABEL.issuperset(label):
        return label.decode("ascii")
    out = []
    for b in label:
        if b in (0x2E, 0x5C):  # "." and "\" are escaped to keep label boundaries
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def labels_to_text(labels: list[bytes]) -> str:
    """Presentation form, absolute: `a.b.` ("." for the root), with RFC 1035 §5.1 escapes."""
    if not labels:
        return "."
    return "".join(_label_text(label) + "." for label in labels)


@functools.lru_cache(maxsize=8192)
def name_to_wire(name: str) -> bytes:
    """Wire form of an absolute or relative-to-root presentation name (escapes honoured)."""
    if name in (".", ""):
        return b"\x00"
    labels: list[bytes] = []
    cur = bytearray()
    i, n = 0, len(name)
    while i < n:
        c = name[i]
        if c == "\\":
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit():
                value = int(digits)
                if value > 255:
                    raise ValueError(f"bad escape in {name!r}")
                cur.append(value)
                i += 4
                continue
            if i + 1 >= n:
                raise ValueError(f"dangling escape in {name!r}")
            cur.extend(name[i + 1].encode("latin-1"))
            i += 2
            continue
        if c == ".":
            if not cur:
                raise ValueError(f"empty label in {name!r}")
            labels.append(bytes(cur))
            cur = bytearray()
        else:
            cur.extend(c.encode("latin-1"))
        i += 1
    if cur:
        labels.append(bytes(cur))
    wire = bytearray()
    for label in labels:
        if len(label) > MAX_LABEL:
            raise ValueError(f"label longer than 63 octets in {name!r}")
        wire.append(len(label))
        wire.extend(label)
    wire.append(0)
    if len(wire) > MAX_NAME:
        raise ValueError(f"name longer than 255 octets: {name!r}")
    return bytes(wire)


def _read_name(data: bytes, offset: int, *, pointers: bool) -> tuple[list[bytes], int]:
    """Labels of the name at `offset` and the offset just after it (RFC 1035 §4.1.4).

    Pointers must point strictly before the name part that holds them, which rules out
    loops and forward references; the expanded name must fit 255 octets.
    """
    labels: list[bytes] = []
    total = 1
    end = -1
    pos = offset
    limit = offset  # a pointer must target an offset below this
    n = len(data)
    while True:
        if pos >= n:
            raise FormatError("name runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if not pointers:
                raise FormatError("compression pointer where none may be")
            if pos + 1 >= n:
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit:
                raise FormatError("compression pointer loops or points forward")
            limit = target
            pos = target
            continue
        if kind:
            raise FormatError(f"reserved label type 0x{kind:02x}")
        if length == 0:
            break
        if pos + 1 + length > n:
            raise FormatError("label runs past the end of the message")
        total += length + 1
        if total > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return labels, (end if end >= 0 else pos + 1)


# ---- queries -------------------------------------------------------------------------------


def _skip_rr(data: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
    """Parse one RR header: (type, class, ttl, rdata offset, rdlength, next offset)."""
    _, pos = _read_name(data, offset, pointers=True)
    if pos + 10 > len(data):
        raise FormatError("resource record header runs past the end")
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
    if pos + 10 + rdlen > len(data):
        raise FormatError("rdata runs past the end")
    return rtype, rclass, ttl, pos + 10, rdlen, pos + 10 + rdlen


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
    return Edns(
        payload=rclass,
        do=bool(ttl & _DO),
        version=(ttl >> 16) & 0xFF,
        has_options=rdlen > 0,
    )


def decode_query(data: bytes) -> Query:
    """Parse a query. Raises QueryError (rcode None = drop) or FormatError, saying why."""
    if len(data) < 12:
        raise QueryError("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data, 0)
    if flags & _FLAG_QR:
        raise QueryError("QR=1: a response, never answered")
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        raise QueryError(f"opcode {opcode} is not QUERY", Rcode.NOTIMP)
    if qd != 1:
        raise FormatError(f"QDCOUNT is {qd}, not 1")
    labels, pos = _read_name(data, 12, pointers=False)
    if pos + 4 > len(data):
        raise FormatError("question runs past the end")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    qend = pos + 4
    edns: Edns | None = None
    offset = qend
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            rtype, rclass, ttl, rd, rdlen, nxt = _skip_rr(data, offset)
            if rtype == RType.OPT:
                if section != 3:
                    raise FormatError("OPT outside the additional section")
                if edns is not None:
                    raise FormatError("more than one OPT (RFC 6891 §6.1.1)")
                edns = _parse_opt(data, offset, rclass, ttl, rd, rdlen)
            offset = nxt
    if offset != len(data):
        raise FormatError(f"{len(data) - offset} bytes after the last record")
    return Query(
        id=qid,
        opcode=opcode,
        flags=flags,
        question=Question(labels_to_text(labels), qtype),
        qclass=qclass,
        question_wire=data[12:qend],
        edns=edns,
        qdcount=qd,
        ancount=an,
        nscount=ns,
        arcount=ar,
    )


# ---- replies -------------------------------------------------------------------------------


class _Writer:
    """A reply under construction, with a compression table (RFC 1035 §4.1.4)."""

    __slots__ = ("buf", "names")

    def __init__(self, head: bytes, qname_wire: bytes | None) -> None:
        self.buf = bytearray(head)
        self.names: dict[bytes, int] = {}
        if qname_wire is not None:
            # The question sits at offset 12: its suffixes are pointer targets, so answer
            # owner names echo the client's spelling (D4, as CoreDNS does).
            self._register(qname_wire.lower(), 12)

    def _register(self, lower: bytes, at: int, upto: int | None = None) -> None:
        """Remember the suffixes of `lower` (a whole lower-case wire name) starting before
        `upto`, the first one written at offset `at`."""
        pos = 0
        names = self.names
        stop = len(lower) - 1 if upto is None else upto
        while pos < stop and at + pos < 0x4000:
            key = lower[pos:]
            if key not in names:
                names[key] = at + pos
            pos += lower[pos] + 1

    def name(self, wire: bytes, *, compress: bool = True) -> None:
        buf = self.buf
        lower = wire.lower()
        start = len(buf)
        if compress:
            names = self.names
            pos = 0
            while wire[pos] != 0:
                at = names.get(lower[pos:])
                if at is not None:
                    buf += wire[:pos]
                    buf += bytes((0xC0 | (at >> 8), at & 0xFF))
                    self._register(lower, start, pos)
                    return
                pos += wire[pos] + 1
        self._register(lower, start)
        buf += wire

    def record(self, record: Record) -> None:
        buf = self.buf
        self.name(name_to_wire(record.name))
        rdata = record.rdata
        rtype = record.rtype
        head = len(buf)
        buf += _RR_FIXED.pack(rtype, CLASS_IN, record.ttl & 0xFFFFFFFF, 0)
        start = len(buf)
        if isinstance(rdata, A | AAAA):
            buf += rdata.address.packed
        elif isinstance(rdata, CNAME | PTR | NS):
            self.name(name_to_wire(rdata.target))
        elif isinstance(rdata, SRV):
            buf += struct.pack("!HHH", rdata.priority, rdata.weight, rdata.port)
            # RFC 2782: "name compression is not to be used for this field".
            self.name(name_to_wire(rdata.target), compress=False)
        elif isinstance(rdata, MX):
            buf += struct.pack("!H", rdata.preference)
            self.name(name_to_wire(rdata.exchange))
        elif isinstance(rdata, TXT):
            for text in rdata.strings or ("",):
                raw = text.encode("utf-8")
                for i in range(0, max(len(raw), 1), 255):  # character-strings of <= 255
                    chunk = raw[i : i + 255]
                    buf.append(len(chunk))
                    buf += chunk
        else:  # SOA
            self.name(name_to_wire(rdata.mname))
            self.name(name_to_wire(rdata.rname))
            buf += struct.pack(
                "!IIIII", rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum
            )
        struct.pack_into("!H", buf, head + 8, len(buf) - start)


def _opt(query: Query, ext_rcode: int) -> bytes:
    assert query.edns is not None
    ttl = (ext_rcode << 24) | (_DO if query.edns.do else 0)  # RFC 3225: DO copied; version 0
    return b"\x00" + _RR_FIXED.pack(RType.OPT, EDNS_PAYLOAD, ttl, 0)


def _flags(query: Query, rcode: int, *, aa: bool, ra: bool) -> int:
    flags = _FLAG_QR | (query.opcode << 11) | (query.flags & (_FLAG_RD | _FLAG_CD))
    if aa:
        flags |= _FLAG_AA
    if ra:
        flags |= _FLAG_RA
    return flags | (rcode & 0xF)


def encode_reply(query: Query, reply: Reply, *, max_size: int, ra: bool = False) -> bytes:
    """The reply to `query`, truncated to `max_size` bytes.

    Truncation keeps the longest prefix of answer, then authority, then additional records
    that fits (so additional records go first, then authority, then answers from the end),
    keeps the OPT and sets TC (RFC 1035 §4.2.1; like CoreDNS, TC whenever a record had to go).
    """
    rcode = int(reply.rcode)
    ext = rcode >> 4
    opt = _opt(query, ext) if query.edns is not None else b""
    records = (*reply.answer, *reply.authority, *reply.additional)
    w = _Writer(b"\x00" * 12, query.qname_wire)
    w.buf += query.question_wire
    room = max_size - len(opt)
    ends: list[int] = []
    for record in records:
        w.record(record)
        ends.append(len(w.buf))
        if len(w.buf) > room:
            break
    kept = len(ends)
    while kept and ends[kept - 1] > room:
        kept -= 1
    truncated = kept < len(records)
    body = w.buf[: ends[kept - 1]] if kept else w.buf[: 12 + len(query.question_wire)]
    n_an = min(kept, len(reply.answer))
    n_ns = min(max(kept - len(reply.answer), 0), len(reply.authority))
    n_ar = max(kept - len(reply.answer) - len(reply.authority), 0)
    flags = _flags(query, rcode, aa=reply.authoritative, ra=ra)
    if truncated:
        flags |= _FLAG_TC
    _HEADER.pack_into(body, 0, query.id, flags, 1, n_an, n_ns, n_ar + (1 if opt else 0))
    body += opt
    return bytes(body)


def encode_badvers(query: Query, *, ra: bool = False) -> bytes:
    """RFC 6891 §6.1.3: a query with an EDNS version we do not speak gets BADVERS."""
    assert query.edns is not None
    flags = _flags(query, BADVERS, aa=False, ra=ra)
    head = _HEADER.pack(query.id, flags, 1, 0, 0, 1)
    return head + query.question_wire + _opt(query, BADVERS >> 4)


def encode_truncated(query: Query, upstream_reply: bytes, *, ra: bool = True) -> bytes:
    """An empty TC=1 reply standing in for an upstream reply too big for the client's limit:
    the client retries over TCP (RFC 1035 §4.2.1). Flags and rcode are upstream's."""
    flags = (upstream_reply[2] << 8 | upstream_reply[3]) if len(upstream_reply) >= 4 else 0
    flags = (flags & ~(_FLAG_RD | _FLAG_CD)) | (query.flags & (_FLAG_RD | _FLAG_CD))
    flags |= _FLAG_QR | _FLAG_TC | (_FLAG_RA if ra else 0)
    opt = _opt(query, 0) if query.edns is not None else b""
    head = _HEADER.pack(query.id, flags, 1, 0, 0, 1 if opt else 0)
    return head + query.question_wire + opt


def encode_error(data: bytes, rcode: Rcode) -> bytes | None:
    """A bare error reply (FORMERR, NOTIMP, REFUSED, SERVFAIL) to raw query bytes.

    None (drop) when the header is unreadable or QR=1. The first question is echoed when
    it parses; otherwise QDCOUNT is 0.
    """
    if len(data) < 12 or data[2] & 0x80:
        return None
    qid, flags, qd, *_ = _HEADER.unpack_from(data, 0)
    question = b""
    if qd >= 1:
        try:
            _, pos = _read_name(data, 12, pointers=False)
            if pos + 4 <= len(data):
                question = data[12 : pos + 4]
        except FormatError:
            pass
    out_flags = _FLAG_QR | (flags & (0x7800 | _FLAG_RD | _FLAG_CD)) | (int(rcode) & 0xF)
    return _HEADER.pack(qid, out_flags, 1 if question else 0, 0, 0, 0) + question


# ---- upstream replies (for kdns.forward and the ExternalName chase) -------------------------


def _rdata(data: bytes, rtype: int, rd: int, rdlen: int) -> object | None:
    end = rd + rdlen

    def name_at(pos: int) -> tuple[str, int]:
        labels, nxt = _read_name(data, pos, pointers=True)
        if nxt > end:
            raise FormatError("name runs past its rdata")
        return labels_to_text(labels), nxt

    if rtype == RType.A:
        if rdlen != 4:
            raise FormatError("A rdata is not 4 octets")
        return A(IPv4Address(data[rd:end]))
    if rtype == RType.AAAA:
        if rdlen != 16:
            raise FormatError("AAAA rdata is not 16 octets")
        return AAAA(IPv6Address(data[rd:end]))
    if rtype in (RType.CNAME, RType.PTR, RType.NS):
        target, _ = name_at(rd)
        cls = {RType.CNAME: CNAME, RType.PTR: PTR, RType.NS: NS}[RType(rtype)]
        return cls(target)
    if rtype == RType.SRV:
        if rdlen < 7:
            raise FormatError("short SRV rdata")
        prio, weight, port = struct.unpack_from("!HHH", data, rd)
        target, _ = name_at(rd + 6)
        return SRV(prio, weight, port, target)
    if rtype == RType.MX:
        if rdlen < 3:
            raise FormatError("short MX rdata")
        (pref,) = struct.unpack_from("!H", data, rd)
        exchange, _ = name_at(rd + 2)
        return MX(pref, exchange)
    if rtype == RType.TXT:
        strings = []
        pos = rd
        while pos < end:
            ln = data[pos]
            if pos + 1 + ln > end:
                raise FormatError("TXT string runs past its rdata")
            strings.append(data[pos + 1 : pos + 1 + ln].decode("utf-8", "backslashreplace"))
            pos += 1 + ln
        return TXT(tuple(strings))
    if rtype == RType.SOA:
        mname, pos = name_at(rd)
        rname, pos = name_at(pos)
        if pos + 20 > end:
            raise FormatError("short SOA rdata")
        return SOA(mname, rname, *struct.unpack_from("!IIIII", data, pos))
    return None


def decode_reply(data: bytes) -> DecodedReply:
    """Parse a reply from an upstream. Raises FormatError (never anything else) if malformed."""
    try:
        return _decode_reply(data)
    except FormatError:
        raise
    except (ValueError, IndexError, struct.error) as exc:
        raise FormatError(f"malformed reply: {exc}") from None


def _decode_reply(data: bytes) -> DecodedReply:
    if len(data) < 12:
        raise FormatError("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data, 0)
    pos = 12
    question: Question | None = None
    qclass = 0
    for i in range(qd):
        labels, pos = _read_name(data, pos, pointers=True)
        if pos + 4 > len(data):
            raise FormatError("question runs past the end")
        qtype, qc = struct.unpack_from("!HH", data, pos)
        pos += 4
        if i == 0:
            question, qclass = Question(labels_to_text(labels), qtype), qc
    rcode = flags & 0xF
    sections: list[list[Record]] = [[], [], []]
    min_ttl: int | None = None
    soa_ttl: int | None = None
    for index, count in enumerate((an, ns, ar)):
        for _ in range(count):
            labels, _ = _read_name(data, pos, pointers=True)
            rtype, rclass, ttl, rd, rdlen, pos = _skip_rr(data, pos)
            if rtype == RType.OPT:
                rcode |= (ttl >> 24) << 4  # RFC 6891 §6.1.3: upper 8 bits of the rcode
                continue
            if rclass != CLASS_IN:
                continue
            if ttl & 0x80000000:  # RFC 2181 §8: a TTL with the top bit set is treated as 0
                ttl = 0
            if index == 0:
                min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
            rdata = _rdata(data, rtype, rd, rdlen)
            if rdata is None:
                continue
            if index == 1 and isinstance(rdata, SOA):
                neg = min(ttl, rdata.minimum)
                soa_ttl = neg if soa_ttl is None else min(soa_ttl, neg)
            sections[index].append(Record(labels_to_text(labels), ttl, rdata))  # type: ignore[arg-type]
    return DecodedReply(
        id=qid,
        flags=flags,
        rcode=rcode,
        question=question,
        qclass=qclass,
        answer=tuple(sections[0]),
        authority=tuple(sections[1]),
        additional=tuple(sections[2]),
        min_ttl=min_ttl,
        soa_negative_ttl=soa_ttl,
    )


def _question_key(data: bytes) -> tuple[int, int, bytes, int, int] | None:
    """(id, opcode, lower-case qname wire, qtype, qclass) of a message's first question."""
    if len(data) < 12:
        return None
    qid, flags, qd, *_ = _HEADER.unpack_from(data, 0)
    if qd != 1:
        return None
    try:
        labels, pos = _read_name(data, 12, pointers=True)
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


def reply_ttl(reply: bytes) -> tuple[int, int, bool]:
    """(rcode, seconds the reply may be cached, negative) for a forward cache.

    Positive: the smallest TTL of the answer records. Negative (NXDOMAIN, or NOERROR with
    no answer = NODATA): min(SOA TTL, SOA MINIMUM) of the authority SOA, or 0 without one
    (RFC 2308 §5: no SOA, do not cache). Other rcodes: 0. Raises FormatError if malformed.
    """
    decoded = decode_reply(reply)
    rcode = decoded.rcode
    if rcode == Rcode.NXDOMAIN or (rcode == Rcode.NOERROR and decoded.min_ttl is None):
        return rcode, decoded.soa_negative_ttl or 0, True
    if rcode == Rcode.NOERROR:
        return rcode, decoded.min_ttl or 0, False
    return rcode, 0, False


def with_id(reply: bytes, qid: int) -> bytes:
    """The same message with its ID replaced."""
    return qid.to_bytes(2, "big") + reply[2:]


def build_query(
    qname: str, qtype: int, *, qid: int, rd: bool = True, edns_payload: int | None = EDNS_PAYLOAD
) -> bytes:
    """A query of class IN; with a bare OPT advertising `edns_payload` unless None."""
    flags = _FLAG_RD if rd else 0
    opt = b""
    if edns_payload is not None:
        opt = b"\x00" + _RR_FIXED.pack(RType.OPT, edns_payload, 0, 0)
    head = _HEADER.pack(qid & 0xFFFF, flags, 1, 0, 0, 1 if opt else 0)
    return head + name_to_wire(qname) + struct.pack("!HH", qtype, CLASS_IN) + opt


def rcode_name(rcode: int) -> str:
    """The mnemonic of an rcode (CoreDNS label values), RCODEnn for unknown ones."""
    if rcode == BADVERS:
        return "BADVERS"
    try:
        return Rcode(rcode).name
    except ValueError:
        return f"RCODE{rcode}"


def describe(data: bytes) -> str:
    """A dig-like text rendering of a DNS message, for debug logs; never raises."""
    try:
        return str(dnslib.DNSRecord.parse(data))
    except Exception as exc:  # dnslib raises assorted errors on hostile input
        return f"<unparsable {len(data)}-byte message: {exc}>"
