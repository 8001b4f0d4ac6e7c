"""What the four wire modules share: the header layout and flags, the two errors, names
on the wire and as text, and the strict reader every parser uses.

`read_name` is the one place a name is read from a message, for client queries
(`kdns.dns.wire.query`), upstream replies (`kdns.dns.wire.upstream`, instead of dnslib's
`decode_name`) and the relay helpers (`kdns.dns.wire.relay`). It accepts any octet in a
label (legal in DNS), caps a name at 255 octets and rejects every pointer that does not
point strictly backwards, so a pointer cycle is a `FormatError`, never a recursion.
Pure: no sockets, no asyncio, no logging, no dnslib.
"""

from __future__ import annotations

import functools
import struct
from typing import Final

from kdns.dns.records import Rcode, RType

# Our advertised EDNS UDP payload (DNS flag day 2020 recommendation).
EDNS_PAYLOAD: Final = 1232
BADVERS: Final = 16  # RFC 6891 §9: extended rcode 16
CLASS_IN: Final = 1
MAX_NAME: Final = 255  # RFC 1035 §3.1: a name is at most 255 octets on the wire
MAX_LABEL: Final = 63

HEADER: Final = struct.Struct("!HHHHHH")  # id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
RR_FIXED: Final = struct.Struct("!HHIH")  # type, class, ttl, rdlength
FLAG_QR: Final = 0x8000
FLAG_AA: Final = 0x0400
FLAG_TC: Final = 0x0200
FLAG_RD: Final = 0x0100
FLAG_RA: Final = 0x0080
FLAG_CD: Final = 0x0010
DO: Final = 0x8000  # RFC 3225: in the OPT TTL's low 16 bits

# The types and rcodes the per-query code compares with, as plain ints: compiled, a
# comparison with an IntEnum member costs an attribute lookup and a rich comparison, with a
# Final int a load and a compare.
TYPE_SOA: Final = int(RType.SOA)
TYPE_HINFO: Final = int(RType.HINFO)
TYPE_OPT: Final = int(RType.OPT)
TYPE_IXFR: Final = int(RType.IXFR)
TYPE_AXFR: Final = int(RType.AXFR)
RCODE_NOERROR: Final = int(Rcode.NOERROR)
RCODE_SERVFAIL: Final = int(Rcode.SERVFAIL)
RCODE_NXDOMAIN: Final = int(Rcode.NXDOMAIN)


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


_RCODE_NAMES: Final[dict[int, str]] = {int(code): code.name for code in Rcode} | {
    BADVERS: "BADVERS"
}


def rcode_name(rcode: int) -> str:
    """The mnemonic of an rcode (CoreDNS label values), RCODEnn for unknown ones."""
    name = _RCODE_NAMES.get(rcode)
    return name if name is not None else f"RCODE{rcode}"


# ---- names as text -------------------------------------------------------------------------

# Octets a label may hold unescaped in presentation form. `not x.translate(None, _PLAIN)`
# (nothing left once they are deleted) tests a label at half the cost of a set's issuperset.
_PLAIN: Final = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def _label_text(label: bytes) -> str:
    if not label.translate(None, _PLAIN):
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
    if not b"".join(labels).translate(None, _PLAIN):  # (the common case: nothing to escape)
        return b".".join(labels).decode("ascii") + "."
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


# ---- reading messages ----------------------------------------------------------------------


def read_name(data: bytes, offset: int, *, pointers: bool) -> tuple[list[bytes], int]:
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


def skip_name(data: bytes, offset: int) -> int:
    """The offset just after the name at `offset` (pointers allowed), checked as
    `read_name` checks it, without collecting its labels: for walking past names."""
    total = 1
    end = -1
    pos = offset
    limit = offset
    n = len(data)
    while True:
        if pos >= n:
            raise FormatError("name runs past the end of the message")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= n:
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit:
                raise FormatError("compression pointer loops or points forward")
            limit = pos = target
            continue
        if length > 0x3F:
            raise FormatError(f"reserved label type 0x{length & 0xC0:02x}")
        if length == 0:
            return end if end >= 0 else pos + 1
        total += length + 1
        if total > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        pos += 1 + length
        if pos > n:
            raise FormatError("label runs past the end of the message")


def skip_rr(data: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
    """Parse one RR header: (type, class, ttl, rdata offset, rdlength, next offset)."""
    pos = skip_name(data, offset)
    if pos + 10 > len(data):
        raise FormatError("resource record header runs past the end")
    rtype, rclass, ttl, rdlen = RR_FIXED.unpack_from(data, pos)
    if pos + 10 + rdlen > len(data):
        raise FormatError("rdata runs past the end")
    return rtype, rclass, ttl, pos + 10, rdlen, pos + 10 + rdlen
