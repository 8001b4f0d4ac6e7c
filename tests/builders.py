"""Test builders for cluster objects, and `StaticView`: a `ClusterView` over plain data.

`StaticView` is a deliberately simple, linear-scan implementation of
`kdns.dns.view.ClusterView` built from the same model objects a source would feed into
`kdns.cluster.index.Index`, so one fixture can drive both and the two can be compared.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from kdns.cluster.index import dashed_label
from kdns.cluster.model import (
    ClusterObject,
    Endpoint,
    EndpointSlice,
    IPAddress,
    Kind,
    Namespace,
    Pod,
    Replace,
    Service,
    ServicePort,
)
from kdns.dns.view import ReadyEndpoint, ReverseName


def ip(text: str) -> IPAddress:
    return ip_address(text)


def port(spec: str) -> ServicePort:
    """`"http/tcp/80"` -> ServicePort("http", "tcp", 80); `"/tcp/8080"` is unnamed."""
    name, protocol, number = spec.split("/")
    return ServicePort(name.lower(), protocol.lower(), int(number))


def svc(
    name: str,
    namespace: str = "testns",
    *,
    ips: Iterable[str] = (),
    headless: bool = False,
    external: str | None = None,
    ports: Iterable[str] = (),
) -> Service:
    """A Service; `ports` as `name/proto/number` strings (see `port`)."""
    return Service(
        namespace=namespace,
        name=name,
        cluster_ips=tuple(ip(a) for a in ips),
        headless=headless,
        external_name=external,
        ports=tuple(port(p) for p in ports),
    )


def ep(
    *addresses: str,
    ready: bool = True,
    hostname: str | None = None,
    pod_name: str | None = None,
) -> Endpoint:
    """One EndpointSlice endpoint (addresses share hostname and readiness)."""
    return Endpoint(
        addresses=tuple(ip(a) for a in addresses),
        ready=ready,
        hostname=hostname,
        pod_name=pod_name,
    )


def eps(
    name: str,
    service: str | None,
    namespace: str = "testns",
    *,
    endpoints: Iterable[Endpoint] = (),
    ports: Iterable[str] = (),
    pod_names: bool = False,
) -> EndpointSlice:
    """An EndpointSlice labelled for `service`; `ports` are the endpoint ports;
    `pod_names` keeps the endpoints' pod names (`endpoint_pod_names`)."""
    return EndpointSlice(
        namespace=namespace,
        name=name,
        service=service,
        endpoints=tuple(endpoints),
        ports=tuple(port(p) for p in ports),
        pod_names=pod_names,
    )


def pod(name: str, namespace: str = "testns", *, ips: Iterable[str] = ()) -> Pod:
    return Pod(namespace=namespace, name=name, ips=tuple(ip(a) for a in ips))


class StaticView:
    """A `ClusterView` over fixed objects; every lookup is a plain scan."""

    def __init__(
        self,
        objects: Iterable[ClusterObject] = (),
        *,
        synced: bool = True,
        serial: int = 1,
    ) -> None:
        objs = list(objects)
        self.services = [o for o in objs if isinstance(o, Service)]
        self.slices = [o for o in objs if isinstance(o, EndpointSlice)]
        self.namespaces = {o.name for o in objs if isinstance(o, Namespace)}
        self.pods = [o for o in objs if isinstance(o, Pod)]
        self._synced = synced
        self._serial = serial

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def serial(self) -> int:
        return self._serial

    def namespace_exists(self, namespace: str) -> bool:
        objects: list[Service | EndpointSlice | Pod] = [*self.services, *self.slices, *self.pods]
        return namespace in self.namespaces or any(o.namespace == namespace for o in objects)

    def has_services(self, namespace: str | None = None) -> bool:
        return any(namespace is None or s.namespace == namespace for s in self.services)

    def service(self, namespace: str, name: str) -> Service | None:
        for s in self.services:
            if (s.namespace, s.name) == (namespace, name):
                return s
        return None

    def endpoints(self, namespace: str, service: str) -> Sequence[ReadyEndpoint]:
        # Slices in name order; each (label, address) once; ready=False left out (R6).
        merged: dict[tuple[str, IPAddress], ReadyEndpoint] = {}
        for sl in sorted(self.slices, key=lambda s: s.name):
            if (sl.namespace, sl.service) != (namespace, service):
                continue
            for endpoint in sl.endpoints:
                if not endpoint.ready:
                    continue
                for address in endpoint.addresses:
                    label = endpoint.hostname or endpoint.pod_name or dashed_label(address)
                    merged.setdefault((label, address), ReadyEndpoint(label, address, sl.ports))
        return tuple(merged.values())

    def reverse(self, address: IPAddress) -> Sequence[ReverseName]:
        owners = sorted((s.namespace, s.name) for s in self.services if address in s.cluster_ips)
        if owners:
            return (ReverseName(*owners[0]),)
        names: list[ReverseName] = []
        for s in sorted(self.services, key=lambda s: (s.namespace, s.name)):
            for e in self.endpoints(s.namespace, s.name):
                name = ReverseName(s.namespace, s.name, e.label)
                if e.address == address and name not in names:
                    names.append(name)
        return tuple(names)

    def reverse_prefix_exists(self, network: IPv4Network | IPv6Network) -> bool:
        return any(address in network for address in self._owned_addresses())

    def pod_exists(self, namespace: str, address: IPAddress) -> bool:
        return any(p.namespace == namespace and address in p.ips for p in self.pods)

    def pod_namespace(self, address: IPAddress) -> str | None:
        return next((p.namespace for p in self.pods if address in p.ips), None)

    def listed_namespaces(self) -> Collection[str]:
        return self.namespaces

    def _owned_addresses(self) -> list[IPAddress]:
        owned: list[IPAddress] = []
        for s in self.services:
            owned.extend(s.cluster_ips)
            owned.extend(e.address for e in self.endpoints(s.namespace, s.name))
        return owned


def replace_events(objects: Iterable[ClusterObject]) -> list[Replace]:
    """One `Replace` per kind (all four, so an Index fed them is synced)."""
    objs = list(objects)
    return [
        Replace(kind, tuple(o for o in objs if o.kind is kind))
        for kind in (Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.POD)
    ]
