"""The DNS wire format: query bytes -> `Query`, `Reply` -> reply bytes, upstream replies.

Owns every byte-level rule: header flags, the question echo (0x20 case kept, RFC 1035
§4.1.2 / D4), name compression (RFC 1035 §4.1.4), EDNS (RFC 6891), truncation (RFC 1035
§4.2.1, RFC 2181 §9), the strict parsing of hostile input, and the few byte operations the
forwarder needs to relay and cache upstream replies. Records are written from their typed
rdata, never by re-parsing text. Pure: no sockets, no asyncio, no logging. The only module
that imports dnslib.

What dnslib does (the library is the project's chosen wire codec):

* Encoding: every resource record of a reply: `dnslib.RR` framing (owner, type, class,
  TTL, RDLENGTH back-patched) and the rdata of each type from the typed records (`A`,
  `AAAA`, `CNAME`, `PTR`, `NS`, `MX`, `SRV`, `TXT`, `SOA` mapped by type), the OPT record
  (`dnslib.EDNS0`) and whole queries (`build_query`). dnslib writes SRV targets
  uncompressed itself (`encode_name_nocompress`, RFC 2782).
* Decoding upstream replies (`decode_reply`): the header, questions and the rdata of the
  types above, with dnslib's own parsers (`DNSHeader.parse`, `DNSQuestion.parse`,
  `A.parse`, `SRV.parse`, ...), converted to typed `Record`s.
* `describe()`: a dig-like rendering for debug logs and test failures.

What is hand-written here, and why:

* `decode_query`, the parser of client queries: it is the hostile-input boundary and the
  slow path's first step. dnslib's parser is lenient where it matters: of the 21 FORMERR packets in
  tests/data/hostile/packets.txt, `dnslib.DNSRecord.parse` accepts 10 (QDCOUNT 0, two
  questions, a pointer into the header, a 64-octet label, a 256-octet name, trailing bytes,
  a repeated OPT, an OPT in the authority section), never checks that an rdata parser used
  exactly RDLENGTH octets (an A record with RDLENGTH 6 parses as a plain A), yet rejects
  names with non-UTF-8 octets (legal in DNS); and a two-pointer cycle (a pointer at offset 191 to
  192 and back) ends in RecursionError after ~3 ms. Ours rejects all of these in one pass,
  raising only `QueryError`/`FormatError`, and costs a few microseconds.
* The reply's 12-byte header and question: the counts are known only after truncation, and
  the question must be the client's bytes verbatim (dnslib re-encodes a name from its text:
  `DNSLabel("a\\.b.")` splits the escaped dot into two labels and `caf\\233` becomes IDNA
  `xn--caf-dma`).
* Name compression (`_ReplyBuffer.encode_name`, overriding dnslib's): dnslib looks names up
  case-sensitively, so an answer owner would not point into a 0x20 mixed-case question, and
  it builds a pointer to any earlier offset by masking 14 bits, so a name first written past
  16 KiB (large TCP replies) gets a wrong pointer. Ours compares lower-case labels (RFC 4343)
  and never points past 0x3FFF. The fast path relies on owner names pointing into the
  question: its cached tail is valid for any spelling of the question.
* Truncation: dnslib's `DNSRecord.truncate()` drops every record; RFC 2181 §9 / CoreDNS
  keep what fits, so records are packed one by one and the first that does not fit ends
  the message.
* The upstream-reply record loop and name reading in `decode_reply`: `DNSRecord.parse`
  does not check RDLENGTH, refuses an empty rdata of any type (legal, e.g. NULL) and
  parses rdata of types we discard; the loop checks RDLENGTH and skips unknown types
  unparsed. dnslib's `decode_name` (also called by its rdata parsers) rejects non-UTF-8
  labels and recurses without bound on a pointer cycle, so `_ReplyReader` replaces it with
  the strict reader of `decode_query`.
* Relay helpers over raw bytes (`reply_matches`, `ttl_offsets`, `rewrite_ttls`,
  `with_question`, `with_id`, `truncate_for`): a forward cache hit must cost a copy and a
  few TTL writes, not a parse and a re-encode (which would also change the upstream's
  bytes); they reuse the strict name reader of `decode_query`.

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
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

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
_U32 = struct.Struct("!I")
_OPT_SIZE = 11  # root owner, type, class, TTL, RDLENGTH 0: our OPT has no options
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
    record_min_ttl: int | None  # over every RR of every section but the OPT (CoreDNS cache)
    answer_count: int  # ANCOUNT as sent

    @property
    def truncated(self) -> bool:
        return bool(self.flags & _FLAG_TC)


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


@functools.lru_cache(maxsize=1024)
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


# ---- replies (records packed by dnslib) ------------------------------------------------

_POINTER_LIMIT = 0x4000  # a compression pointer holds a 14-bit offset (RFC 1035 §4.1.4)


class _ReplyBuffer(dnslib.DNSBuffer):  # type: ignore[misc]
    """dnslib's message buffer with our compression (see the module docstring): suffixes
    are matched on lower-case labels, only offsets below 0x4000 are remembered.

    `names` maps a tuple of lower-case labels to the offset where that suffix was written;
    it is primed with the question's suffixes so answer owner names point into it (D4).
    """

    def __init__(self, head: bytes, qname_wire: bytes | None) -> None:
        super().__init__(head)
        self.offset = len(head)
        if qname_wire is not None:
            self.names = dict(_question_names(qname_wire.lower()))

    def _remember(self, keys: tuple[bytes, ...], labels: Sequence[bytes], at: int, n: int) -> None:
        """Record the suffixes starting at the first `n` labels, written from offset `at`."""
        names = self.names
        for i in range(n):
            if at >= _POINTER_LIMIT:
                return
            names.setdefault(keys[i:], at)
            at += len(labels[i]) + 1

    def encode_name(self, name: Any) -> None:
        labels: tuple[bytes, ...] = name.label
        keys: tuple[bytes, ...] = getattr(name, "kdns_keys", None) or tuple(
            label.lower() for label in labels
        )
        names = self.names
        start = self.offset
        for i in range(len(labels)):
            at = names.get(keys[i:])
            if at is not None:
                self.append(b"".join(bytes((len(label),)) + label for label in labels[:i]))
                self.append(bytes((0xC0 | (at >> 8), at & 0xFF)))
                self._remember(keys, labels, start, i)
                return
        self.append(b"".join(bytes((len(label),)) + label for label in labels) + b"\x00")
        self._remember(keys, labels, start, len(labels))


@functools.lru_cache(maxsize=512)
def _question_names(lower: bytes) -> tuple[tuple[tuple[bytes, ...], int], ...]:
    """The compression table entries of a question name written at offset 12: each suffix
    of its lower-case labels and where it starts (RFC 1035 §4.1.4)."""
    labels = _split(lower)
    out = []
    at = 12
    for i, label in enumerate(labels):
        out.append((labels[i:], at))
        at += len(label) + 1
    return tuple(out)


def _split(wire: bytes) -> tuple[bytes, ...]:
    """The labels of an uncompressed wire name (as `decode_query` accepted it)."""
    labels = []
    pos = 0
    while wire[pos]:
        labels.append(wire[pos + 1 : pos + 1 + wire[pos]])
        pos += wire[pos] + 1
    return tuple(labels)


@functools.lru_cache(maxsize=1024)
def _dns_name(name: str) -> Any:
    """A dnslib name from a presentation name, built from its labels: dnslib's own text
    parsing would apply IDNA and split escaped dots. Lower-case keys ride along."""
    label = dnslib.DNSLabel(_split(name_to_wire(name)))
    label.kdns_keys = tuple(part.lower() for part in label.label)
    return label


def _character_strings(texts: tuple[str, ...]) -> list[bytes]:
    """TXT rdata: each string UTF-8, split into character-strings of at most 255 octets
    (RFC 1035 §3.3.14); no strings at all is one empty string."""
    out: list[bytes] = []
    for text in texts or ("",):
        raw = text.encode("utf-8")
        out.extend(raw[i : i + 255] for i in range(0, max(len(raw), 1), 255))
    return out


def _rdata(record: Record) -> Any:
    """The dnslib rdata object for a typed record, chosen by type (never by parsing text)."""
    rdata = record.rdata
    if isinstance(rdata, A):
        return dnslib.A(tuple(rdata.address.packed))
    if isinstance(rdata, AAAA):
        return dnslib.AAAA(tuple(rdata.address.packed))
    if isinstance(rdata, CNAME):
        return dnslib.CNAME(_dns_name(rdata.target))
    if isinstance(rdata, PTR):
        return dnslib.PTR(_dns_name(rdata.target))
    if isinstance(rdata, NS):
        return dnslib.NS(_dns_name(rdata.target))
    if isinstance(rdata, SRV):
        # dnslib.SRV.pack writes the target uncompressed (RFC 2782).
        return dnslib.SRV(rdata.priority, rdata.weight, rdata.port, _dns_name(rdata.target))
    if isinstance(rdata, MX):
        return dnslib.MX(_dns_name(rdata.exchange), rdata.preference)
    if isinstance(rdata, TXT):
        return dnslib.TXT(_character_strings(rdata.strings))
    return dnslib.SOA(
        _dns_name(rdata.mname),
        _dns_name(rdata.rname),
        (rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum),
    )


@functools.lru_cache(maxsize=512)  # ~1.2 KB each with its names: bounded at ~0.6 MB
def _rr(record: Record) -> Any:
    """The dnslib record for a typed record (a few kept: the slow path re-encodes the same
    records after each cache invalidation; dnslib only reads the object when packing it)."""
    return dnslib.RR(
        _dns_name(record.name),
        int(record.rtype),
        CLASS_IN,
        record.ttl & 0xFFFFFFFF,
        _rdata(record),
    )


def _opt(query: Query, ext_rcode: int) -> Any:
    """Our OPT: payload 1232, version 0, DO copied (RFC 6891 §6.1.2, RFC 3225 §3)."""
    assert query.edns is not None
    flags = "do" if query.edns.do else ""
    return dnslib.EDNS0(ext_rcode=ext_rcode, version=0, flags=flags, udp_len=EDNS_PAYLOAD)


def _flags(query: Query, rcode: int, *, aa: bool, ra: bool) -> int:
    flags = _FLAG_QR | (query.opcode << 11) | (query.flags & (_FLAG_RD | _FLAG_CD))
    if aa:
        flags |= _FLAG_AA
    if ra:
        flags |= _FLAG_RA
    return flags | (rcode & 0xF)


def _finish(buf: _ReplyBuffer, query: Query, flags: int, counts: tuple[int, int, int]) -> bytes:
    """Write the 12-byte header over the placeholder at the start of `buf` (the counts are
    known only now, after truncation); `flags` carries the rcode's low 4 bits."""
    an, ns, ar = counts
    out = buf.data
    _HEADER.pack_into(out, 0, query.id, flags, 1, an, ns, ar)
    return bytes(out)


def encode_reply(query: Query, reply: Reply, *, max_size: int, ra: bool = False) -> bytes:
    """The reply to `query`, truncated to `max_size` bytes.

    Truncation keeps the longest prefix of answer, then authority, then additional records
    that fits (so additional records go first, then authority, then answers from the end),
    keeps the OPT and sets TC (RFC 1035 §4.2.1; like CoreDNS, TC whenever a record had to go).
    """
    rcode = int(reply.rcode)
    opt = _opt(query, rcode >> 4) if query.edns is not None else None
    records = (*reply.answer, *reply.authority, *reply.additional)
    buf = _ReplyBuffer(bytes(12) + query.question_wire, query.qname_wire)
    room = max_size - (_OPT_SIZE if opt is not None else 0)
    kept = 0
    for record in records:
        mark = buf.offset
        _rr(record).pack(buf)
        if buf.offset > room:
            # The first record that does not fit ends the message; names it registered
            # point past the end but nothing else is packed except the OPT (root owner).
            del buf.data[mark:]
            buf.offset = mark
            break
        kept += 1
    n_an = min(kept, len(reply.answer))
    n_ns = min(max(kept - len(reply.answer), 0), len(reply.authority))
    n_ar = max(kept - len(reply.answer) - len(reply.authority), 0)
    flags = _flags(query, rcode, aa=reply.authoritative, ra=ra)
    if kept < len(records):
        flags |= _FLAG_TC
    if opt is not None:
        opt.pack(buf)
        n_ar += 1
    return _finish(buf, query, flags, (n_an, n_ns, n_ar))


def encode_badvers(query: Query, *, ra: bool = False) -> bytes:
    """RFC 6891 §6.1.3: a query with an EDNS version we do not speak gets BADVERS."""
    buf = _ReplyBuffer(bytes(12) + query.question_wire, None)
    _opt(query, BADVERS >> 4).pack(buf)
    return _finish(buf, query, _flags(query, BADVERS, aa=False, ra=ra), (0, 0, 1))


def encode_truncated(query: Query, upstream_reply: bytes, *, ra: bool = True) -> bytes:
    """An empty TC=1 reply standing in for an upstream reply too big for the client's limit:
    the client retries over TCP (RFC 1035 §4.2.1). Flags and rcode are upstream's."""
    flags = (upstream_reply[2] << 8 | upstream_reply[3]) if len(upstream_reply) >= 4 else 0
    flags = (flags & ~(_FLAG_RD | _FLAG_CD)) | (query.flags & (_FLAG_RD | _FLAG_CD))
    flags |= _FLAG_QR | _FLAG_TC | (_FLAG_RA if ra else 0)
    buf = _ReplyBuffer(bytes(12) + query.question_wire, None)
    if query.edns is not None:
        _opt(query, 0).pack(buf)
    return _finish(buf, query, flags, (0, 0, 1 if query.edns is not None else 0))


def encode_error(data: bytes, rcode: Rcode, *, ra: bool = False) -> bytes | None:
    """A bare error reply (FORMERR, NOTIMP, REFUSED, SERVFAIL) to raw query bytes.

    None (drop) when the header is unreadable or QR=1. The first question is echoed when
    it parses; otherwise QDCOUNT is 0. There are no records, so nothing for dnslib to pack:
    the header and the client's question bytes are the whole message.
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
    if ra:
        out_flags |= _FLAG_RA
    return _HEADER.pack(qid, out_flags, 1 if question else 0, 0, 0, 0) + question


# ---- upstream replies (for kdns.upstream.forward and the ExternalName chase) ---

# dnslib's rdata parsers for the types records.py knows; other types are skipped unparsed.
_RDATA_PARSERS: dict[int, Any] = {
    RType.A: dnslib.A,
    RType.AAAA: dnslib.AAAA,
    RType.CNAME: dnslib.CNAME,
    RType.PTR: dnslib.PTR,
    RType.NS: dnslib.NS,
    RType.SRV: dnslib.SRV,
    RType.MX: dnslib.MX,
    RType.TXT: dnslib.TXT,
    RType.SOA: dnslib.SOA,
}


class _ReplyReader(dnslib.DNSBuffer):  # type: ignore[misc]
    """dnslib's message buffer reading names with our strict reader: dnslib's own
    `decode_name` rejects non-UTF-8 labels (legal in DNS), recurses without bound on a
    pointer cycle and accepts names over 255 octets."""

    offset: int  # dnslib's read position

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._raw = data

    def decode_name(self, last: int = -1) -> Any:
        labels, self.offset = _read_name(self._raw, self.offset, pointers=True)
        return dnslib.DNSLabel(labels)


def _text(label: Any) -> str:
    """Presentation text of a name read by `_ReplyReader`."""
    return labels_to_text(list(label.label))


def _typed(rtype: int, rd: Any) -> Any:
    """A records.py rdata from a parsed dnslib rdata of the same type."""
    if rtype == RType.A:
        return A(IPv4Address(bytes(rd.data)))
    if rtype == RType.AAAA:
        return AAAA(IPv6Address(bytes(rd.data)))
    if rtype == RType.CNAME:
        return CNAME(_text(rd.label))
    if rtype == RType.PTR:
        return PTR(_text(rd.label))
    if rtype == RType.NS:
        return NS(_text(rd.label))
    if rtype == RType.SRV:
        return SRV(rd.priority, rd.weight, rd.port, _text(rd.target))
    if rtype == RType.MX:
        return MX(rd.preference, _text(rd.label))
    if rtype == RType.TXT:
        return TXT(tuple(part.decode("utf-8", "backslashreplace") for part in rd.data))
    return SOA(_text(rd.mname), _text(rd.rname), *rd.times)


def decode_reply(data: bytes) -> DecodedReply:
    """Parse a reply from an upstream. Raises FormatError (never anything else) if malformed."""
    try:
        return _decode_reply(data)
    except FormatError:
        raise
    except Exception as exc:
        # dnslib signals malformed input with DNSError and BufferError, but also lets
        # struct.error, IndexError, ValueError, UnicodeDecodeError and RecursionError (a
        # pointer cycle) escape; all of them mean "these bytes are not a usable reply".
        raise FormatError(f"malformed reply: {type(exc).__name__}: {exc}") from None


def _decode_reply(data: bytes) -> DecodedReply:
    buf = _ReplyReader(bytes(data))
    header = dnslib.DNSHeader.parse(buf)
    question: Question | None = None
    qclass = 0
    for i in range(header.q):
        q = dnslib.DNSQuestion.parse(buf)
        if i == 0:
            question, qclass = Question(_text(q.qname), q.qtype), q.qclass
    flags = header.bitmap
    rcode = flags & 0xF
    sections: list[list[Record]] = [[], [], []]
    min_ttl: int | None = None
    any_ttl: int | None = None
    soa_ttl: int | None = None
    for index, count in enumerate((header.a, header.auth, header.ar)):
        for _ in range(count):
            owner = buf.decode_name()
            rtype, rclass, ttl, rdlen = buf.unpack("!HHIH")
            end = buf.offset + rdlen
            if end > len(data):
                raise FormatError("rdata runs past the end")
            if rtype == RType.OPT:
                rcode |= (ttl >> 24) << 4  # RFC 6891 §6.1.3: upper 8 bits of the rcode
                buf.offset = end
                continue
            if ttl & 0x80000000:  # RFC 2181 §8: a TTL with the top bit set is treated as 0
                ttl = 0
            any_ttl = ttl if any_ttl is None else min(any_ttl, ttl)
            parser = _RDATA_PARSERS.get(rtype)
            if rclass != CLASS_IN or parser is None:
                if index == 0 and rclass == CLASS_IN:
                    min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
                buf.offset = end
                continue
            if index == 0:
                min_ttl = ttl if min_ttl is None else min(min_ttl, ttl)
            rd = parser.parse(buf, rdlen)
            if buf.offset != end:  # dnslib does not check this itself
                raise FormatError(f"{RType(rtype).name} rdata is not RDLENGTH {rdlen} octets")
            rdata = _typed(rtype, rd)
            if index == 1 and isinstance(rdata, SOA):
                neg = min(ttl, rdata.minimum)
                soa_ttl = neg if soa_ttl is None else min(soa_ttl, neg)
            sections[index].append(Record(_text(owner), ttl, rdata))
    return DecodedReply(
        id=header.id,
        flags=flags,
        rcode=rcode,
        question=question,
        qclass=qclass,
        answer=tuple(sections[0]),
        authority=tuple(sections[1]),
        additional=tuple(sections[2]),
        min_ttl=min_ttl,
        soa_negative_ttl=soa_ttl,
        record_min_ttl=any_ttl,
        answer_count=header.a,
    )


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


# ---- relaying upstream replies as bytes (kdns.upstream.forward) ---


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


def ttl_offsets(reply: bytes) -> tuple[int, ...]:
    """Where the TTL field of every record but the OPT sits in `reply` (RFC 1035 §4.1.3).

    Raises FormatError if the message is malformed; kept by the forward cache so a hit only
    rewrites these fields.
    """
    if len(reply) < 12:
        raise FormatError("shorter than a DNS header")
    _, _, qd, an, ns, ar = _HEADER.unpack_from(reply, 0)
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(reply, pos, pointers=True)
        pos += 4
        if pos > len(reply):
            raise FormatError("question runs past the end")
    offsets = []
    for _ in range(an + ns + ar):
        _, after_name = _read_name(reply, pos, pointers=True)
        rtype, _, _, _, _, pos = _skip_rr(reply, pos)
        if rtype != RType.OPT:  # the OPT's "TTL" is its extended rcode and flags
            offsets.append(after_name + 4)
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


def build_query(
    qname: str, qtype: int, *, qid: int, rd: bool = True, edns_payload: int | None = EDNS_PAYLOAD
) -> bytes:
    """A query of class IN; with a bare OPT advertising `edns_payload` unless None."""
    message = dnslib.DNSRecord(
        dnslib.DNSHeader(id=qid & 0xFFFF, rd=int(rd)),
        q=dnslib.DNSQuestion(_dns_name(qname), qtype, CLASS_IN),
    )
    if edns_payload is not None:
        message.add_ar(dnslib.EDNS0(udp_len=edns_payload))
    return bytes(message.pack())


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
