"""Slim cluster objects: only what DNS needs of Services, EndpointSlices, Namespaces, Pods.

Sources (the manifests folder, the Kubernetes API) convert API objects into these at the
boundary and drop everything else, so no API JSON is kept around. Names are stored
lower-case (RFC 4343: DNS compares case-insensitively). No I/O here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address


class Kind(enum.StrEnum):
    """The kinds of object the index keeps; each is listed (replaced) and watched apart."""

    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    NAMESPACE = "Namespace"
    POD = "Pod"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of a Service, or of an EndpointSlice (then `port` is the endpoint's port)."""

    name: str  # lower-case; "" = unnamed, which has no SRV record (spec §2.3.2)
    protocol: str  # lower-case: "tcp", "udp", "sctp"
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    """A Service as DNS sees it.

    Exactly one shape applies: ClusterIP-like (`cluster_ips` non-empty: ClusterIP, NodePort,
    LoadBalancer), headless (`headless`), or ExternalName (`external_name`).
    """

    namespace: str
    name: str
    cluster_ips: tuple[IPAddress, ...] = ()  # spec.clusterIPs, dual-stack order kept
    headless: bool = False  # clusterIP: None (spec §2.4)
    external_name: str | None = None  # lower-case, no trailing dot (spec §2.5)
    ports: tuple[ServicePort, ...] = ()

    @property
    def kind(self) -> Kind:
        return Kind.SERVICE


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of an EndpointSlice: its addresses share one hostname and readiness."""

    addresses: tuple[IPAddress, ...]
    ready: bool = True  # EndpointSlice API: conditions.ready absent means unknown -> ready
    hostname: str | None = None  # lower-case; set by the controller for hostname+subdomain pods
    pod_name: str | None = None  # targetRef name, when the target is a Pod


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """A discovery.k8s.io/v1 EndpointSlice (or a converted v1 Endpoints subset)."""

    namespace: str
    name: str
    service: str | None  # label kubernetes.io/service-name; None = belongs to no Service
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[ServicePort, ...] = ()  # the endpoint ports (resolved targetPorts)

    @property
    def kind(self) -> Kind:
        return Kind.ENDPOINT_SLICE


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str

    @property
    def namespace(self) -> str:
        return ""

    @property
    def kind(self) -> Kind:
        return Kind.NAMESPACE


@dataclass(frozen=True, slots=True)
class Pod:
    """A running Pod: only what `pods verified` needs (namespace and IPs)."""

    namespace: str
    name: str
    ips: tuple[IPAddress, ...] = ()

    @property
    def kind(self) -> Kind:
        return Kind.POD


ClusterObject = Service | EndpointSlice | Namespace | Pod


@dataclass(frozen=True, slots=True)
class Upsert:
    """An object was added or changed (watch ADDED/MODIFIED)."""

    obj: ClusterObject


@dataclass(frozen=True, slots=True)
class Delete:
    """An object is gone (watch DELETED)."""

    kind: Kind
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Replace:
    """A complete list of one kind (a LIST or relist): it replaces that kind wholesale.

    Objects missing from `objects` are deleted, so deletions missed while a watch was away
    cannot survive a relist.
    """

    kind: Kind
    objects: tuple[ClusterObject, ...]


Event = Upsert | Delete | Replace


def object_key(obj: ClusterObject) -> tuple[str, str]:
    """The (namespace, name) key of an object; namespaces have namespace ""."""
    return (obj.namespace, obj.name)
