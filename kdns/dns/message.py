"""Views of a DNS message that need no codec: mnemonics, header flags, and RR boundaries.

The plugins that post-process replies (`log`, `loadbalance`, `errors`) read a few facts
from a message they did not build: the text of a type, class or rcode; the header flags;
where each resource record starts and ends. Relayed upstream replies must keep their
bytes (a re-encode would change them), so this module works on offsets only: it never
decodes rdata beyond the domain names inside it, and it never imports the wire codec.
Pure: no I/O, no logging.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

# ---- mnemonics (as dig and CoreDNS print them) ---------------------------------------------

_TYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    3: "MD",
    4: "MF",
    5: "CNAME",
    6: "SOA",
    7: "MB",
    8: "MG",
    9: "MR",
    10: "NULL",
    12: "PTR",
    13: "HINFO",
    14: "MINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    19: "X25",
    20: "ISDN",
    21: "RT",
    22: "NSAP",
    23: "NSAP-PTR",
    24: "SIG",
    25: "KEY",
    26: "PX",
    27: "GPOS",
    28: "AAAA",
    29: "LOC",
    30: "NXT",
    31: "EID",
    32: "NIMLOC",
    33: "SRV",
    34: "ATMA",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    39: "DNAME",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    56: "NINFO",
    57: "RKEY",
    58: "TALINK",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    100: "UINFO",
    101: "UID",
    102: "GID",
    103: "UNSPEC",
    104: "NID",
    105: "L32",
    106: "L64",
    107: "LP",
    108: "EUI48",
    109: "EUI64",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    253: "MAILB",
    254: "MAILA",
    255: "ANY",
    256: "URI",
    257: "CAA",
    258: "AVC",
    260: "AMTRELAY",
    32768: "TA",
    32769: "DLV",
}

_CLASS_NAMES: dict[int, str] = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}

_RCODE_NAMES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    16: "BADVERS",  # RFC 6891 §9 (BADSIG shares the value, in TSIG replies)
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}


def type_name(rtype: int) -> str:
    """The mnemonic of a type ("AAAA"), `TYPEnn` when unknown (RFC 3597 §5)."""
    return _TYPE_NAMES.get(rtype) or f"TYPE{rtype}"


def class_name(rclass: int) -> str:
    """The mnemonic of a class ("IN"), `CLASSnn` when unknown (RFC 3597 §5)."""
    return _CLASS_NAMES.get(rclass) or f"CLASS{rclass}"


def rcode_text(rcode: int) -> str:
    """The mnemonic of an rcode ("NXDOMAIN"), or its number when it has none (as CoreDNS's
    `{rcode}` prints it)."""
    return _RCODE_NAMES.get(rcode) or str(rcode)


# Header flags in the order CoreDNS's `{>rflags}` lists them (RFC 1035 §4.1.1, RFC 4035
# §3.2 for AD and CD); Z is the reserved bit.
_FLAGS: tuple[tuple[str, int, int], ...] = (
    ("qr", 2, 0x80),
    ("aa", 2, 0x04),
    ("tc", 2, 0x02),
    ("rd", 2, 0x01),
    ("ra", 3, 0x80),
    ("z", 3, 0x40),
    ("ad", 3, 0x20),
    ("cd", 3, 0x10),
)


def header_flags(message: bytes) -> str:
    """The flags set in the header, comma-separated: "qr,aa,rd". Empty when none is."""
    if len(message) < 4:
        return ""
    return ",".join(name for name, octet, bit in _FLAGS if message[octet] & bit)


# ---- resource record boundaries --------------------------------------------------------


_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength

TYPE_OPT = 41

# Types whose rdata holds domain names that a sender may compress, and where they are:
# (octets before the first name, number of names). RFC 1035 §3.3 types, and those RFC 3597
# §4 says receivers must decompress (RP, AFSDB, RT, SIG, PX, NXT, NAPTR, SRV), plus the
# few later ones some servers compress anyway (KX, DNAME, RRSIG, NSEC). Newer types may
# not be compressed (RFC 3597 §4), so their rdata holds no pointers.
_NAMES_IN_RDATA: dict[int, tuple[int, int]] = {
    2: (0, 1),  # NS
    3: (0, 1),  # MD
    4: (0, 1),  # MF
    5: (0, 1),  # CNAME
    6: (0, 2),  # SOA: MNAME RNAME, then five 32-bit fields
    7: (0, 1),  # MB
    8: (0, 1),  # MG
    9: (0, 1),  # MR
    12: (0, 1),  # PTR
    14: (0, 2),  # MINFO
    15: (2, 1),  # MX: preference
    17: (0, 2),  # RP
    18: (2, 1),  # AFSDB: subtype
    21: (2, 1),  # RT: preference
    24: (18, 1),  # SIG: signer after the fixed fields
    26: (2, 2),  # PX: preference
    30: (0, 1),  # NXT
    33: (6, 1),  # SRV: priority, weight, port
    36: (2, 1),  # KX: preference
    39: (0, 1),  # DNAME
    46: (18, 1),  # RRSIG: signer after the fixed fields
    47: (0, 1),  # NSEC: next owner, then the type bitmap
}
_NAPTR = 35  # order, preference, three character-strings, then the replacement name


class LayoutError(ValueError):
    """The bytes are not a message this module can lay out safely."""


@dataclass(frozen=True, slots=True)
class RRSpan:
    """Where one resource record lies: [start, end), its rdata from `rdata`."""

    start: int
    rdata: int
    end: int
    rtype: int


@dataclass(frozen=True, slots=True)
class Layout:
    """The sections of a message as byte ranges, and every compression pointer found in
    names (owners, questions, and the rdata of the types in `_NAMES_IN_RDATA`)."""

    question_end: int
    answer: tuple[RRSpan, ...]
    authority: tuple[RRSpan, ...]
    additional: tuple[RRSpan, ...]
    pointers: tuple[tuple[int, int], ...]  # (offset of the pointer, offset it points to)

    def extended_rcode(self, message: bytes) -> int:
        """The full rcode: the header's four bits and the OPT's upper eight (RFC 6891
        §6.1.3)."""
        rcode = message[3] & 0x0F
        for rr in self.additional:
            if rr.rtype == TYPE_OPT:
                return (message[rr.rdata - 6] << 4) | rcode
        return rcode


class _Walker:
    """Walks names in order, checking each pointer lands on a label seen earlier."""

    __slots__ = ("labels", "message", "pointers")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.labels: set[int] = set()
        self.pointers: list[tuple[int, int]] = []

    def name(self, pos: int, limit: int) -> int:
        """Record the name at `pos` (which must end before `limit`); return its end."""
        data = self.message
        start = pos
        while True:
            if pos >= limit:
                raise LayoutError(f"name at offset {start} runs past its bounds")
            length = data[pos]
            kind = length & 0xC0
            if kind == 0xC0:
                if pos + 2 > limit:
                    raise LayoutError(f"truncated pointer at offset {pos}")
                target = ((length & 0x3F) << 8) | data[pos + 1]
                # RFC 1035 §4.1.4: a pointer refers to a prior occurrence of a name.
                if target >= start or target not in self.labels:
                    raise LayoutError(f"pointer at offset {pos} to {target}")
                self.labels.add(pos)
                self.pointers.append((pos, target))
                return pos + 2
            if kind:
                raise LayoutError(f"reserved label type at offset {pos}")
            self.labels.add(pos)
            if length == 0:
                return pos + 1
            pos += 1 + length

    def rdata_names(self, rtype: int, rdata: int, end: int) -> None:
        if rtype == _NAPTR:
            pos = rdata + 4
            for _ in range(3):  # flags, services, regexp (RFC 3403 §4.1)
                if pos >= end:
                    raise LayoutError(f"NAPTR rdata at offset {rdata} too short")
                pos += 1 + self.message[pos]
            self.name(pos, end)
            return
        where = _NAMES_IN_RDATA.get(rtype)
        if where is None:
            return
        pos = rdata + where[0]
        for _ in range(where[1]):
            pos = self.name(pos, end)


def parse_layout(message: bytes) -> Layout:
    """Lay out `message`; raise `LayoutError` for anything this cannot vouch for
    (bytes running past the end, forward or dangling pointers, reserved label types).
    Trailing bytes after the last section are ignored."""
    if len(message) < 12:
        raise LayoutError("shorter than a header")
    _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(message)
    walker = _Walker(message)
    size = len(message)
    pos = 12
    for _ in range(qdcount):
        pos = walker.name(pos, size) + 4
        if pos > size:
            raise LayoutError("question runs past the end")
    question_end = pos
    sections: list[tuple[RRSpan, ...]] = []
    for count in (ancount, nscount, arcount):
        spans: list[RRSpan] = []
        for _ in range(count):
            start = pos
            pos = walker.name(pos, size)
            if pos + 10 > size:
                raise LayoutError(f"record header at offset {start} runs past the end")
            rtype, _, _, rdlength = _RR_FIXED.unpack_from(message, pos)
            rdata = pos + 10
            pos = rdata + rdlength
            if pos > size:
                raise LayoutError(f"rdata at offset {rdata} runs past the end")
            walker.rdata_names(rtype, rdata, pos)
            spans.append(RRSpan(start, rdata, pos, rtype))
        sections.append(tuple(spans))
    return Layout(question_end, sections[0], sections[1], sections[2], tuple(walker.pointers))


def first_moved(order: Sequence[int]) -> int:
    """The first position where `order` differs from the records' order (its length
    when it does not)."""
    for position, index in enumerate(order):
        if position != index:
            return position
    return len(order)


def movable_from(layout: Layout, first: int) -> bool:
    """Whether the answer records from index `first` on can be put in any order by
    moving their bytes, compression pointers untouched.

    The records before `first` and everything before the answer stay where they are,
    so pointers to them stay valid (and backwards: `parse_layout` admits no forward
    pointer); a pointer into the records that may move would point at the wrong bytes.
    """
    spans = layout.answer
    if first >= len(spans):
        return True
    begin, end = spans[first].start, spans[-1].end
    return not any(begin <= target < end for _, target in layout.pointers)


def permute_answer(message: bytes, layout: Layout, order: Sequence[int]) -> bytes | None:
    """`message` with its answer records in `order` (indices into `layout.answer`), or
    None when moving them would break a compression pointer (`movable_from`)."""
    spans = layout.answer
    if sorted(order) != list(range(len(spans))):
        raise ValueError(f"not a permutation of {len(spans)} records: {list(order)}")
    first = first_moved(order)
    if first == len(spans):
        return message
    if not movable_from(layout, first):
        return None
    begin, end = spans[first].start, spans[-1].end
    body = b"".join(message[spans[i].start : spans[i].end] for i in order[first:])
    return message[:begin] + body + message[end:]


__all__ = [
    "TYPE_OPT",
    "Layout",
    "LayoutError",
    "RRSpan",
    "class_name",
    "first_moved",
    "header_flags",
    "movable_from",
    "parse_layout",
    "permute_answer",
    "rcode_text",
    "type_name",
]
