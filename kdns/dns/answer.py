"""Authoritative answers for the cluster zone and the reverse trees, from a `ClusterView`.

`answer()` decides every record, rcode and section of a reply for a name inside the
cluster zone, `in-addr.arpa.` or `ip6.arpa.` (use `served_zone()` to route). It follows
docs/rules.md: the R rules for records, D1-D3 for NXDOMAIN versus NODATA, D5 for
CNAMEs, P1 for pod records, and kdns's choice in each conflict (C1-C6).

Choices made here where the spec leaves room (docs/rules.md, "kdns's own choices"):
- Owner names are written lower-case (D4 allows it); replies depend only on
  (lower-cased name, type, data), so a reply cache may key on the lower-cased name.
- ANY returns every record the name owns (RFC 1035 semantics; RFC 8482 lets a server
  return less, which we do not need). ExternalName names answer ANY with the CNAME only.
- AXFR and IXFR are REFUSED (D8).
- An ExternalName that parses as an IP address is not answered: NXDOMAIN, as CoreDNS does
  (coredns#2324; kube-dns answered it).
- A CNAME chain that loops or exceeds `MAX_CHAIN` CNAMEs stops: NOERROR with the CNAMEs.
- An NXDOMAIN inside a reverse tree sets `fallthrough` (CoreDNS `fallthrough
  in-addr.arpa ip6.arpa`) unless the address lies in the cluster's own ranges
  (`AnswerConfig.cluster_networks`, the service and pod CIDRs): kdns is the authority for
  those, and no upstream knows them.
- `svc.<zone>` exists while any Service does, `<ns>.svc.<zone>` while the namespace has a
  Service (D3 read strictly; CoreDNS answers NODATA for any existing namespace).
- `pod.<zone>` exists whenever pod records are enabled; `<ns>.pod.<zone>` exists when the
  namespace does (also under `verified`, which cannot enumerate pods cheaply).
- Headless SRV (R22, Conflict 2): for each ready endpoint and each Service port, the
  endpoint's port of the same name and protocol; if the endpoint's slice lists no such
  port, the Service's port (spec R22's own reading) so that N x M records always exist.

Pure: no I/O, no asyncio, no wire format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from kdns.cluster.model import IPAddress, Service, ServicePort
from kdns.config.settings import PodMode
from kdns.dns.names import (
    IN_ADDR_ARPA,
    IP6_ARPA,
    Apex,
    DnsRoot,
    DnsVersion,
    EndpointName,
    Name,
    NameServer,
    Nowhere,
    PodName,
    PodNamespace,
    PodRoot,
    PortName,
    ProtocolName,
    ReverseAddress,
    ReversePrefix,
    ServiceName,
    ServiceNamespace,
    ServiceRoot,
    absolute,
    parse_name,
)
from kdns.dns.names import served_zone as _served_zone
from kdns.dns.records import (
    AAAA,
    CNAME,
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
from kdns.dns.view import ClusterView, ReadyEndpoint

SCHEMA_VERSION = "1.1.0"  # R2
DNS_VERSION_TTL = 28800  # R2's example TTL, CoreDNS's fixed value
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's SOA timers
SOA_MAX_TTL = 300  # SOA record TTL = min(ttl, 300), CoreDNS
MAX_CHAIN = 8  # CNAMEs followed inside the served zones before giving up

# The record types ANY collects, in the order they are listed.
_ANY_TYPES = (
    RType.SOA,
    RType.NS,
    RType.CNAME,
    RType.A,
    RType.AAAA,
    RType.TXT,
    RType.SRV,
    RType.PTR,
)


@dataclass(frozen=True, slots=True)
class AnswerConfig:
    """What the answers depend on besides the cluster data."""

    zone: str  # the cluster domain; normalised to lower-case with a trailing dot
    ttl: int  # the configured record TTL (N1)
    pods: PodMode
    self_addresses: tuple[IPAddress, ...] = ()  # NS glue when kube-system/kube-dns is absent
    # The cluster's address ranges (service and pod CIDRs): kdns is the authority for their
    # reverse names, so a miss there is a final NXDOMAIN, never sent upstream.
    cluster_networks: tuple[IPv4Network | IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", absolute(self.zone.lower()))


def served_zone(lname: str, *, zone: str) -> str | None:
    """The apex of the served zone holding `lname` ("cluster.local.", "in-addr.arpa.",
    "ip6.arpa."), or None when `answer()` must not be asked (D6)."""
    return _served_zone(lname, zone=zone)


def answer(question: Question, view: ClusterView, *, config: AnswerConfig) -> Reply:
    """The authoritative reply to a question about a name in a served zone."""
    lname = absolute(question.lname)
    name = parse_name(lname, zone=config.zone)
    if name is None:
        # D6: not ours; the handler should have routed it elsewhere.
        return Reply(rcode=Rcode.REFUSED, authoritative=False)
    if question.qtype in (RType.AXFR, RType.IXFR):
        return Reply(rcode=Rcode.REFUSED, authoritative=False)  # D8
    lookup = _Lookup(view, config)
    if question.qtype == RType.ANY:
        reply = lookup.any(name, lname)
    else:
        reply = lookup.resolve(name, lname, question.qtype)
    if reply.rcode == Rcode.NXDOMAIN and not view.synced:
        # Before the first complete list a miss may be a name not yet seen: never a
        # cacheable NXDOMAIN (CoreDNS handler.go; kubernetes/dns#186).
        return Reply(
            rcode=Rcode.SERVFAIL,
            answer=reply.answer,
            authority=reply.authority,
            cacheable=False,
            fallthrough=reply.fallthrough,
        )
    return reply


@dataclass(slots=True)
class _Found:
    """What a name owns of one type; `cname` is set for an ExternalName to follow."""

    answer: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    cname: str | None = None


def _unique(records: Iterable[Record]) -> list[Record]:
    """An RRset holds each record once (RFC 2181 §5)."""
    return list(dict.fromkeys(records))


def _address_record(owner: str, ttl: int, address: IPAddress) -> Record:
    if isinstance(address, IPv4Address):
        return Record(owner, ttl, A(address))
    return Record(owner, ttl, AAAA(address))


def _family(qtype: int) -> type[IPv4Address] | type[IPv6Address] | None:
    if qtype == RType.A:
        return IPv4Address
    if qtype == RType.AAAA:
        return IPv6Address
    return None


def served_service(
    view: ClusterView, ns: str, svc: str
) -> tuple[Service, Sequence[ReadyEndpoint]] | None:
    """The Service and its ready endpoints, if the Service's name exists.

    R19: a headless Service without ready endpoints does not exist, nor anything below
    it. An IP-looking ExternalName is not served (CoreDNS, coredns#2324).
    """
    service = view.service(ns, svc)
    if service is None:
        return None
    if service.external_name is not None:
        return None if _is_ip(service.external_name) else (service, ())
    endpoints = view.endpoints(ns, svc)
    if service.headless and not endpoints:
        return None
    return service, endpoints


def service_below(
    view: ClusterView, ns: str, svc: str
) -> tuple[Service, Sequence[ReadyEndpoint]] | None:
    """`served_service`, when names below the Service can exist: not below an ExternalName
    (N11, CoreDNS)."""
    found = served_service(view, ns, svc)
    return None if found is None or found[0].external_name is not None else found


def named_port(service: Service, protocol: str, port: str | None = None) -> bool:
    """Whether the Service has a named port of `protocol` (named `port`, when given): the
    names `_<proto>.<svc>...` (D3) and `_<port>._<proto>.<svc>...` (R10, R22) exist."""
    return any(
        p.name and p.protocol == protocol and (port is None or p.name == port)
        for p in service.ports
    )


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


class _Lookup:
    """One answer's worth of lookups against the view."""

    def __init__(self, view: ClusterView, config: AnswerConfig) -> None:
        self.view = view
        self.config = config
        self.zone = config.zone
        self.ttl = config.ttl

    # ---- the reply ---------------------------------------------------------------------

    def resolve(self, name: Name, lname: str, qtype: int) -> Reply:
        """Answer one type, following in-zone CNAMEs (D5)."""
        answers: list[Record] = []
        additional: list[Record] = []
        seen = {lname}
        while True:
            found = self.find(name, lname, qtype)
            if found is None:
                return self.negative(name, Rcode.NXDOMAIN, answers)
            answers.extend(found.answer)
            additional.extend(found.additional)
            target = found.cname
            if target is None or qtype == RType.CNAME:
                if not found.answer:
                    return self.negative(name, Rcode.NOERROR, answers)  # NODATA (D1)
                break
            # D5 / RFC 1034 §4.3.2 step 3a: the CNAME first, then the target's records.
            next_name = parse_name(target, zone=self.zone)
            if next_name is None:
                # R27: the target is outside our zones; the handler may resolve it upstream.
                return Reply(answer=tuple(answers), chase=target, cacheable=False)
            if target in seen or len(seen) > MAX_CHAIN:
                break  # a loop (`x CNAME x`) or an over-long chain: stop here
            seen.add(target)
            name, lname = next_name, target
        return Reply(answer=tuple(answers), additional=tuple(_unique(additional)))

    def any(self, name: Name, lname: str) -> Reply:
        """ANY: every record the name owns (RFC 8482 allows a subset; this is all)."""
        answers: list[Record] = []
        for qtype in _ANY_TYPES:
            found = self.find(name, lname, qtype)
            if found is None:
                return self.negative(name, Rcode.NXDOMAIN, [])
            answers.extend(found.answer)
            if found.cname is not None:
                break  # an ExternalName owns its CNAME only
        answers = _unique(answers)
        if not answers:
            return self.negative(name, Rcode.NOERROR, [])
        return Reply(answer=tuple(answers))

    def negative(self, name: Name, rcode: Rcode, answers: list[Record]) -> Reply:
        """NXDOMAIN or NODATA with the zone's SOA in authority (D1, D2; RFC 2308 §3)."""
        reverse = name.zone in (IN_ADDR_ARPA, IP6_ARPA)
        return Reply(
            rcode=rcode,
            answer=tuple(answers),
            authority=(self.soa(name.zone),),
            fallthrough=rcode == Rcode.NXDOMAIN and reverse and not self._in_cluster(name),
        )

    def _in_cluster(self, name: Name) -> bool:
        """The reverse name lies inside the cluster's own address ranges."""
        nets = self.config.cluster_networks
        match name:
            case ReverseAddress(address=address):
                return any(address in net for net in nets)
            case ReversePrefix(network=network):
                return any(
                    network.version == net.version and network.subnet_of(net)  # type: ignore[arg-type]
                    for net in nets
                )
        return False

    # ---- zone records ------------------------------------------------------------------

    def soa(self, apex: str) -> Record:
        """D7: `<apex> SOA ns.dns.<zone>. hostmaster.<zone>. serial 7200 1800 86400 ttl`."""
        rdata = SOA(
            f"ns.dns.{self.zone}",
            f"hostmaster.{self.zone}",
            self.view.serial & 0xFFFFFFFF,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.ttl,
        )
        return Record(apex, min(self.ttl, SOA_MAX_TTL), rdata)

    def ns_addresses(self) -> tuple[IPAddress, ...]:
        """Where `ns.dns.<zone>` points: kube-system/kube-dns's ClusterIPs, else ours."""
        kube_dns = self.view.service("kube-system", "kube-dns")
        if kube_dns is not None and kube_dns.cluster_ips:
            return kube_dns.cluster_ips
        return self.config.self_addresses

    def addresses(self, owner: str, qtype: int, addresses: Iterable[IPAddress]) -> list[Record]:
        family = _family(qtype)
        if family is None:
            return []
        return _unique(
            _address_record(owner, self.ttl, a) for a in addresses if isinstance(a, family)
        )

    # ---- what a name owns --------------------------------------------------------------

    def find(self, name: Name, owner: str, qtype: int) -> _Found | None:
        """The records of type `qtype` at `name` (owner `owner`), or None if the name does
        not exist (D1: a name exists if it owns records or has descendants)."""
        match name:
            case Apex(zone=apex):
                return self.apex(apex, qtype)
            case DnsVersion():
                if qtype == RType.TXT:
                    return _Found([Record(owner, DNS_VERSION_TTL, TXT((SCHEMA_VERSION,)))])
                return _Found()  # Conflict 5: other types are NODATA, not NXDOMAIN
            case DnsRoot():
                return _Found()  # D3: empty non-terminal above ns.dns
            case NameServer():
                return _Found(self.addresses(owner, qtype, self.ns_addresses()))
            case ServiceRoot():
                return _Found() if self.view.has_services() else None
            case ServiceNamespace(namespace=ns):
                return _Found() if self.view.has_services(ns) else None
            case ServiceName(namespace=ns, service=svc):
                return self.service_name(ns, svc, owner, qtype)
            case EndpointName(namespace=ns, service=svc, label=label):
                return self.endpoint_name(ns, svc, label, owner, qtype)
            case ProtocolName(namespace=ns, service=svc, protocol=proto):
                return self.protocol_name(ns, svc, proto)
            case PortName(namespace=ns, service=svc, port=port, protocol=proto):
                return self.port_name(ns, svc, port, proto, qtype)
            case PodRoot():
                return None if self.config.pods is PodMode.DISABLED else _Found()
            case PodNamespace(namespace=ns):
                if self.config.pods is PodMode.DISABLED or not self.view.namespace_exists(ns):
                    return None
                return _Found()
            case PodName(namespace=ns, address=address):
                return self.pod_name(ns, address, owner, qtype)
            case ReverseAddress(address=address):
                return self.reverse_address(address, owner, qtype)
            case ReversePrefix(network=network):
                return _Found() if self.view.reverse_prefix_exists(network) else None
            case Nowhere():
                return None
        raise AssertionError(name)  # pragma: no cover - the match above is exhaustive

    def apex(self, apex: str, qtype: int) -> _Found:
        """D7: the SOA and NS of a zone; every other type is NODATA (CoreDNS: `<zone> A`)."""
        if qtype == RType.SOA:
            return _Found([self.soa(apex)])
        if qtype == RType.NS:
            target = f"ns.dns.{self.zone}"
            glue = [_address_record(target, self.ttl, a) for a in self.ns_addresses()]
            return _Found([Record(apex, self.ttl, NS(target))], _unique(glue))
        return _Found()

    def service(self, ns: str, svc: str) -> tuple[Service, Sequence[ReadyEndpoint]] | None:
        return served_service(self.view, ns, svc)

    def service_name(self, ns: str, svc: str, owner: str, qtype: int) -> _Found | None:
        found = self.service(ns, svc)
        if found is None:
            return None
        service, endpoints = found
        if service.external_name is not None:
            # R26, D5: the CNAME answers every type; the caller follows it unless CNAME.
            target = absolute(service.external_name.lower())
            return _Found([Record(owner, self.ttl, CNAME(target))], cname=target)
        if qtype == RType.SRV:
            return self.srv(service, endpoints, port=None, protocol=None)
        if service.headless:  # R17, R18
            return _Found(self.addresses(owner, qtype, (e.address for e in endpoints)))
        return _Found(self.addresses(owner, qtype, service.cluster_ips))  # R8, R9

    def endpoint_name(self, ns: str, svc: str, label: str, owner: str, qtype: int) -> _Found | None:
        """R20, R21 (and N6: non-headless Services too, from their endpoints)."""
        found = service_below(self.view, ns, svc)
        if found is None:
            return None
        addresses = [e.address for e in found[1] if e.label == label]
        if not addresses:
            return None
        return _Found(self.addresses(owner, qtype, addresses))

    def protocol_name(self, ns: str, svc: str, proto: str) -> _Found | None:
        """D3: `_<proto>.<svc>...` exists iff some SRV name lies below it."""
        found = service_below(self.view, ns, svc)
        return _Found() if found is not None and named_port(found[0], proto) else None

    def port_name(self, ns: str, svc: str, port: str, proto: str, qtype: int) -> _Found | None:
        """R10, R22: the SRV RRset of one named port; other types are NODATA."""
        found = service_below(self.view, ns, svc)
        if found is None or not port:
            return None
        service, endpoints = found
        srv = self.srv(service, endpoints, port=port, protocol=proto)
        if not srv.answer:
            return None
        return srv if qtype == RType.SRV else _Found()

    def srv(
        self,
        service: Service,
        endpoints: Sequence[ReadyEndpoint],
        *,
        port: str | None,
        protocol: str | None,
    ) -> _Found:
        """SRV records for one named port, or (port None, N5) for every port, unnamed
        included. Priority 0, weight floor(100/N) at least 1 (CoreDNS), glue in additional
        (R13, R23)."""
        if port is None:
            ports = list(service.ports)
        else:
            ports = [p for p in service.ports if p.name == port and p.protocol == protocol]
        if not ports:
            return _Found()
        owner = f"_{port}._{protocol}." if port is not None else ""
        owner += f"{service.name}.{service.namespace}.svc.{self.zone}"
        service_target = f"{service.name}.{service.namespace}.svc.{self.zone}"
        # (port, target) pairs in order, each once; targets map to their glue addresses.
        pairs: dict[tuple[int, str], None] = {}
        glue: dict[str, list[IPAddress]] = {}
        if not service.headless:
            # R10: the Service's port, the Service's name.
            for p in ports:
                pairs[(p.port, service_target)] = None
            glue[service_target] = list(service.cluster_ips)
        else:
            # R22 with Conflict 2: one per (ready endpoint, port), the endpoint's port.
            for endpoint in endpoints:
                target = f"{endpoint.label}.{service_target}"
                glue.setdefault(target, []).append(endpoint.address)
                for p in ports:
                    pairs[(_endpoint_port(endpoint, p), target)] = None
        weight = max(1, 100 // len(pairs))
        records = [
            Record(owner, self.ttl, SRV(0, weight, number, target)) for number, target in pairs
        ]
        additional = [
            _address_record(target, self.ttl, address)
            for target, addresses in glue.items()
            for address in addresses
        ]
        return _Found(records, _unique(additional))

    def pod_name(self, ns: str, address: IPAddress | None, owner: str, qtype: int) -> _Found | None:
        """P1, E6: `<dashed-ip>.<ns>.pod.<zone>` per the `pods` mode (Conflict 4)."""
        mode = self.config.pods
        if mode is PodMode.DISABLED or address is None:
            return None
        if not self.view.namespace_exists(ns):
            return None
        if mode is PodMode.VERIFIED and not self.view.pod_exists(ns, address):
            return None
        return _Found(self.addresses(owner, qtype, (address,)))

    def _has_service(self, ns: str, svc: str) -> bool:
        return self.view.service(ns, svc) is not None

    def reverse_address(self, address: IPAddress, owner: str, qtype: int) -> _Found | None:
        """R14, R15 (ClusterIPs), R24, R25 and N7 (endpoints, one PTR per Service)."""
        # Only owners whose Service still exists: a slice may outlive its Service.
        owners = [
            o for o in self.view.reverse(address) if self._has_service(o.namespace, o.service)
        ]
        if not owners:
            return None
        if qtype != RType.PTR:
            return _Found()
        targets = (
            f"{o.service}.{o.namespace}.svc.{self.zone}"
            if o.label is None
            else f"{o.label}.{o.service}.{o.namespace}.svc.{self.zone}"
            for o in owners
        )
        return _Found(_unique(Record(owner, self.ttl, PTR(t)) for t in targets))


def _endpoint_port(endpoint: ReadyEndpoint, port: ServicePort) -> int:
    """Conflict 2: the endpoint's port of the same name and protocol, else the Service's."""
    for p in endpoint.ports:
        if p.name == port.name and p.protocol == port.protocol:
            return p.port
    return port.port
