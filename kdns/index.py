"""The in-memory index of cluster objects, fed by events from a source, read by DNS answers.

Every `apply()` runs to completion without awaiting, so a query never sees half of a
change. A `Replace` (a list or relist) swaps one kind wholesale; objects equal to ones
already held are reused, so a relist of an unchanged cluster does not double memory.
No I/O here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network

from kdns.dns.view import ReadyEndpoint, ReverseName
from kdns.model import (
    ClusterObject,
    Delete,
    EndpointSlice,
    Event,
    IPAddress,
    Kind,
    Namespace,
    Pod,
    Replace,
    Service,
    Upsert,
)

Key = tuple[str, str]

BULK_OBJECTS = 1000
"""A Replace of at least this many objects is a bulk load: afterwards its survivors are
moved out of the collector's generations (`gc.freeze`), so later full collections do not
rescan a large, acyclic heap and pause the answers (issue 5)."""


def dashed_label(address: IPAddress) -> str:
    """The system-assigned endpoint label (spec R7, CoreDNS's form): dots or colons become
    dashes; an IPv6 label ending in a dash gets a 0 so it stays a valid label."""
    if isinstance(address, IPv6Address):
        label = address.compressed.replace(":", "-")
        return label + "0" if label.endswith("-") else label
    return str(address).replace(".", "-")


@dataclass(slots=True)
class Change:
    """What a data change touched, for the programming-latency measurement."""

    received_at: float  # time.monotonic() when the source received it
    # CoreDNS's service_kind label: "cluster_ip" | "headless_with_selector" | "other".
    service_kind: str


class Index:
    """Services, EndpointSlices, Namespaces and Pods, with the lookups DNS needs.

    Implements `kdns.dns.view.ClusterView`. `generation` bumps on every effective change;
    reply caches compare it to know when to forget.
    """

    def __init__(
        self,
        *,
        required: Iterable[Kind] = (Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._required = frozenset(required)
        self._listed: set[Kind] = set()
        self._clock = clock
        self.generation = 0
        self._serial = 0
        self.services: dict[Key, Service] = {}
        self.slices: dict[Key, EndpointSlice] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[Key, Pod] = {}
        # Derived indexes, kept in step by apply().
        self._slices_of: dict[Key, tuple[Key, ...]] = {}  # (ns, service) -> slice keys, sorted
        self._endpoints: dict[Key, tuple[ReadyEndpoint, ...]] = {}  # (ns, service) -> ready
        self._services_in: dict[str, int] = {}  # ns -> number of Services
        self._objects_in: dict[str, int] = {}  # ns -> Services + slices + pods
        # One owner is stored as itself; a list only when several share the address (memory:
        # a one-element list per address costs ~90 bytes).
        self._cluster_ip: dict[IPAddress, Key | list[Key]] = {}
        self._endpoint_ip: dict[IPAddress, ReverseName | list[ReverseName]] = {}
        self._pod_ip: dict[tuple[str, IPAddress], int] = {}
        # (version, prefix length, prefix) -> how many owned addresses lie under it.
        self._prefixes: dict[tuple[int, int, int], int] = {}
        self._pending: list[Change] = []
        self.listeners: list[Callable[[], None]] = []

    # ---- ClusterView -------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._required <= self._listed

    @property
    def serial(self) -> int:
        return self._serial

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces or self._objects_in.get(namespace, 0) > 0

    def has_services(self, namespace: str | None = None) -> bool:
        if namespace is None:
            return bool(self.services)
        return self._services_in.get(namespace, 0) > 0

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get((namespace, name))

    def endpoints(self, namespace: str, service: str) -> Sequence[ReadyEndpoint]:
        return self._endpoints.get((namespace, service), ())

    def reverse(self, address: IPAddress) -> Sequence[ReverseName]:
        owners = self._cluster_ip.get(address)
        if owners:
            ns, name = min(owners) if isinstance(owners, list) else owners
            return (ReverseName(ns, name),)
        names = self._endpoint_ip.get(address)
        if names is None:
            return ()
        return tuple(names) if isinstance(names, list) else (names,)

    def reverse_prefix_exists(self, network: IPv4Network | IPv6Network) -> bool:
        bits = network.max_prefixlen
        plen = network.prefixlen
        if plen == bits:
            return bool(self.reverse(network.network_address))
        key = (network.version, plen, int(network.network_address) >> (bits - plen))
        return self._prefixes.get(key, 0) > 0

    def pod_exists(self, namespace: str, address: IPAddress) -> bool:
        return self._pod_ip.get((namespace, address), 0) > 0

    # ---- state -------------------------------------------------------------------------

    def mark_listed(self, kind: Kind) -> None:
        """Record that `kind` has had its first complete list (also done by Replace)."""
        self._listed.add(kind)

    def counts(self) -> dict[str, int]:
        return {
            "services": len(self.services),
            "endpointslices": len(self.slices),
            "namespaces": len(self.namespaces),
            "pods": len(self.pods),
            "endpoints": sum(len(e) for e in self._endpoints.values()),
        }

    def take_pending(self) -> list[Change]:
        """The changes not yet reflected in an answer; the caller observes their latency."""
        pending, self._pending = self._pending, []
        return pending

    # ---- updates -----------------------------------------------------------------------

    def apply(self, event: Event, *, received_at: float | None = None) -> bool:
        """Apply one event atomically. Returns True if the data changed."""
        if received_at is None:
            received_at = time.monotonic()
        if isinstance(event, Replace):
            changed = self._replace(event)
            self._listed.add(event.kind)
            kinds = "other"
            if changed and len(event.objects) >= BULK_OBJECTS:
                # Collect the load's garbage once, then freeze what survives (issue 5:
                # no full-collection pauses rescanning it while answering).
                gc.collect()
                gc.freeze()
        elif isinstance(event, Upsert):
            changed = self._upsert(event.obj)
            kinds = self._service_kind(event.obj)
        else:
            changed = self._delete(event)
            kinds = "other"
        if changed:
            self.generation += 1
            # SOA serial = Unix time of the last change (CoreDNS); never goes backwards.
            self._serial = max(self._serial, int(self._clock()))
            self._pending.append(Change(received_at, kinds))
            if len(self._pending) > 10_000:
                del self._pending[:-10_000]
            for listener in self.listeners:
                listener()
        return changed

    def _service_kind(self, obj: ClusterObject) -> str:
        if isinstance(obj, Service):
            return "headless_with_selector" if obj.headless else "cluster_ip"
        if isinstance(obj, EndpointSlice) and obj.service is not None:
            svc = self.services.get((obj.namespace, obj.service))
            if svc is not None and svc.headless:
                return "headless_with_selector"
        return "other"

    def _store(self, kind: Kind) -> dict[Key, ClusterObject]:
        if kind is Kind.SERVICE:
            return self.services  # type: ignore[return-value]
        if kind is Kind.ENDPOINT_SLICE:
            return self.slices  # type: ignore[return-value]
        if kind is Kind.POD:
            return self.pods  # type: ignore[return-value]
        raise ValueError(kind)

    def _upsert(self, obj: ClusterObject) -> bool:
        if isinstance(obj, Namespace):
            if obj.name in self.namespaces:
                return False
            self.namespaces[obj.name] = obj
            return True
        key = (obj.namespace, obj.name)
        store = self._store(obj.kind)
        old = store.get(key)
        if old == obj:
            return False
        if old is not None:
            self._unlink(old)
        store[key] = obj
        self._link(obj, key)
        return True

    def _delete(self, event: Delete) -> bool:
        if event.kind is Kind.NAMESPACE:
            return self.namespaces.pop(event.name, None) is not None
        store = self._store(event.kind)
        old = store.pop((event.namespace, event.name), None)
        if old is None:
            return False
        self._unlink(old)
        return True

    def _replace(self, event: Replace) -> bool:
        if event.kind is Kind.NAMESPACE:
            new_ns = {o.name: o for o in event.objects if isinstance(o, Namespace)}
            if new_ns.keys() == self.namespaces.keys():
                return False
            self.namespaces = new_ns
            return True
        store = self._store(event.kind)
        incoming: dict[Key, ClusterObject] = {}
        for obj in event.objects:
            key = (obj.namespace, obj.name)
            old = store.get(key)
            incoming[key] = old if old is not None and old == obj else obj
        if incoming.keys() == store.keys() and all(incoming[k] is store[k] for k in incoming):
            return False
        for key in [k for k in store if k not in incoming or incoming[k] is not store[k]]:
            self._unlink(store.pop(key))
        for key, obj in incoming.items():
            if key not in store:
                store[key] = obj
                self._link(obj, key)
        return True

    # ---- derived indexes ---------------------------------------------------------------

    def _count(self, namespace: str, delta: int, *, service: bool = False) -> None:
        n = self._objects_in.get(namespace, 0) + delta
        if n:
            self._objects_in[namespace] = n
        else:
            self._objects_in.pop(namespace, None)
        if service:
            s = self._services_in.get(namespace, 0) + delta
            if s:
                self._services_in[namespace] = s
            else:
                self._services_in.pop(namespace, None)

    def _link(self, obj: ClusterObject, key: Key) -> None:
        """Index `obj`, stored under `key` (the key object is shared, not copied)."""
        if isinstance(obj, Service):
            self._count(obj.namespace, 1, service=True)
            for ip in obj.cluster_ips:
                owners = self._cluster_ip.get(ip)
                if owners is None:
                    self._cluster_ip[ip] = key
                elif isinstance(owners, list):
                    owners.append(key)
                else:
                    self._cluster_ip[ip] = [owners, key]
                self._add_prefixes(ip, 1)
        elif isinstance(obj, EndpointSlice):
            self._count(obj.namespace, 1)
            if obj.service is not None:
                service_key = (obj.namespace, obj.service)
                keys = self._slices_of.get(service_key, ())
                self._slices_of[service_key] = tuple(sorted((*keys, key)))
                self._rebuild_endpoints(service_key)
        elif isinstance(obj, Pod):
            self._count(obj.namespace, 1)
            for ip in obj.ips:
                k = (obj.namespace, ip)
                self._pod_ip[k] = self._pod_ip.get(k, 0) + 1

    def _unlink(self, obj: ClusterObject) -> None:
        if isinstance(obj, Service):
            self._count(obj.namespace, -1, service=True)
            key = (obj.namespace, obj.name)
            for ip in obj.cluster_ips:
                owners = self._cluster_ip.get(ip)
                if owners is None:
                    continue
                if isinstance(owners, list):
                    if key not in owners:
                        continue
                    owners.remove(key)
                    if len(owners) == 1:
                        self._cluster_ip[ip] = owners[0]
                elif owners == key:
                    del self._cluster_ip[ip]
                else:
                    continue
                self._add_prefixes(ip, -1)
        elif isinstance(obj, EndpointSlice):
            self._count(obj.namespace, -1)
            if obj.service is not None:
                service_key = (obj.namespace, obj.service)
                slice_key = (obj.namespace, obj.name)
                keys = tuple(k for k in self._slices_of.get(service_key, ()) if k != slice_key)
                if keys:
                    self._slices_of[service_key] = keys
                else:
                    self._slices_of.pop(service_key, None)
                self._rebuild_endpoints(service_key)
        elif isinstance(obj, Pod):
            self._count(obj.namespace, -1)
            for ip in obj.ips:
                k = (obj.namespace, ip)
                n = self._pod_ip.get(k, 0) - 1
                if n > 0:
                    self._pod_ip[k] = n
                else:
                    self._pod_ip.pop(k, None)

    def _add_prefixes(self, address: IPAddress, delta: int) -> None:
        """Count `address` under each reverse-tree prefix above it (octets for IPv4,
        nibbles for IPv6)."""
        bits = address.max_prefixlen
        step = 8 if address.version == 4 else 4
        value = int(address)
        prefixes = self._prefixes
        for plen in range(step, bits, step):
            key = (address.version, plen, value >> (bits - plen))
            n = prefixes.get(key, 0) + delta
            if n > 0:
                prefixes[key] = n
            else:
                prefixes.pop(key, None)

    def _rebuild_endpoints(self, key: Key) -> None:
        """Re-merge the ready endpoints of one Service and update the reverse index."""
        ns, svc = key
        old = self._endpoints.pop(key, ())
        for ep in old:
            self._add_prefixes(ep.address, -1)
            names = self._endpoint_ip.get(ep.address)
            if names is None:
                continue
            if isinstance(names, list):
                names[:] = [n for n in names if (n.namespace, n.service) != key]
                if len(names) == 1:
                    self._endpoint_ip[ep.address] = names[0]
                elif not names:
                    del self._endpoint_ip[ep.address]
            elif (names.namespace, names.service) == key:
                del self._endpoint_ip[ep.address]
        merged: dict[tuple[str, IPAddress], ReadyEndpoint] = {}
        for slice_key in self._slices_of.get(key, ()):
            eps = self.slices[slice_key]
            for endpoint in eps.endpoints:
                if not endpoint.ready:  # EndpointSlice: ready=None is stored as True
                    continue
                for address in endpoint.addresses:
                    label = endpoint.hostname or dashed_label(address)
                    merged.setdefault((label, address), ReadyEndpoint(label, address, eps.ports))
        if not merged:
            return
        ready = tuple(merged.values())
        self._endpoints[key] = ready
        for ep in ready:
            self._add_prefixes(ep.address, 1)
            name = ReverseName(ns, svc, ep.label)
            names = self._endpoint_ip.get(ep.address)
            if names is None:
                self._endpoint_ip[ep.address] = name
                continue
            if not isinstance(names, list):
                names = [names]
                self._endpoint_ip[ep.address] = names
            if name not in names:
                names.append(name)
                names.sort(key=lambda n: (n.namespace, n.service, n.label or ""))
