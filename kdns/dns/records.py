"""DNS values the answer logic produces: questions, typed records, replies.

`str(record)` is the record's zone-file line (`name ttl IN TYPE rdata`), which is how tests
write expected answers. No wire format here: `kdns.dns.wire` turns these into bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address


class RType(enum.IntEnum):
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    HINFO = 13
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    IXFR = 251
    AXFR = 252
    ANY = 255


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


class Question:
    """A question, its name absolute (trailing dot) and as the client spelled it.

    A value: equal and hashed by (qname, qtype); never changed once made (a plugin that
    asks another name makes another Question). A plain slotted class rather than a frozen
    dataclass, because every query that leaves the fast path makes one and a frozen
    dataclass's constructor costs three times as much."""

    __slots__ = ("lname", "qname", "qtype")

    def __init__(self, qname: str, qtype: int) -> None:
        self.qname = qname
        self.qtype = qtype
        # The name lower-cased, for comparison (RFC 4343); every plugin on the way reads it.
        self.lname = qname.lower()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Question):
            return NotImplemented
        return self.qname == other.qname and self.qtype == other.qtype

    def __hash__(self) -> int:
        return hash((self.qname, self.qtype))

    def __repr__(self) -> str:
        return f"Question(qname={self.qname!r}, qtype={self.qtype!r})"


@dataclass(frozen=True, slots=True)
class A:
    address: IPv4Address

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True, slots=True)
class AAAA:
    address: IPv6Address

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True, slots=True)
class CNAME:
    target: str

    def __str__(self) -> str:
        return self.target


@dataclass(frozen=True, slots=True)
class PTR:
    target: str

    def __str__(self) -> str:
        return self.target


@dataclass(frozen=True, slots=True)
class NS:
    target: str

    def __str__(self) -> str:
        return self.target


@dataclass(frozen=True, slots=True)
class SRV:
    priority: int
    weight: int
    port: int
    target: str

    def __str__(self) -> str:
        return f"{self.priority} {self.weight} {self.port} {self.target}"


@dataclass(frozen=True, slots=True)
class MX:
    preference: int
    exchange: str

    def __str__(self) -> str:
        return f"{self.preference} {self.exchange}"


@dataclass(frozen=True, slots=True)
class TXT:
    strings: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(
            '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in self.strings
        )


@dataclass(frozen=True, slots=True)
class SOA:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int

    def __str__(self) -> str:
        return (
            f"{self.mname} {self.rname} {self.serial} {self.refresh} {self.retry} "
            f"{self.expire} {self.minimum}"
        )


@dataclass(frozen=True, slots=True)
class HINFO:
    """RFC 1035 §3.3.2: two character-strings; kdns writes one only for ANY (RFC 8482)."""

    cpu: str
    os: str

    def __str__(self) -> str:
        return str(TXT((self.cpu, self.os)))


Rdata = A | AAAA | CNAME | PTR | NS | SRV | MX | TXT | SOA | HINFO

_RTYPE_OF: dict[type, RType] = {
    A: RType.A,
    AAAA: RType.AAAA,
    CNAME: RType.CNAME,
    PTR: RType.PTR,
    NS: RType.NS,
    SRV: RType.SRV,
    MX: RType.MX,
    TXT: RType.TXT,
    SOA: RType.SOA,
    HINFO: RType.HINFO,
}


@dataclass(frozen=True, slots=True)
class Record:
    """A resource record of class IN. `name` is absolute (ends with a dot)."""

    name: str
    ttl: int
    rdata: Rdata

    @property
    def rtype(self) -> RType:
        return _RTYPE_OF[type(self.rdata)]

    def __str__(self) -> str:
        return f"{self.name} {self.ttl} IN {self.rtype.name} {self.rdata}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What the answer logic decided; the wire layer adds ID, flags, question and EDNS."""

    rcode: Rcode = Rcode.NOERROR
    authoritative: bool = True
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # Set when the reply may be kept and re-sent for the same (qname, qtype) until the
    # data changes; replies that depend on something else (time, upstream) leave it False.
    cacheable: bool = field(default=True)
    # A reverse-zone name kdns does not know: NXDOMAIN here, but the handler may ask the
    # upstreams instead (CoreDNS `fallthrough in-addr.arpa ip6.arpa`).
    fallthrough: bool = False
    # An ExternalName target outside the served zones: the handler may resolve it upstream
    # and append its records after the CNAME (spec R27).
    chase: str | None = None
