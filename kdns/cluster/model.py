"""Slim cluster objects: only what DNS needs of Services, EndpointSlices, Namespaces, Pods.

Sources (the manifests folder, the Kubernetes API) convert API objects into these at the
boundary and drop everything else, so no API JSON is kept around. Names are stored
lower-case (RFC 4343: DNS compares case-insensitively). No I/O here.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from itertools import repeat

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
    """One endpoint of an EndpointSlice: its addresses share one hostname and readiness.

    A value the sources build and `EndpointSlice` packs; slices do not keep these objects.
    """

    addresses: tuple[IPAddress, ...]
    ready: bool = True  # EndpointSlice API: conditions.ready absent means unknown -> ready
    hostname: str | None = None  # lower-case; set by the controller for hostname+subdomain pods
    # targetRef name, when the target is a Pod. Kept by EndpointSlice only when asked
    # (`endpoint_pod_names`): it costs ~60 bytes an endpoint.
    pod_name: str | None = None
    # conditions.terminating (EndpointSlice API): the pod is being deleted. Not DNS data (the
    # answers read `ready` only, docs/rules.md R6); kept so `kdns explain` can say why an
    # endpoint is left out.
    terminating: bool = False


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def endpoint_label(name: str | None) -> str | None:
    """`name` if it can name an endpoint: one DNS label (RFC 1123, at most 63 characters;
    CoreDNS's `endpoint_pod_names` skips longer pod names), else None."""
    return name if name and _LABEL.fullmatch(name) else None


MIXED = 17
"""Address width of a slice mixing IPv4 and IPv6: a version byte, then 16 bytes (IPv4
zero-padded). Single-family slices store 4 (IPv4) or 16 (IPv6) bytes an address."""

# ---- the packed address layout -----------------------------------------------------------
#
# An `EndpointSlice` (and the index's per-Service merge of slices) keeps its addresses in
# one `bytes`, `width` bytes an address (4, 16 or MIXED). Only the functions below and
# `EndpointSlice` read or write that layout; everything else goes through them. A "raw"
# address is its 4 (IPv4) or 16 (IPv6) network-order bytes: equal raws, equal addresses.


def raw_address(packed: bytes, width: int, i: int) -> bytes:
    """The `i`th address of `packed` as its 4 (IPv4) or 16 (IPv6) network-order bytes."""
    chunk = packed[i * width : (i + 1) * width]
    if width == MIXED:
        return chunk[1:5] if chunk[0] == 4 else chunk[1:]
    return chunk


def address_count(packed: bytes, width: int) -> int:
    """How many addresses `packed` holds."""
    return len(packed) // width


def raw_addresses(packed: bytes, width: int) -> list[bytes]:
    """Every address of `packed` as raw bytes, in order."""
    if width == MIXED:
        return [raw_address(packed, width, i) for i in range(len(packed) // width)]
    return [packed[i : i + width] for i in range(0, len(packed), width)]


def pack_raw(raws: Iterable[bytes], width: int) -> bytes:
    """Raw addresses packed `width` bytes an address: the inverse of `raw_addresses`."""
    if width != MIXED:
        return b"".join(raws)
    return b"".join(b"\x04" + r + bytes(12) if len(r) == 4 else b"\x06" + r for r in raws)


def address_positions(packed: bytes, width: int, raw: bytes) -> list[int]:
    """The indexes at which the raw address `raw` is in `packed`, in order."""
    if width == MIXED:
        needle = b"\x04" + raw + bytes(12) if len(raw) == 4 else b"\x06" + raw
    elif width == len(raw):
        needle = raw
    else:
        return []  # the other family: never there
    found: list[int] = []
    at = packed.find(needle)
    while at >= 0:
        if at % width == 0:  # a match across two addresses is not an address
            found.append(at // width)
        at = packed.find(needle, at + 1)
    return found


def unpack_addresses(packed: bytes, width: int) -> list[IPAddress]:
    """Every address in `packed`, in order."""
    if width == 4:  # from ints: twice as fast as from 4-byte slices
        return list(map(IPv4Address, struct.unpack(f">{len(packed) // 4}I", packed)))
    if width == 16:
        return [IPv6Address(packed[i : i + 16]) for i in range(0, len(packed), 16)]
    return [address_from_raw(raw) for raw in raw_addresses(packed, width)]


def address_from_raw(raw: bytes) -> IPAddress:
    """An address from its 4 or 16 network-order bytes (the length says the family)."""
    return IPv4Address(raw) if len(raw) == 4 else IPv6Address(raw)


_ALL_READY: frozenset[int] = frozenset()  # one shared object (an empty frozenset is 216 B)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class EndpointSlice:
    """A discovery.k8s.io/v1 EndpointSlice (or a converted v1 Endpoints subset).

    Built from `Endpoint` values but stored packed (at most 200 bytes an endpoint,
    docs/benchmarking.md#targets): every address in one `bytes` (`width` bytes each, see the
    functions above), hostnames only when some endpoint has one, not-ready and terminating
    endpoints by index; pod names only when built with `pod_names=True`, and only for
    endpoints without a hostname whose pod name is a DNS label (they name the endpoint then:
    CoreDNS's `endpoint_pod_names`). Equality is "same DNS data" plus the terminating
    condition: addresses, readiness, terminating, hostnames, kept pod names, ports.
    `endpoints` rebuilds the values.
    """

    namespace: str
    name: str
    service: str | None  # label kubernetes.io/service-name; None = belongs to no Service
    ports: tuple[ServicePort, ...]  # the endpoint ports (resolved targetPorts)
    width: int  # bytes an address in `packed`: 4, 16 or MIXED
    packed: bytes  # the addresses of every endpoint, in order
    sizes: tuple[int, ...] | None  # addresses of each endpoint; None = one each
    not_ready: frozenset[int]  # indexes of the endpoints that are not ready
    terminating: frozenset[int]  # indexes of the endpoints with conditions.terminating true
    hostnames: tuple[str | None, ...] | None  # by endpoint index; None = no hostname at all
    pod_names: tuple[str | None, ...] | None  # by endpoint index; None = none kept
    # Unix time of annotation endpoints.kubernetes.io/last-change-trigger-time (set by the
    # EndpointSlice controller), for the programming-latency metric; not DNS data, so two
    # slices differing only here are equal.
    trigger_time: float | None = field(default=None, compare=False)

    def __init__(
        self,
        namespace: str,
        name: str,
        service: str | None,
        endpoints: Iterable[Endpoint] = (),
        ports: tuple[ServicePort, ...] = (),
        trigger_time: float | None = None,
        *,
        pod_names: bool = False,
    ) -> None:
        eps = tuple(endpoints)
        versions = {a.version for e in eps for a in e.addresses}
        width = 16 if versions == {6} else MIXED if len(versions) > 1 else 4
        packed = pack_raw((a.packed for e in eps for a in e.addresses), width)
        sizes = tuple(len(e.addresses) for e in eps)
        hostnames = tuple(e.hostname or None for e in eps)
        setattr_ = object.__setattr__
        setattr_(self, "namespace", namespace)
        setattr_(self, "name", name)
        setattr_(self, "service", service)
        setattr_(self, "ports", tuple(ports))
        setattr_(self, "width", width)
        setattr_(self, "packed", packed)
        setattr_(self, "sizes", None if all(n == 1 for n in sizes) else sizes)
        not_ready = frozenset(i for i, e in enumerate(eps) if not e.ready)
        setattr_(self, "not_ready", not_ready or _ALL_READY)
        terminating = frozenset(i for i, e in enumerate(eps) if e.terminating)
        setattr_(self, "terminating", terminating or _ALL_READY)
        setattr_(self, "hostnames", hostnames if any(hostnames) else None)
        names = (
            tuple(None if e.hostname else endpoint_label(e.pod_name) for e in eps)
            if pod_names
            else ()
        )
        setattr_(self, "pod_names", names if any(names) else None)
        setattr_(self, "trigger_time", trigger_time)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints as values (built on each call; `pod_name` only where kept)."""
        addresses = self.addresses()
        groups: list[tuple[IPAddress, ...]]
        if self.sizes is None:
            groups = [(a,) for a in addresses]
        else:
            groups, at = [], 0
            for n in self.sizes:
                groups.append(tuple(addresses[at : at + n]))
                at += n
        hostnames = self.hostnames or (None,) * len(groups)
        pod_names = self.pod_names or (None,) * len(groups)
        not_ready, terminating = self.not_ready, self.terminating
        return tuple(
            Endpoint(group, i not in not_ready, hostname, pod_name, terminating=i in terminating)
            for i, (group, hostname, pod_name) in enumerate(
                zip(groups, hostnames, pod_names, strict=True)
            )
        )

    def addresses(self) -> list[IPAddress]:
        """Every address of every endpoint, in order."""
        return unpack_addresses(self.packed, self.width)

    @property
    def address_count(self) -> int:
        """How many addresses the endpoints have together."""
        return address_count(self.packed, self.width)

    @property
    def endpoint_count(self) -> int:
        """How many endpoints the slice has, without building them."""
        return len(self.packed) // self.width if self.sizes is None else len(self.sizes)

    def raws(self) -> list[bytes]:
        """Every address of every endpoint as raw bytes, in order."""
        return raw_addresses(self.packed, self.width)

    def raw_entries(self) -> Iterator[tuple[bool, str | None, bytes]]:
        """(ready, label, raw address) of every address of every endpoint, in order (an
        endpoint's addresses share its readiness and label), without building `Endpoint`
        values. The label names the endpoint: its hostname, else its pod name where the
        slice keeps one (`endpoint_pod_names`), else None."""
        raws = raw_addresses(self.packed, self.width)
        sizes, not_ready = self.sizes, self.not_ready
        count = len(raws) if sizes is None else len(sizes)
        ready: Iterable[bool] = (
            [i not in not_ready for i in range(count)] if not_ready else repeat(True)
        )
        hostnames, pod_names = self.hostnames, self.pod_names
        labels: Iterable[str | None]
        if pod_names is None:
            labels = hostnames if hostnames is not None else repeat(None)
        elif hostnames is None:
            labels = pod_names
        else:  # a pod name is kept only where the endpoint has no hostname
            labels = [h or p for h, p in zip(hostnames, pod_names, strict=True)]
        if sizes is None:
            return zip(ready, labels, raws, strict=False)  # repeat() has no end
        return _grouped_entries(zip(ready, labels, sizes, strict=False), raws)

    @property
    def kind(self) -> Kind:
        return Kind.ENDPOINT_SLICE

    def __repr__(self) -> str:
        return (
            f"EndpointSlice(namespace={self.namespace!r}, name={self.name!r}, "
            f"service={self.service!r}, endpoints={self.endpoints!r}, ports={self.ports!r})"
        )


def _grouped_entries(
    endpoints: Iterable[tuple[bool, str | None, int]], raws: list[bytes]
) -> Iterator[tuple[bool, str | None, bytes]]:
    at = 0
    for ready, hostname, size in endpoints:
        for raw in raws[at : at + size]:
            yield ready, hostname, raw
        at += size


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
    """A running Pod: only what `pods verified` and `autopath` need (namespace and IPs)."""

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
