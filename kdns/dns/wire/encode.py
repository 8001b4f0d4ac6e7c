"""Reply encoding and truncation: `Query` + `Reply` -> the bytes sent to the client.

dnslib writes every resource record: `dnslib.RR` framing (owner, type, class, TTL,
RDLENGTH back-patched) and the rdata of each type from the typed records (`A`, `AAAA`,
`CNAME`, `PTR`, `NS`, `MX`, `SRV`, `TXT`, `SOA`, mapped by type, never by parsing text),
and the OPT record (`dnslib.EDNS0`). dnslib writes SRV targets uncompressed itself
(`encode_name_nocompress`, RFC 2782).

Hand-written here, and why:

* The 12-byte header and the question: the counts are known only after truncation, and
  the question must be the client's bytes verbatim (docs/rules.md D4; dnslib re-encodes a
  name from its text: `DNSLabel("a\\.b.")` splits the escaped dot into two labels and
  `caf\\233` becomes IDNA `xn--caf-dma`).
* Name compression (`_ReplyBuffer.encode_name`, overriding dnslib's): dnslib looks names
  up case-sensitively, so an answer owner would not point into a 0x20 mixed-case
  question, and it builds a pointer to any earlier offset by masking 14 bits, so a name
  first written past 16 KiB (large TCP replies) gets a wrong pointer. Ours compares
  lower-case labels (RFC 4343) and never points past 0x3FFF. The fast path relies on
  owner names pointing into the question: its cached tail is valid for any spelling of
  the question (docs/architecture.md, "The fast path").
* Truncation: dnslib's `DNSRecord.truncate()` drops every record; RFC 2181 §9 / CoreDNS
  keep what fits, so records are packed one by one and the first that does not fit ends
  the message.

Decisions (docs/rules.md, "kdns's own choices", Protocol):

* RA is set when the server offers recursion, i.e. an upstream is configured (RFC 1035
  §4.1.1: RA says whether recursive service is available); the handler passes it in.
* EDNS version > 0: BADVERS with no records (RFC 6891 §6.1.3); our OPT carries version 0
  and payload 1232.
* Error replies echo the question when it parses, else carry none.

Pure: no sockets, no asyncio, no logging.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dnslib

from kdns.dns.records import AAAA, CNAME, HINFO, MX, NS, PTR, SRV, TXT, A, Rcode, Record, Reply
from kdns.dns.wire.common import (
    BADVERS,
    CLASS_IN,
    EDNS_PAYLOAD,
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    HEADER,
    FormatError,
    name_to_wire,
    read_name,
)
from kdns.dns.wire.query import Query

_OPT_SIZE = 11  # root owner, type, class, TTL, RDLENGTH 0: our OPT has no options
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
def dns_name(name: str) -> Any:
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


def _hinfo_strings(rdata: HINFO) -> tuple[bytes, bytes]:
    """CPU and OS, UTF-8, each cut to one character-string of 255 octets (RFC 1035 §3.3)."""
    return rdata.cpu.encode("utf-8")[:255], rdata.os.encode("utf-8")[:255]


def _rdata(record: Record) -> Any:
    """The dnslib rdata object for a typed record, chosen by type (never by parsing text)."""
    rdata = record.rdata
    if isinstance(rdata, A):
        return dnslib.A(tuple(rdata.address.packed))
    if isinstance(rdata, AAAA):
        return dnslib.AAAA(tuple(rdata.address.packed))
    if isinstance(rdata, CNAME):
        return dnslib.CNAME(dns_name(rdata.target))
    if isinstance(rdata, PTR):
        return dnslib.PTR(dns_name(rdata.target))
    if isinstance(rdata, NS):
        return dnslib.NS(dns_name(rdata.target))
    if isinstance(rdata, SRV):
        # dnslib.SRV.pack writes the target uncompressed (RFC 2782).
        return dnslib.SRV(rdata.priority, rdata.weight, rdata.port, dns_name(rdata.target))
    if isinstance(rdata, MX):
        return dnslib.MX(dns_name(rdata.exchange), rdata.preference)
    if isinstance(rdata, TXT):
        return dnslib.TXT(_character_strings(rdata.strings))
    if isinstance(rdata, HINFO):
        # dnslib has no HINFO type: its generic RD packs the two character-strings as given.
        return dnslib.RD(b"".join(bytes((len(s),)) + s for s in _hinfo_strings(rdata)))
    return dnslib.SOA(
        dns_name(rdata.mname),
        dns_name(rdata.rname),
        (rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum),
    )


@functools.lru_cache(maxsize=512)  # ~1.2 KB each with its names: bounded at ~0.6 MB
def _rr(record: Record) -> Any:
    """The dnslib record for a typed record (a few kept: the slow path re-encodes the same
    records after each cache invalidation; dnslib only reads the object when packing it)."""
    return dnslib.RR(
        dns_name(record.name),
        int(record.rtype),
        CLASS_IN,
        record.ttl & 0xFFFFFFFF,
        _rdata(record),
    )


def _opt(query: Query, ext_rcode: int, payload: int = EDNS_PAYLOAD) -> Any:
    """Our OPT: payload 1232 (less under `bufsize`), version 0, DO copied (RFC 6891
    §6.1.2, RFC 3225 §3)."""
    assert query.edns is not None
    flags = "do" if query.edns.do else ""
    return dnslib.EDNS0(ext_rcode=ext_rcode, version=0, flags=flags, udp_len=payload)


def _flags(query: Query, rcode: int, *, aa: bool, ra: bool) -> int:
    flags = FLAG_QR | (query.opcode << 11) | (query.flags & (FLAG_RD | FLAG_CD))
    if aa:
        flags |= FLAG_AA
    if ra:
        flags |= FLAG_RA
    return flags | (rcode & 0xF)


def _finish(buf: _ReplyBuffer, query: Query, flags: int, counts: tuple[int, int, int]) -> bytes:
    """Write the 12-byte header over the placeholder at the start of `buf` (the counts are
    known only now, after truncation); `flags` carries the rcode's low 4 bits."""
    an, ns, ar = counts
    out = buf.data
    HEADER.pack_into(out, 0, query.id, flags, 1, an, ns, ar)
    return bytes(out)


def encode_reply(
    query: Query, reply: Reply, *, max_size: int, ra: bool = False, payload: int = EDNS_PAYLOAD
) -> bytes:
    """The reply to `query`, truncated to `max_size` bytes; its OPT (when the query has one)
    advertises `payload`.

    Truncation keeps the longest prefix of answer, then authority, then additional records
    that fits (so additional records go first, then authority, then answers from the end),
    keeps the OPT and sets TC (RFC 1035 §4.2.1; like CoreDNS, TC whenever a record had to go).
    """
    rcode = int(reply.rcode)
    opt = _opt(query, rcode >> 4, payload) if query.edns is not None else None
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
        flags |= FLAG_TC
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
    flags = (flags & ~(FLAG_RD | FLAG_CD)) | (query.flags & (FLAG_RD | FLAG_CD))
    flags |= FLAG_QR | FLAG_TC | (FLAG_RA if ra else 0)
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
    qid, flags, qd, *_ = HEADER.unpack_from(data, 0)
    question = b""
    if qd >= 1:
        try:
            _, pos = read_name(data, 12, pointers=False)
            if pos + 4 <= len(data):
                question = data[12 : pos + 4]
        except FormatError:
            pass
    out_flags = FLAG_QR | (flags & (0x7800 | FLAG_RD | FLAG_CD)) | (int(rcode) & 0xF)
    if ra:
        out_flags |= FLAG_RA
    return HEADER.pack(qid, out_flags, 1 if question else 0, 0, 0, 0) + question
