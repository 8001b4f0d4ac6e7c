"""Talking to upstreams: the queries kdns sends (`build_query`) and the decoding of the
replies it gets back (`decode_reply`), for `kdns.upstream.forward` and the ExternalName
chase in `kdns.handler`.

dnslib builds whole queries (`build_query`) and parses the header, questions and the rdata
of the types records.py knows (`DNSHeader.parse`, `DNSQuestion.parse`, `A.parse`,
`SRV.parse`, ...), converted to typed `Record`s.

Hand-written here, and why: the record loop and the name reading. `DNSRecord.parse` does
not check RDLENGTH, refuses an empty rdata of any type (legal, e.g. NULL) and parses rdata
of types we discard; our loop checks RDLENGTH and skips unknown types unparsed. dnslib's
`decode_name` (also called by its rdata parsers) rejects non-UTF-8 labels and recurses
without bound on a pointer cycle, so `_ReplyReader` replaces it with `read_name`, the
strict reader of the query decoder. An upstream is as untrusted as a client:
`decode_reply` raises `FormatError` and nothing else.

Pure: no sockets, no asyncio, no logging.
"""

from __future__ import annotations

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
    Record,
    RType,
)
from kdns.dns.wire.common import (
    CLASS_IN,
    EDNS_PAYLOAD,
    FLAG_TC,
    FormatError,
    labels_to_text,
    read_name,
)
from kdns.dns.wire.encode import dns_name


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
        return bool(self.flags & FLAG_TC)


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
        labels, self.offset = read_name(self._raw, self.offset, pointers=True)
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


def build_query(
    qname: str, qtype: int, *, qid: int, rd: bool = True, edns_payload: int | None = EDNS_PAYLOAD
) -> bytes:
    """A query of class IN; with a bare OPT advertising `edns_payload` unless None."""
    message = dnslib.DNSRecord(
        dnslib.DNSHeader(id=qid & 0xFFFF, rd=int(rd)),
        q=dnslib.DNSQuestion(dns_name(qname), qtype, CLASS_IN),
    )
    if edns_payload is not None:
        message.add_ar(dnslib.EDNS0(udp_len=edns_payload))
    return bytes(message.pack())
