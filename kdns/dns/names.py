"""The name grammar of the served zones: what a lower-cased absolute query name means.

`parse_name()` maps a name inside the cluster zone, `in-addr.arpa.` or `ip6.arpa.` to one
shape (apex, Service, endpoint, SRV, pod, reverse address, ...). It knows nothing about
which Services exist: deciding whether the shape names something is `kdns.dns.answer`'s
job. Pure: no I/O, no cluster data, no wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from kdns.cluster.model import IPAddress

IN_ADDR_ARPA = "in-addr.arpa."
IP6_ARPA = "ip6.arpa."

_HEX_DIGITS = frozenset("0123456789abcdef")


def absolute(name: str) -> str:
    """`name` with exactly one trailing dot (the root stays ".")."""
    return name.rstrip(".") + "."


def served_zone(lname: str, *, zone: str) -> str | None:
    """The apex of the served zone holding `lname` (lower-case), or None if none does.

    The cluster zone is tried first, so a cluster zone inside a reverse tree would win.
    """
    lname = absolute(lname)
    zone = absolute(zone.lower())
    for apex in (zone, IN_ADDR_ARPA, IP6_ARPA):
        if lname == apex or lname.endswith("." + apex):
            return apex
    return None


# ---- shapes of names in the cluster zone -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Apex:
    """`<zone>.` itself, or the apex of a reverse tree (SOA, NS; D7)."""

    zone: str


@dataclass(frozen=True, slots=True)
class DnsVersion:
    """`dns-version.<zone>.` (TXT, R2)."""

    zone: str


@dataclass(frozen=True, slots=True)
class DnsRoot:
    """`dns.<zone>.`: empty non-terminal above the name server's name."""

    zone: str


@dataclass(frozen=True, slots=True)
class NameServer:
    """`ns.dns.<zone>.`: the target of the apex NS record (A/AAAA)."""

    zone: str


@dataclass(frozen=True, slots=True)
class ServiceRoot:
    """`svc.<zone>.`: empty non-terminal above every Service (D3)."""

    zone: str


@dataclass(frozen=True, slots=True)
class ServiceNamespace:
    """`<ns>.svc.<zone>.`: empty non-terminal above a namespace's Services (D3)."""

    zone: str
    namespace: str


@dataclass(frozen=True, slots=True)
class ServiceName:
    """`<svc>.<ns>.svc.<zone>.` (R8, R9, R17, R18, R26)."""

    zone: str
    namespace: str
    service: str


@dataclass(frozen=True, slots=True)
class EndpointName:
    """`<label>.<svc>.<ns>.svc.<zone>.` (R20, R21; N6 for non-headless Services)."""

    zone: str
    namespace: str
    service: str
    label: str


@dataclass(frozen=True, slots=True)
class ProtocolName:
    """`_<proto>.<svc>.<ns>.svc.<zone>.`: empty non-terminal above SRV names (D3)."""

    zone: str
    namespace: str
    service: str
    protocol: str  # without the underscore


@dataclass(frozen=True, slots=True)
class PortName:
    """`_<port>._<proto>.<svc>.<ns>.svc.<zone>.` (SRV, R10, R22)."""

    zone: str
    namespace: str
    service: str
    port: str  # the port name, without the underscore
    protocol: str  # without the underscore


@dataclass(frozen=True, slots=True)
class PodRoot:
    """`pod.<zone>.`: empty non-terminal above pod records (P1)."""

    zone: str


@dataclass(frozen=True, slots=True)
class PodNamespace:
    """`<ns>.pod.<zone>.`: empty non-terminal above a namespace's pod records (P1)."""

    zone: str
    namespace: str


@dataclass(frozen=True, slots=True)
class PodName:
    """`<dashed-ip>.<ns>.pod.<zone>.` (P1, E6); `address` None if the label is no IP."""

    zone: str
    namespace: str
    address: IPAddress | None


# ---- shapes of names in the reverse trees -----------------------------------------------


@dataclass(frozen=True, slots=True)
class ReverseAddress:
    """A complete reverse name: 4 octets under in-addr.arpa, 32 nibbles under ip6.arpa."""

    zone: str
    address: IPAddress


@dataclass(frozen=True, slots=True)
class ReversePrefix:
    """A partial reverse name: the network of all addresses below it (D3, RFC 8020)."""

    zone: str
    network: IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Nowhere:
    """A name inside a served zone whose shape can never name anything: NXDOMAIN."""

    zone: str


Name = (
    Apex
    | DnsVersion
    | DnsRoot
    | NameServer
    | ServiceRoot
    | ServiceNamespace
    | ServiceName
    | EndpointName
    | ProtocolName
    | PortName
    | PodRoot
    | PodNamespace
    | PodName
    | ReverseAddress
    | ReversePrefix
    | Nowhere
)


def parse_name(lname: str, *, zone: str) -> Name | None:
    """The shape of a lower-case name, or None when it lies in no served zone (D6).

    `zone` is the cluster domain, with or without the trailing dot.
    """
    lname = absolute(lname)
    apex = served_zone(lname, zone=zone)
    if apex is None:
        return None
    if lname == apex:
        return Apex(apex)
    labels = lname[: -len(apex) - 1].split(".")
    if "" in labels:  # `a..b`: no such name can exist
        return Nowhere(apex)
    if apex == IN_ADDR_ARPA:
        return _parse_in_addr(labels)
    if apex == IP6_ARPA:
        return _parse_ip6(labels)
    return _parse_cluster(labels, apex)


def _parse_cluster(labels: list[str], zone: str) -> Name:
    """Parse right to left below the cluster zone (CoreDNS parse.go's grammar)."""
    n = len(labels)
    top = labels[-1]
    if n == 1:
        if top == "dns-version":
            return DnsVersion(zone)
        if top == "svc":
            return ServiceRoot(zone)
        if top == "pod":
            return PodRoot(zone)
        if top == "dns":
            return DnsRoot(zone)
        return Nowhere(zone)
    if top == "svc":
        ns = labels[-2]
        if n == 2:
            return ServiceNamespace(zone, ns)
        svc = labels[-3]
        if n == 3:
            return ServiceName(zone, ns, svc)
        first = labels[0]
        if n == 4:
            # Hostnames are DNS-1123 labels and never start with "_" (RFC 2782 names do).
            if first.startswith("_"):
                return ProtocolName(zone, ns, svc, first[1:])
            return EndpointName(zone, ns, svc, first)
        if n == 5 and first.startswith("_") and labels[1].startswith("_"):
            return PortName(zone, ns, svc, first[1:], labels[1][1:])
        return Nowhere(zone)  # extra labels below a valid shape; wildcards are unsupported
    if top == "pod":
        if n == 2:
            return PodNamespace(zone, labels[0])
        if n == 3:
            return PodName(zone, labels[1], pod_address(labels[0]))
        return Nowhere(zone)
    if top == "dns" and labels == ["ns", "dns"]:
        return NameServer(zone)
    return Nowhere(zone)


def pod_address(label: str) -> IPAddress | None:
    """The address a pod label spells, or None (P1).

    CoreDNS's rule: exactly three dashes and no `--` is IPv4 (`10-244-0-5`), anything else
    is IPv6 with dashes for colons (`fd00--1`). Leading zeros in IPv4 octets are refused,
    like Python's and Go's address parsers do.
    """
    try:
        if label.count("-") == 3 and "--" not in label:
            return IPv4Address(label.replace("-", "."))
        return IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None


def _octet(label: str) -> int | None:
    """A reverse-name octet: ASCII decimal 0..255 without leading zeros.

    RFC 1035 §3.5 writes each octet as a decimal number; the canonical names never carry
    leading zeros, so `010.0.0.10.in-addr.arpa.` names no address and does not exist.
    """
    if not (label.isascii() and label.isdigit()) or len(label) > 3:
        return None
    if len(label) > 1 and label[0] == "0":
        return None
    value = int(label)
    return value if value <= 255 else None


def _parse_in_addr(labels: list[str]) -> Name:
    """`d.c.b.a.in-addr.arpa.` or a prefix of it (R14, R24)."""
    if len(labels) > 4:
        return Nowhere(IN_ADDR_ARPA)
    octets = [_octet(label) for label in reversed(labels)]
    value = 0
    for octet in octets:
        if octet is None:
            return Nowhere(IN_ADDR_ARPA)
        value = value << 8 | octet
    bits = 8 * len(octets)
    if bits == 32:
        return ReverseAddress(IN_ADDR_ARPA, IPv4Address(value))
    return ReversePrefix(IN_ADDR_ARPA, IPv4Network((value << (32 - bits), bits)))


def _parse_ip6(labels: list[str]) -> Name:
    """A reversed nibble name under `ip6.arpa.` or a prefix of it (R15, R25; RFC 3596 §2.5)."""
    if len(labels) > 32 or any(len(x) != 1 or x not in _HEX_DIGITS for x in labels):
        return Nowhere(IP6_ARPA)
    value = int("".join(reversed(labels)), 16)
    bits = 4 * len(labels)
    if bits == 128:
        return ReverseAddress(IP6_ARPA, IPv6Address(value))
    return ReversePrefix(IP6_ARPA, IPv6Network((value << (128 - bits), bits)))
