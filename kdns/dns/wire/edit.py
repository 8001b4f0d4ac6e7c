"""Editing messages as bytes, for the plugins that change a query before it goes on
(`rewrite`, `bufsize`) and undo the change on the reply that comes back (`rewrite`).

* `requery`: the query with another question (name, type); header flags, ID and the OPT
  (payload, DO, options) are kept, so an upstream sees what the client asked but for the
  question.
* `with_payload`: the query with its OPT's UDP payload size replaced (`bufsize`).
* `query_options` / `with_options`: the EDNS options of a query, and the query with others
  (`rewrite edns0`); an OPT is added when the query has none.
* `parse_message` / `build_message`: a whole reply as records whose names are text, so
  names, TTLs, the rcode and EDNS options can be changed and the message written again
  with the client's question. Names inside rdata are expanded for the types that carry
  them: the RFC 1035 types, whose rdata names may be compressed, and the later types RFC
  3597 §4 says may still arrive compressed. Other rdata is kept as octets. Written with
  compression of owner names and of the RFC 1035 rdata names (RFC 1035 §4.1.4, RFC 3597
  §4), never pointing past 0x3FFF.

Hand-written rather than dnslib: the parse must keep records of every type exactly (dnslib
turns unknown types into opaque objects but rejects empty rdata and non-UTF-8 names) and
must be as strict as the query decoder: names go through `read_name`, each rdata must use
exactly RDLENGTH octets, and anything malformed is a `FormatError`.

Pure: no sockets, no asyncio, no logging, no dnslib.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from kdns.dns.records import RType
from kdns.dns.wire.common import (
    HEADER,
    RR_FIXED,
    FormatError,
    labels_to_text,
    name_to_wire,
    read_name,
    skip_rr,
)
from kdns.dns.wire.query import Query, decode_query

_U16 = struct.Struct("!H")
_QTAIL = struct.Struct("!HH")
_POINTER_LIMIT = 0x4000
_OPT_PAYLOAD = 4096  # the payload of an OPT added to a query that had none (as CoreDNS)

# Rdata layouts of the types whose rdata holds names: N a name written compressed, n a
# name written in full, H two octets, S a character-string, R the rest as octets.
_LAYOUTS: dict[int, str] = {
    RType.NS: "N",
    3: "N",  # MD
    4: "N",  # MF
    RType.CNAME: "N",
    RType.SOA: "NNR",
    7: "N",  # MB
    8: "N",  # MG
    9: "N",  # MR
    RType.PTR: "N",
    14: "NN",  # MINFO
    RType.MX: "HN",
    17: "nn",  # RP
    18: "Hn",  # AFSDB
    21: "Hn",  # RT
    26: "Hnn",  # PX
    RType.SRV: "HHHn",
    35: "HHSSSn",  # NAPTR
    36: "Hn",  # KX
    39: "n",  # DNAME
}
# The one name of a record that `rewrite ... answer value` changes (CoreDNS's choice):
# index into the names of its rdata; the others have none.
_VALUE_NAME: dict[int, int] = {
    RType.SRV: -1,
    RType.MX: -1,
    RType.CNAME: -1,
    RType.NS: -1,
    39: -1,  # DNAME
    35: -1,  # NAPTR
    RType.SOA: 0,
    RType.PTR: -1,
}

Part = bytes | str  # rdata octets, or a name as absolute presentation text


@dataclass(slots=True)
class WireRecord:
    """One resource record; `rdata` is octets and names in order (see `_LAYOUTS`)."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: list[Part]

    @property
    def value(self) -> str | None:
        """The name CoreDNS's `rewrite` calls the record's value (CNAME, NS, PTR, DNAME
        target, MX exchange, SRV target, NAPTR replacement, SOA MNAME); None for others."""
        index = _VALUE_NAME.get(self.rtype)
        if index is None:
            return None
        names = [p for p in self.rdata if isinstance(p, str)]
        return names[index] if names else None

    @value.setter
    def value(self, name: str) -> None:
        index = _VALUE_NAME.get(self.rtype)
        if index is None:
            return
        at = [i for i, p in enumerate(self.rdata) if isinstance(p, str)]
        if at:
            self.rdata[at[index]] = name


@dataclass(slots=True)
class WireMessage:
    """A reply taken apart. The OPT stays a record of `additional` (type 41, its rdata the
    options' octets), so its place is kept."""

    id: int
    flags: int
    answer: list[WireRecord] = field(default_factory=list)
    authority: list[WireRecord] = field(default_factory=list)
    additional: list[WireRecord] = field(default_factory=list)

    @property
    def opt(self) -> WireRecord | None:
        return next((r for r in self.additional if r.rtype == RType.OPT), None)

    @property
    def rcode(self) -> int:
        """The rcode with the OPT's upper 8 bits (RFC 6891 §6.1.3)."""
        opt = self.opt
        high = (opt.ttl >> 24) & 0xFF if opt is not None else 0
        return (high << 4) | (self.flags & 0xF)

    @rcode.setter
    def rcode(self, value: int) -> None:
        self.flags = (self.flags & ~0xF) | (value & 0xF)
        opt = self.opt
        if opt is not None:
            opt.ttl = (opt.ttl & 0x00FFFFFF) | (((value >> 4) & 0xFF) << 24)

    def records(self) -> list[WireRecord]:
        """Every record but the OPT: authority, answer, additional (CoreDNS's order)."""
        return [
            r for r in (*self.authority, *self.answer, *self.additional) if r.rtype != RType.OPT
        ]


# ---- queries -------------------------------------------------------------------------------


def _opt_span(data: bytes, query: Query) -> tuple[int, int] | None:
    """Where the query's OPT record starts and ends, if it has one."""
    if query.edns is None:
        return None
    pos = 12 + len(query.question_wire)
    for _ in range(query.ancount + query.nscount + query.arcount):
        rtype, _, _, _, _, end = skip_rr(data, pos)
        if rtype == RType.OPT:
            return pos, end
        pos = end
    return None  # cannot happen for a query `decode_query` accepted


def _rebuild(query: Query, question: bytes, opt: bytes) -> tuple[bytes, Query]:
    out = HEADER.pack(query.id, query.flags, 1, 0, 0, 1 if opt else 0) + question + opt
    return out, decode_query(out)


def requery(data: bytes, query: Query, qname: str, qtype: int) -> tuple[bytes, Query]:
    """`data` (decoded as `query`) asking for `qname`/`qtype` instead: the same ID, flags,
    class and OPT; records other than the OPT (none in a usual query) are left out.
    Raises ValueError when `qname` is not a valid name (a label over 63 octets, ...)."""
    span = _opt_span(data, query)
    opt = data[span[0] : span[1]] if span is not None else b""
    question = name_to_wire(qname) + _QTAIL.pack(qtype & 0xFFFF, query.qclass)
    return _rebuild(query, question, opt)


def with_payload(data: bytes, query: Query, payload: int) -> tuple[bytes, Query]:
    """The query with its OPT advertising `payload` (it must have an OPT)."""
    span = _opt_span(data, query)
    assert span is not None
    assert query.edns is not None
    at = span[0] + 3  # root owner (1 octet), TYPE (2): CLASS holds the payload size
    out = data[:at] + _U16.pack(payload) + data[at + 2 :]
    return out, replace(query, edns=replace(query.edns, payload=payload))


def query_options(data: bytes, query: Query) -> list[tuple[int, bytes]]:
    """The EDNS options of the query's OPT, in order, as (code, data)."""
    span = _opt_span(data, query)
    if span is None:
        return []
    _, _, _, rd, rdlen, _ = skip_rr(data, span[0])
    return split_options(data[rd : rd + rdlen])


def split_options(rdata: bytes) -> list[tuple[int, bytes]]:
    """OPT rdata -> (code, data) pairs (RFC 6891 §6.1.2)."""
    out = []
    pos = 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise FormatError("truncated EDNS option")
        code, length = struct.unpack_from("!HH", rdata, pos)
        if pos + 4 + length > len(rdata):
            raise FormatError("EDNS option runs past the OPT rdata")
        out.append((code, rdata[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def join_options(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("!HH", code, len(value)) + value for code, value in options)


def with_options(
    data: bytes, query: Query, options: list[tuple[int, bytes]]
) -> tuple[bytes, Query]:
    """The query with its OPT carrying `options`; a query without an OPT gets one
    (payload 4096, as CoreDNS's `rewrite edns0` adds)."""
    span = _opt_span(data, query)
    rdata = join_options(options)
    if span is None:
        head = b"\x00" + struct.pack("!HHI", RType.OPT, _OPT_PAYLOAD, 0)
    else:
        head = data[span[0] : span[0] + 9]  # owner, TYPE, CLASS, TTL (ext-rcode, flags)
    opt = head + _U16.pack(len(rdata)) + rdata
    return _rebuild(query, query.question_wire, opt)


# ---- whole messages ------------------------------------------------------------------------


def _read_rdata(data: bytes, rtype: int, start: int, end: int) -> list[Part]:
    layout = _LAYOUTS.get(rtype)
    if layout is None:
        return [data[start:end]]
    parts: list[Part] = []
    pos = start
    for kind in layout:
        if kind in "Nn":
            labels, pos = read_name(data, pos, pointers=True)
            parts.append(labels_to_text(labels))
        elif kind == "H":
            parts.append(data[pos : pos + 2])
            pos += 2
        elif kind == "S":
            if pos >= end:
                raise FormatError(f"type {rtype} rdata is shorter than its layout")
            parts.append(data[pos : pos + 1 + data[pos]])
            pos += 1 + data[pos]
        else:  # R
            parts.append(data[pos:end])
            pos = end
        if pos > end:
            raise FormatError(f"type {rtype} rdata runs past RDLENGTH")
    if pos != end:
        raise FormatError(f"type {rtype} rdata is not RDLENGTH {end - start} octets")
    return parts


def parse_message(data: bytes) -> WireMessage:
    """Take a reply apart; raises FormatError when it is malformed."""
    if len(data) < 12:
        raise FormatError("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data, 0)
    pos = 12
    for _ in range(qd):
        _, pos = read_name(data, pos, pointers=True)
        pos += 4
        if pos > len(data):
            raise FormatError("question runs past the end")
    message = WireMessage(qid, flags)
    for section, count in (
        (message.answer, an),
        (message.authority, ns),
        (message.additional, ar),
    ):
        for _ in range(count):
            labels, _ = read_name(data, pos, pointers=True)
            rtype, rclass, ttl, rd, rdlen, pos = skip_rr(data, pos)
            if rtype == RType.OPT:
                rdata: list[Part] = [data[rd : rd + rdlen]]
            else:
                rdata = _read_rdata(data, rtype, rd, rd + rdlen)
            section.append(WireRecord(labels_to_text(labels), rtype, rclass, ttl, rdata))
    if pos != len(data):
        raise FormatError(f"{len(data) - pos} bytes after the last record")
    return message


class _Writer:
    """Appends names with compression (lower-case label suffixes -> offsets)."""

    def __init__(self, head: bytes, qname: bytes) -> None:
        self.out = bytearray(head)
        self.names: dict[tuple[bytes, ...], int] = {}
        labels = _labels(qname)
        self._remember(labels, tuple(label.lower() for label in labels), 12, len(labels))

    def _remember(
        self, labels: tuple[bytes, ...], keys: tuple[bytes, ...], at: int, n: int
    ) -> None:
        """Record the suffixes starting at the first `n` labels, written from `at`."""
        for i in range(n):
            if at >= _POINTER_LIMIT:
                return
            self.names.setdefault(keys[i:], at)
            at += len(labels[i]) + 1

    def name(self, text: str, *, compress: bool) -> None:
        labels = _labels(name_to_wire(text))
        keys = tuple(label.lower() for label in labels)
        start = len(self.out)
        if compress:
            for i in range(len(labels)):
                at = self.names.get(keys[i:])
                if at is not None:
                    self.out += b"".join(bytes((len(label),)) + label for label in labels[:i])
                    self.out += bytes((0xC0 | (at >> 8), at & 0xFF))
                    self._remember(labels, keys, start, i)
                    return
        self.out += b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
        self._remember(labels, keys, start, len(labels))


def _labels(wire_name: bytes) -> tuple[bytes, ...]:
    labels = []
    pos = 0
    while wire_name[pos]:
        labels.append(wire_name[pos + 1 : pos + 1 + wire_name[pos]])
        pos += wire_name[pos] + 1
    return tuple(labels)


def build_message(message: WireMessage, question: bytes) -> bytes:
    """The message with `question` (one question's octets, uncompressed) as its question
    section. Raises ValueError when a name is not valid (e.g. a rewritten one too long)."""
    sections = (message.answer, message.authority, message.additional)
    head = HEADER.pack(message.id, message.flags, 1, *(len(s) for s in sections))
    writer = _Writer(head + question, question[:-4])
    for section in sections:
        for record in section:
            writer.name(record.name, compress=True)
            fixed_at = len(writer.out)
            writer.out += bytes(RR_FIXED.size)
            layout = _LAYOUTS.get(record.rtype, "")
            names = iter(kind for kind in layout if kind in "Nn")
            for part in record.rdata:
                if isinstance(part, str):
                    writer.name(part, compress=next(names, "n") == "N")
                else:
                    writer.out += part
            rdlen = len(writer.out) - fixed_at - RR_FIXED.size
            RR_FIXED.pack_into(
                writer.out, fixed_at, record.rtype, record.rclass, record.ttl & 0xFFFFFFFF, rdlen
            )
    return bytes(writer.out)
