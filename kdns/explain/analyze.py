"""Why a reply is what it is: the cluster data behind a name, read against docs/rules.md.

`analyze()` gets the real reply (already obtained by `kdns.explain.run`) and the data, and
says which rule decided it, which endpoints were left out and why, and for a name that does
not exist what nearby does. It never decides the answer itself: the reasons are derived from
the same rules `kdns.dns.answer` implements, and which endpoints were answered is read from
the reply. Pure: no I/O, no asyncio, no wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Protocol

from kdns.cluster.index import dashed_label
from kdns.cluster.model import Endpoint, EndpointSlice, IPAddress, Namespace, Pod, Service
from kdns.config.model import KubernetesConfig
from kdns.config.settings import PodMode
from kdns.dns.names import (
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
from kdns.dns.records import AAAA, SRV, A, Rcode, Record, RType
from kdns.dns.view import ClusterView
from kdns.explain.model import (
    AnswerInfo,
    EndpointInfo,
    Explanation,
    ForwardInfo,
    PodInfo,
    Reason,
    RouteInfo,
    ServiceInfo,
    SliceInfo,
    Suggestion,
)
from kdns.explain.typos import near

_REVERSE = ("in-addr.arpa.", "ip6.arpa.")

Filter = Callable[[str, str], str | None]
"""A filter on Services: (namespace, name) -> why the Service is hidden, or None. The hook
for filters kdns does not have yet (CoreDNS's `namespaces` option); none is passed today."""


class ExplainView(ClusterView, Protocol):
    """What the analysis reads besides `ClusterView`: every object, ready or not
    (`kdns.cluster.index.Index` has all of it)."""

    @property
    def services(self) -> Mapping[tuple[str, str], Service]: ...
    @property
    def slices(self) -> Mapping[tuple[str, str], EndpointSlice]: ...
    @property
    def namespaces(self) -> Mapping[str, Namespace]: ...
    @property
    def pods(self) -> Mapping[tuple[str, str], Pod]: ...

    def slices_of(self, namespace: str, service: str) -> Sequence[EndpointSlice]: ...


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """The parts of a server block the reasons depend on."""

    zones: tuple[str, ...]
    chain: tuple[str, ...]
    kubernetes: KubernetesConfig | None = None
    forward_from: str | None = None  # the `forward` plugin's FROM zone; None = no forward
    upstreams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Traced:
    """The real reply and who produced it."""

    answer: AnswerInfo
    records: tuple[Record, ...] = ()  # the answer section, as records
    rcode: int | None = None  # None when nothing was obtained
    plugin: str = ""
    upstream: str | None = None  # the upstream that sent a relayed reply
    error: str | None = None  # why the reply is SERVFAIL, when something failed
    # Offline: the names the `forward` plugin would have sent upstream (nothing was sent).
    not_forwarded: tuple[str, ...] = ()


def analyze(
    name: str,
    qtype: int,
    *,
    view: ExplainView,
    traced: Traced,
    route: RouteInfo,
    block: BlockInfo | None,
    source: str,
    filters: Sequence[Filter] = (),
) -> Explanation:
    """Explain the reply `traced` to (`name`, `qtype`)."""
    lname = absolute(name.lower())
    exp = Explanation(
        name=absolute(name),
        type=_type_name(qtype),
        source=source,
        answer=traced.answer,
        route=route,
    )
    if route.zone is None or block is None:
        exp.reasons.append(
            Reason(
                "refused",
                "no server block serves this name and none forwards it, so it is REFUSED",
                "D6",
            )
        )
        _cluster_lookalikes(exp, view, lname, zones=_cluster_zones(None))
        return exp
    kube = block.kubernetes
    kube_zone = _longest_zone(lname, kube.zones) if kube is not None else None
    if kube is not None and kube_zone is not None:
        cluster = _Cluster(exp, view, kube, kube_zone, lname, qtype, traced, filters, block)
        cluster.explain()
    elif traced.plugin == "file":
        exp.reasons.append(Reason("zone-file", "answered from a zone file (the `file` plugin)"))
    elif block.forward_from is not None and _in_zone(lname, block.forward_from):
        exp.reasons.append(
            Reason(
                "forwarded",
                f"{lname} is outside the cluster zones, so it goes to the upstreams "
                f"({', '.join(block.upstreams) or 'none'})",
                "D6",
            )
        )
        _cluster_lookalikes(exp, view, lname, zones=_cluster_zones(kube))
    else:
        who = traced.plugin or "no plugin"
        exp.reasons.append(Reason("other", f"{who} answered; no cluster data is involved"))
    _forwarding(exp, lname, block, traced)
    if traced.error and traced.rcode == Rcode.SERVFAIL:
        exp.reasons.append(Reason("other", f"SERVFAIL because {traced.error}"))
    return exp


# ---- helpers ------------------------------------------------------------------------------


def _type_name(qtype: int) -> str:
    try:
        return RType(qtype).name
    except ValueError:
        return f"TYPE{qtype}"


def _in_zone(lname: str, zone: str) -> bool:
    return zone == "." or lname == zone or lname.endswith("." + zone)


def _longest_zone(lname: str, zones: Iterable[str]) -> str | None:
    best: str | None = None
    for zone in zones:
        if _in_zone(lname, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def _cluster_zones(kube: KubernetesConfig | None) -> tuple[str, ...]:
    if kube is None:
        return ("cluster.local.",)
    return tuple(z for z in kube.zones if not z.endswith(_REVERSE)) or ("cluster.local.",)


def _family(qtype: int) -> type[IPv4Address] | type[IPv6Address] | None:
    if qtype == RType.A:
        return IPv4Address
    if qtype == RType.AAAA:
        return IPv6Address
    return None


def _family_name(family: type[IPv4Address] | type[IPv6Address]) -> str:
    return "IPv4" if family is IPv4Address else "IPv6"


def _port_text(name: str, protocol: str, number: int) -> str:
    return f"{name or '(unnamed)'}/{protocol}/{number}"


def _service_info(service: Service) -> ServiceInfo:
    if service.external_name is not None:
        kind = "ExternalName"
    elif service.headless:
        kind = "headless"
    else:
        kind = "ClusterIP"
    return ServiceInfo(
        namespace=service.namespace,
        name=service.name,
        type=kind,
        cluster_ips=tuple(str(ip) for ip in service.cluster_ips),
        external_name=service.external_name,
        ports=tuple(_port_text(p.name, p.protocol, p.port) for p in service.ports),
    )


def _lookalike_pairs(lname: str, zone: str) -> list[tuple[str, str]]:
    """(service, namespace) readings of neighbouring labels of a name that is not a Service
    name: `web.default.default.svc.<zone>` (a search-list expansion), `web.default.<zone>`
    (no `svc`), `web.default.` (a short name)."""
    body = lname[: -len(zone) - 1] if lname.endswith("." + zone) else lname.rstrip(".")
    labels = [label for label in body.split(".") if label]
    return [(labels[i], labels[i + 1]) for i in range(len(labels) - 1)]


def _cluster_lookalikes(
    exp: Explanation, view: ExplainView, lname: str, *, zones: Sequence[str]
) -> None:
    """Suggest Service names that the labels of `lname` spell in another arrangement."""
    zone = zones[0]
    for svc, ns in _lookalike_pairs(lname, zone):
        if svc == "svc" or ns == "svc":
            continue
        candidate = f"{svc}.{ns}.svc.{zone}"
        if candidate != lname and view.service(ns, svc) is not None:
            _suggest(exp, candidate, f"Service {ns}/{svc} exists under this name")


def _suggest(exp: Explanation, name: str, why: str) -> None:
    if all(s.name != name for s in exp.suggestions):
        exp.suggestions.append(Suggestion(name, why))


def _forwarding(exp: Explanation, lname: str, block: BlockInfo, traced: Traced) -> None:
    """Where the name (or an ExternalName target, or a reverse miss) went upstream."""
    if traced.not_forwarded:
        exp.forward = ForwardInfo(
            name=traced.not_forwarded[0], upstreams=block.upstreams, asked=False
        )
    elif traced.plugin == "cache":
        exp.forward = ForwardInfo(
            name=lname, upstreams=block.upstreams, asked=True, from_cache=True
        )
    elif traced.plugin == "forward":
        exp.forward = ForwardInfo(
            name=lname, upstreams=block.upstreams, asked=True, answered_by=traced.upstream
        )


# ---- the cluster zone ---------------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    """The records of the answer section, for telling which endpoints made it in."""

    addresses: set[IPAddress] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, records: Iterable[Record]) -> _Found:
        found = cls()
        for record in records:
            rdata = record.rdata
            if isinstance(rdata, A | AAAA):
                found.addresses.add(rdata.address)
            elif isinstance(rdata, SRV):
                found.targets.add(rdata.target.lower())
        return found


class _Cluster:
    """The reasons for a name inside the `kubernetes` plugin's zones."""

    def __init__(
        self,
        exp: Explanation,
        view: ExplainView,
        kube: KubernetesConfig,
        kube_zone: str,
        lname: str,
        qtype: int,
        traced: Traced,
        filters: Sequence[Filter],
        block: BlockInfo,
    ) -> None:
        self.exp = exp
        self.block = block
        self.view = view
        self.kube = kube
        self.lname = lname
        self.qtype = qtype
        self.traced = traced
        self.filters = filters
        forward_zones = _cluster_zones(kube)
        # Reverse names are answered with the primary cluster zone (PTR targets).
        self.zone = forward_zones[0] if kube_zone.endswith(_REVERSE) else kube_zone
        self.found = _Found.of(traced.records)

    @property
    def rcode(self) -> int | None:
        return self.traced.rcode

    def reason(self, code: str, message: str, rule: str = "") -> None:
        self.exp.reasons.append(Reason(code, message, rule))

    def explain(self) -> None:
        if not self.view.synced:
            self.reason(
                "not-synced",
                "the data source has not listed every kind yet: a name not found is SERVFAIL, "
                "not NXDOMAIN, until it has (resolvers must not cache a denial of a name "
                "that may exist)",
                "kdns's own choices",
            )
        shape = parse_name(self.lname, zone=self.zone)
        match shape:
            case ServiceName(namespace=ns, service=svc):
                self.service_name(ns, svc)
            case EndpointName(namespace=ns, service=svc, label=label):
                self.endpoint_name(ns, svc, label)
            case PortName(namespace=ns, service=svc, port=port, protocol=proto):
                self.port_name(ns, svc, port, proto)
            case ProtocolName(namespace=ns, service=svc, protocol=proto):
                self.protocol_name(ns, svc, proto)
            case ServiceNamespace(namespace=ns):
                self.service_namespace(ns)
            case PodName(namespace=ns, address=address):
                self.pod_name(ns, address)
            case PodNamespace(namespace=ns):
                self.pod_namespace(ns)
            case PodRoot():
                self.pod_root()
            case ReverseAddress(address=address):
                self.reverse(address)
            case ReversePrefix(network=network):
                self.reverse_prefix(network)
            case Apex() | DnsVersion() | DnsRoot() | NameServer() | ServiceRoot():
                self.structure(shape)
            case Nowhere() | None:
                self.nowhere()

    # ---- Services ------------------------------------------------------------------------

    def lookup(self, ns: str, svc: str) -> Service | None:
        """The Service, shown with its slices and pods; when missing, why and what is near."""
        service = self.view.service(ns, svc)
        if service is None:
            self.missing_service(ns, svc)
            return None
        self.exp.service = _service_info(service)
        for hidden in (f(ns, svc) for f in self.filters):
            if hidden:
                self.reason("filtered", f"Service {ns}/{svc} is filtered out: {hidden}")
        return service

    def hidden(self, ns: str, svc: str) -> str | None:
        for f in self.filters:
            why = f(ns, svc)
            if why:
                return why
        return None

    def missing_service(self, ns: str, svc: str) -> None:
        view, zone = self.view, self.zone
        namespaces = set(view.namespaces) | {n for n, _ in view.services}
        if not view.namespace_exists(ns):
            close = near(ns, namespaces)
            hint = f" ({', '.join(close)} one typo away)" if close else ""
            self.reason("no-namespace", f"namespace {ns} does not exist{hint}", "D1")
            for other in close:
                if view.service(other, svc) is not None:
                    _suggest(
                        self.exp,
                        f"{svc}.{other}.svc.{zone}",
                        f"Service {svc} in namespace {other} (namespace one typo away)",
                    )
        else:
            self.reason("no-service", f"namespace {ns} exists but has no Service named {svc}", "D1")
        _cluster_lookalikes(self.exp, view, self.lname, zones=(zone,))
        in_ns = [name for n, name in view.services if n == ns]
        for typo in near(svc, in_ns):
            _suggest(self.exp, f"{typo}.{ns}.svc.{zone}", f"Service {ns}/{typo}: one typo away")
        elsewhere = sorted(n for n, name in view.services if name == svc and n != ns)
        for other in elsewhere[:5]:
            _suggest(
                self.exp,
                f"{svc}.{other}.svc.{zone}",
                f"a Service named {svc} in namespace {other}",
            )

    def external(self, service: Service) -> None:
        target = service.external_name or ""
        if _is_ip(target):
            self.reason(
                "external-name-ip",
                f"ExternalName {target} is an IP address, not a DNS name: not served, so "
                "the name does not exist (as CoreDNS)",
                "kdns's own choices",
            )
            return
        target = absolute(target)
        if self.qtype == RType.CNAME:
            message = f"an ExternalName Service: the name is a CNAME to {target}"
        else:
            message = (
                f"an ExternalName Service: every type but CNAME gets the CNAME to {target}, "
                "followed by the target's records"
            )
        self.reason("external-name", message, "R26, D5")
        if self.qtype == RType.CNAME:
            return
        if any(_in_zone(target, z) for z in self.kube.zones):
            self.reason(
                "external-name",
                f"{target} lies in a served zone: its records come from the cluster data",
                "D5",
            )
        elif self.block.forward_from is not None and _in_zone(target, self.block.forward_from):
            self.reason(
                "external-name",
                f"{target} lies outside the served zones: it is resolved through the "
                f"upstreams ({', '.join(self.block.upstreams)}) and its records follow the "
                "CNAME; when they fail, the CNAME goes alone",
                "R27",
            )
        else:
            self.reason(
                "external-name",
                f"{target} lies outside the served zones and this server block forwards "
                "nothing there, so the CNAME goes alone; the client resolves the target",
                "R27",
            )

    def ready_counts(self, ns: str, svc: str) -> tuple[int, int, int]:
        """(ready, not ready, terminating) endpoints over the Service's slices."""
        ready = not_ready = terminating = 0
        for es in self.view.slices_of(ns, svc):
            for endpoint in es.endpoints:
                if endpoint.ready:
                    ready += 1
                elif endpoint.terminating:
                    terminating += 1
                else:
                    not_ready += 1
        return ready, not_ready, terminating

    def no_ready_text(self, ns: str, svc: str) -> str:
        _, not_ready, terminating = self.ready_counts(ns, svc)
        total = not_ready + terminating
        if total == 0:
            return "it has no endpoints at all (no EndpointSlice, or no pod matches its selector)"
        if total == 1:
            return f"its one endpoint is {'terminating' if terminating else 'not ready'}"
        parts = []
        if not_ready:
            parts.append(f"{not_ready} not ready")
        if terminating:
            parts.append(f"{terminating} terminating")
        return f"none of its {total} endpoints is ready ({', '.join(parts)})"

    def headless_gone(self, ns: str, svc: str, *, below: bool = False) -> bool:
        """R19: a headless Service without ready endpoints does not exist, nor below it."""
        if self.view.endpoints(ns, svc):
            return False
        what = "names below it do" if below else "its name does"
        self.reason(
            "headless-no-ready-endpoints",
            f"headless Service {ns}/{svc} has no ready endpoint, so {what} not exist: "
            f"{self.no_ready_text(ns, svc)}",
            "R19",
        )
        return True

    def service_name(self, ns: str, svc: str) -> None:
        service = self.lookup(ns, svc)
        if service is None:
            return
        qtype, family = self.qtype, _family(self.qtype)
        if service.external_name is not None:
            self.external(service)
            return
        if service.headless:
            if self.headless_gone(ns, svc):
                self.list_endpoints(service, family=family)
                return
            ready = self.view.endpoints(ns, svc)
            if family is not None:
                mine = [e for e in ready if isinstance(e.address, family)]
                if mine:
                    self.reason(
                        "headless",
                        f"headless Service: the answer is its ready {_family_name(family)} "
                        f"endpoint addresses ({len(mine)})",
                        "R17, R18",
                    )
                else:
                    self.reason(
                        "nodata",
                        f"headless Service whose ready endpoints have no {_family_name(family)} "
                        "address: the name exists, so the answer is NODATA",
                        "R19, D1",
                    )
            elif qtype == RType.SRV:
                self.reason(
                    "headless",
                    "headless Service: one SRV record per ready endpoint and Service port, "
                    "with the endpoint's port, glue in additional",
                    "N5, R22, Conflict 2",
                )
            elif qtype == RType.ANY:
                self.reason("answered", "ANY: every record the name owns")
            else:
                self.reason("nodata", "a Service name owns A, AAAA and SRV only: NODATA", "D1")
            self.list_endpoints(service, family=family)
            return
        # ClusterIP, NodePort, LoadBalancer.
        if family is not None:
            ips = [ip for ip in service.cluster_ips if isinstance(ip, family)]
            if ips:
                self.reason(
                    "clusterip",
                    f"ClusterIP Service: the answer is its ClusterIP "
                    f"{', '.join(map(str, ips))}, whether or not any endpoint is ready",
                    "R8, R9",
                )
            else:
                self.reason(
                    "nodata",
                    f"the Service has no {_family_name(family)} ClusterIP: the name exists, "
                    "so the answer is NODATA",
                    "R9, D1",
                )
        elif qtype == RType.SRV:
            self.reason(
                "clusterip",
                "one SRV record per Service port, pointing at the Service name",
                "N5, R10",
            )
        elif qtype == RType.ANY:
            self.reason("answered", "ANY: every record the name owns")
        else:
            self.reason("nodata", "a Service name owns A, AAAA and SRV only: NODATA", "D1")
        self.clusterip_endpoints(service)

    def clusterip_endpoints(self, service: Service) -> None:
        """The endpoints behind a ClusterIP, which the answer does not list."""
        ns, svc = service.namespace, service.name
        self.list_endpoints(service, family=None, backs_clusterip=True)
        if not self.view.endpoints(ns, svc) and self.hidden(ns, svc) is None:
            self.reason(
                "no-ready-endpoints",
                f"the name resolves, but {self.no_ready_text(ns, svc)}: connections to the "
                "ClusterIP fail until an endpoint is ready",
                "R6, R8",
            )

    def endpoint_name(self, ns: str, svc: str, label: str) -> None:
        service = self.lookup(ns, svc)
        if service is None:
            return
        if service.external_name is not None:
            self.reason(
                "no-such-shape",
                "nothing exists below an ExternalName Service: NXDOMAIN",
                "N11",
            )
            return
        family = _family(self.qtype)
        if service.headless and self.headless_gone(ns, svc, below=True):
            self.list_endpoints(service, family=family, label=label)
            return
        ready = self.view.endpoints(ns, svc)
        mine = [e for e in ready if e.label == label]
        if not mine:
            unready = [
                "terminating" if e.terminating else "not ready"
                for es in self.view.slices_of(ns, svc)
                for e in es.endpoints
                for a in e.addresses
                if not e.ready and (e.hostname or dashed_label(a)) == label
            ]
            hint = f": endpoint {label} exists but is {unready[0]}" if unready else ""
            self.reason(
                "no-endpoint-label",
                f"no ready endpoint of {ns}/{svc} is named {label} (an endpoint's name is its "
                f"hostname, else its address with dashes){hint}",
                "R6, R7, R20" if unready else "R7, R20",
            )
            for close in near(label, {e.label for e in ready}):
                _suggest(
                    self.exp,
                    f"{close}.{svc}.{ns}.svc.{self.zone}",
                    f"a ready endpoint of {ns}/{svc}: one typo away",
                )
        elif family is not None and not any(isinstance(e.address, family) for e in mine):
            self.reason(
                "nodata",
                f"endpoint {label} has no {_family_name(family)} address: NODATA",
                "R21, D1",
            )
        elif family is not None:
            rule = "R20, R21" if service.headless else "N6"
            self.reason("answered", f"the addresses of ready endpoint {label}", rule)
        else:
            self.reason("nodata", "an endpoint name owns A and AAAA only: NODATA", "D1")
        self.list_endpoints(service, family=family, label=label)

    def port_name(self, ns: str, svc: str, port: str, proto: str) -> None:
        service = self.lookup(ns, svc)
        if service is None:
            return
        if service.external_name is not None:
            self.reason(
                "no-such-shape", "nothing exists below an ExternalName Service: NXDOMAIN", "N11"
            )
            return
        if service.headless and self.headless_gone(ns, svc, below=True):
            self.list_endpoints(service, family=None)
            return
        ports = [p for p in service.ports if p.name == port and p.protocol == proto]
        if not ports or not port:
            named = [_port_text(p.name, p.protocol, p.port) for p in service.ports if p.name]
            self.reason(
                "no-port",
                f"{ns}/{svc} has no port named {port or '(empty)'} with protocol {proto}; "
                f"its named ports: {', '.join(named) or 'none'} (unnamed ports get no SRV name)",
                "R10, R12",
            )
            base = f"{svc}.{ns}.svc.{self.zone}"
            names = {p.name for p in service.ports if p.name and p.protocol == proto}
            for close in near(port, names):
                _suggest(self.exp, f"_{close}._{proto}.{base}", "a named port: one typo away")
            for p in service.ports:
                if p.name == port and p.protocol != proto:
                    _suggest(self.exp, f"_{port}._{p.protocol}.{base}", "that port's protocol")
        elif self.qtype == RType.SRV:
            if service.headless:
                self.reason(
                    "headless",
                    "one SRV record per ready endpoint, with the endpoint's port and name",
                    "R22, Conflict 2",
                )
            else:
                self.reason("clusterip", "the Service's port, pointing at the Service name", "R10")
        else:
            self.reason("nodata", "the name owns an SRV record only: NODATA", "Conflict 5, D1")
        if service.headless:
            self.list_endpoints(service, family=None)
        else:
            self.clusterip_endpoints(service)

    def protocol_name(self, ns: str, svc: str, proto: str) -> None:
        service = self.lookup(ns, svc)
        if service is None:
            return
        if service.external_name is not None:
            self.reason(
                "no-such-shape", "nothing exists below an ExternalName Service: NXDOMAIN", "N11"
            )
            return
        if service.headless and self.headless_gone(ns, svc, below=True):
            return
        if any(p.name and p.protocol == proto for p in service.ports):
            self.reason(
                "structure",
                f"an empty non-terminal above the _<port>._{proto} SRV names: NODATA",
                "D3",
            )
        else:
            self.reason(
                "no-port", f"{ns}/{svc} has no named {proto} port, so nothing is below", "D3"
            )

    def service_namespace(self, ns: str) -> None:
        if self.view.has_services(ns):
            self.reason(
                "structure", f"namespace {ns} has Services: an empty non-terminal, NODATA", "D3"
            )
        elif self.view.namespace_exists(ns):
            self.reason(
                "no-service",
                f"namespace {ns} exists but has no Service, so nothing is below this name "
                "(kdns reads D3 strictly; CoreDNS answers NODATA here)",
                "D3",
            )
        else:
            self.missing_namespace(ns)

    def missing_namespace(self, ns: str) -> None:
        namespaces = set(self.view.namespaces) | {n for n, _ in self.view.services}
        close = near(ns, namespaces)
        hint = f" ({', '.join(close)} one typo away)" if close else ""
        self.reason("no-namespace", f"namespace {ns} does not exist{hint}", "D1")

    # ---- endpoints ---------------------------------------------------------------------

    def list_endpoints(
        self,
        service: Service,
        *,
        family: type[IPv4Address] | type[IPv6Address] | None,
        label: str | None = None,
        backs_clusterip: bool = False,
    ) -> None:
        """Every address of every slice of the Service, with what became of it."""
        ns, svc = service.namespace, service.name
        hidden = self.hidden(ns, svc)
        pods = self.pods_by_ip(ns)
        seen: set[tuple[str, IPAddress]] = set()
        base = f"{svc}.{ns}.svc.{self.zone}"
        used_pods: dict[str, Pod] = {}
        for es in self.view.slices_of(ns, svc):
            endpoints = es.endpoints
            self.exp.slices.append(
                SliceInfo(
                    name=es.name,
                    ports=tuple(_port_text(p.name, p.protocol, p.port) for p in es.ports),
                    endpoints=len(endpoints),
                    ready=sum(1 for e in endpoints if e.ready),
                )
            )
            for endpoint in endpoints:
                for address in endpoint.addresses:
                    name = endpoint.hostname or dashed_label(address)
                    pod = pods.get(address)
                    if pod is not None:
                        used_pods[pod.name] = pod
                    status, reason = self.classify(
                        endpoint,
                        address,
                        name,
                        family=family,
                        label=label,
                        backs_clusterip=backs_clusterip,
                        hidden=hidden,
                        target=f"{name}.{base}",
                        duplicate=(name, address) in seen,
                    )
                    if endpoint.ready:
                        seen.add((name, address))
                    self.exp.endpoints.append(
                        EndpointInfo(
                            slice=es.name,
                            address=str(address),
                            label=name,
                            ready=endpoint.ready,
                            terminating=endpoint.terminating,
                            pod=pod.name if pod is not None else None,
                            status=status,
                            reason=reason,
                        )
                    )
        self.exp.pods.extend(
            PodInfo(p.namespace, p.name, tuple(map(str, p.ips)))
            for p in sorted(used_pods.values(), key=lambda p: p.name)
        )

    def classify(
        self,
        endpoint: Endpoint,
        address: IPAddress,
        name: str,
        *,
        family: type[IPv4Address] | type[IPv6Address] | None,
        label: str | None,
        backs_clusterip: bool,
        hidden: str | None,
        target: str,
        duplicate: bool,
    ) -> tuple[str, Reason | None]:
        if hidden is not None:
            return "excluded", Reason("filtered", f"the Service is filtered out: {hidden}")
        if not endpoint.ready:
            if endpoint.terminating:
                return "excluded", Reason(
                    "terminating",
                    "terminating (conditions.terminating is true, ready is false): its pod is "
                    "shutting down",
                    "R6",
                )
            return "excluded", Reason("not-ready", "not ready (conditions.ready is false)", "R6")
        note = (
            Reason(
                "terminating",
                "terminating but ready (the Service publishes not-ready addresses)",
                "R6",
            )
            if endpoint.terminating
            else None
        )
        if label is not None and name != label:
            return "excluded", Reason("other-label", f"its name is {name}, not {label}", "R20")
        if backs_clusterip and label is None:
            return "ready", note
        if family is not None and not isinstance(address, family):
            asked = "A" if family is IPv4Address else "AAAA"
            return "excluded", Reason(
                "other-family",
                f"an IPv{address.version} address; {asked} answers "
                f"{_family_name(family)} addresses only",
                "R17, R18",
            )
        if duplicate:
            return "excluded", Reason(
                "not-in-answer",
                "a duplicate: the same name and address come from an earlier slice, and "
                "each is listed once",
                "R17",
            )
        if address in self.found.addresses or target in self.found.targets:
            return "answered", note
        if self.rcode != Rcode.NOERROR or not self.traced.records:
            return "ready", note  # a denial: the name decided it, not this endpoint
        if family is None and self.qtype not in (RType.SRV, RType.ANY):
            return "ready", note  # a type endpoints do not answer
        return "excluded", Reason(
            "not-in-answer", "ready, yet not in the answer (the reply may have been cut short)"
        )

    def pods_by_ip(self, ns: str) -> dict[IPAddress, Pod]:
        found: dict[IPAddress, Pod] = {}
        for (pod_ns, _), pod in self.view.pods.items():
            if pod_ns == ns:
                for ip in pod.ips:
                    found.setdefault(ip, pod)
        return found

    # ---- pods ----------------------------------------------------------------------------

    def pods_mode_text(self) -> str:
        return {
            PodMode.DISABLED: "disabled",
            PodMode.INSECURE: "insecure (any address in an existing namespace)",
            PodMode.VERIFIED: "verified (only addresses of running pods)",
        }[self.kube.pods]

    def pod_root(self) -> None:
        if self.kube.pods is PodMode.DISABLED:
            self.reason("pods-disabled", "pod records are disabled (pods disabled)", "P1")
        else:
            self.reason("structure", "an empty non-terminal above pod records: NODATA", "P1, D3")

    def pod_namespace(self, ns: str) -> None:
        if self.kube.pods is PodMode.DISABLED:
            self.reason("pods-disabled", "pod records are disabled (pods disabled)", "P1")
        elif self.view.namespace_exists(ns):
            self.reason("structure", f"namespace {ns} exists: an empty non-terminal", "P1, D3")
        else:
            self.missing_namespace(ns)

    def pod_name(self, ns: str, address: IPAddress | None) -> None:
        mode = self.kube.pods
        if mode is PodMode.DISABLED:
            self.reason(
                "pods-disabled",
                "pod records are disabled (--pods disabled, or a Corefile without "
                "`pods insecure|verified`, CoreDNS's default)",
                "P1, Conflict 4",
            )
            return
        if address is None:
            self.reason(
                "pod-not-found",
                "the first label is not an address with dashes (10-244-0-5, fd00--5)",
                "P1",
            )
            return
        if not self.view.namespace_exists(ns):
            self.missing_namespace(ns)
            return
        owners = sorted(
            (p for p in self.view.pods.values() if address in p.ips), key=lambda p: p.name
        )
        for pod in owners:
            if pod.namespace == ns:
                self.exp.pods.append(PodInfo(pod.namespace, pod.name, tuple(map(str, pod.ips))))
        if mode is PodMode.VERIFIED and not self.view.pod_exists(ns, address):
            self.reason(
                "pod-not-found",
                f"pods verified: no running Pod in namespace {ns} has address {address}",
                "P1",
            )
            for pod in owners:
                if pod.namespace != ns:
                    label = self.lname.split(".", 1)[0]
                    _suggest(
                        self.exp,
                        f"{label}.{pod.namespace}.pod.{self.zone}",
                        f"Pod {pod.namespace}/{pod.name} has this address",
                    )
            return
        family = _family(self.qtype)
        if family is not None and not isinstance(address, family):
            self.reason("nodata", f"{address} is not an {_family_name(family)} address", "D1")
            return
        self.reason("answered", f"pod records are {self.pods_mode_text()}", "P1")

    # ---- reverse ---------------------------------------------------------------------------

    def reverse(self, address: IPAddress) -> None:
        view = self.view
        owners = [o for o in view.reverse(address) if view.service(o.namespace, o.service)]
        if owners:
            first = owners[0]
            service = view.service(first.namespace, first.service)
            assert service is not None
            self.exp.service = _service_info(service)
            self.list_endpoints(service, family=None, backs_clusterip=True)
            if first.label is None:
                self.reason(
                    "reverse",
                    f"{address} is the ClusterIP of {first.namespace}/{first.service}",
                    "R14, R15",
                )
            else:
                names = ", ".join(f"{o.namespace}/{o.service} ({o.label})" for o in owners)
                self.reason(
                    "reverse",
                    f"{address} is a ready endpoint of {names}: one PTR per Service",
                    "R24, R25, N7",
                )
            if self.qtype != RType.PTR:
                self.reason("nodata", "a reverse name owns a PTR only: NODATA", "D1")
            return
        self.reason(
            "reverse",
            f"no Service has {address} as ClusterIP or ready endpoint, so the name does not "
            "exist here",
            "R14, R24, D2",
        )
        for (ns, _), es in sorted(view.slices.items()):
            for endpoint in es.endpoints:
                if address in endpoint.addresses and not endpoint.ready:
                    what = "terminating" if endpoint.terminating else "not ready"
                    self.reason(
                        "not-ready" if not endpoint.terminating else "terminating",
                        f"{address} is an endpoint of {ns}/{es.service} (slice {es.name}) but "
                        f"{what}: only ready endpoints get PTR records",
                        "R6, R24",
                    )
        for pod in sorted(view.pods.values(), key=lambda p: (p.namespace, p.name)):
            if address in pod.ips:
                self.exp.pods.append(PodInfo(pod.namespace, pod.name, tuple(map(str, pod.ips))))
                self.reason(
                    "reverse",
                    f"Pod {pod.namespace}/{pod.name} has {address}, but pods that back no "
                    "Service get no PTR record",
                    "N7",
                )
        self.fallthrough(address)

    def fallthrough(self, address: IPAddress | None) -> None:
        fallthrough = self.kube.fallthrough
        if fallthrough is None:
            return
        if address is not None and any(address in net for net in self.kube.final_networks):
            self.reason(
                "reverse",
                f"{address} lies in the cluster's own ranges: the NXDOMAIN is final, never "
                "asked upstream",
                "kdns's own choices",
            )
            return
        if not fallthrough or any(_in_zone(self.lname, z) for z in fallthrough):
            self.reason(
                "forwarded",
                "unknown here, so it falls through to the upstreams (CoreDNS `fallthrough`); "
                "if they fail, kdns's own NXDOMAIN is sent",
                "kdns's own choices",
            )

    def reverse_prefix(self, network: IPv4Network | IPv6Network) -> None:
        if self.view.reverse_prefix_exists(network):
            self.reason(
                "structure",
                f"a ClusterIP or ready endpoint lies in {network}: an empty non-terminal",
                "D3",
            )
        else:
            self.reason("reverse", f"no ClusterIP or ready endpoint lies in {network}", "D3")
            self.fallthrough(None)

    # ---- the rest ------------------------------------------------------------------------

    def structure(self, shape: Name) -> None:
        match shape:
            case Apex():
                self.reason("structure", "the zone apex owns the SOA and NS records", "D7")
            case DnsVersion():
                self.reason("structure", 'the schema version: TXT "1.1.0"', "R2, Conflict 5")
            case NameServer():
                self.reason(
                    "structure",
                    "the name server: kube-system/kube-dns's ClusterIPs, else kdns's own",
                    "D7",
                )
            case ServiceRoot():
                if self.view.has_services():
                    self.reason("structure", "an empty non-terminal above every Service", "D3")
                else:
                    self.reason("no-service", "no Service exists at all", "D3")
            case _:
                self.reason("structure", "an empty non-terminal", "D3")
        if self.rcode == Rcode.NOERROR and not self.traced.records:
            self.reason("nodata", "the name owns nothing of this type: NODATA", "D1")

    def nowhere(self) -> None:
        self.reason(
            "no-such-shape",
            "no name of this shape exists in the cluster zone: Services are "
            f"<service>.<namespace>.svc.{self.zone}, endpoints <hostname>.<service>."
            f"<namespace>.svc.{self.zone}, ports _<port>._<proto>.<service>.<namespace>."
            f"svc.{self.zone}",
            "D1",
        )
        _cluster_lookalikes(self.exp, self.view, self.lname, zones=(self.zone,))


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


__all__ = ["BlockInfo", "ExplainView", "Filter", "Traced", "analyze"]
