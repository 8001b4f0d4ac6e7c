"""The in-memory index of cluster objects, fed by events from a source, read by DNS answers.

Every `apply()` runs to completion without awaiting, so a query never sees half of a
change. A `Replace` (a list or relist) swaps one kind wholesale; objects equal to ones
already held are reused, so a relist of an unchanged cluster does not double memory.
Endpoints stay packed as the slices hold them (docs/benchmarking.md#targets: at most 200
bytes an endpoint):
`ReadyEndpoint` objects are built only when `endpoints()` is asked, reverse owners are
found by address bucket and their labels computed per lookup. No I/O here.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network

from kdns.cluster.model import (
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
    ServicePort,
    Upsert,
    address_count,
    address_from_raw,
    address_positions,
    pack_raw,
    raw_addresses,
    unpack_addresses,
)
from kdns.dns.view import ReadyEndpoint, ReverseName
from kdns.observe.stats import PROGRAMMING_BUCKETS, Histogram

Key = tuple[str, str]
CHANGE_LOG = 4096  # changes a reply cache can catch up on before it must start over

BULK_OBJECTS = 1000
"""A Replace of at least this many objects is a bulk load: afterwards its survivors are
moved out of the collector's generations (`gc.freeze`), so later full collections do not
rescan a large, acyclic heap and pause the answers."""


def dashed_label(address: IPAddress) -> str:
    """The system-assigned endpoint label (spec R7, CoreDNS's form): dots or colons become
    dashes; an IPv6 label ending in a dash gets a 0 so it stays a valid label."""
    if isinstance(address, IPv6Address):
        label = address.compressed.replace(":", "-")
        return label + "0" if label.endswith("-") else label
    return str(address).replace(".", "-")


BUILT_ENDPOINTS = 8192
"""How many `ReadyEndpoint` objects `endpoints()` keeps built, over all Services (the
most recently used first). The index itself keeps endpoints packed (at most 200 bytes an
endpoint, docs/benchmarking.md#targets) and builds the objects only when an answer asks."""

_DASHED_CHARS = "0123456789abcdef-"
_V6_BUCKET = 1 << 120  # marks an IPv6 bucket key (IPv6 >> 8 < 2**120; IPv4 >> 8 < 2**24)
_DENSE = 32  # a reverse bucket holding this many addresses becomes a 256-slot list
_SPARSE = 8  # and a list holding fewer goes back to a dict


@dataclass(frozen=True, slots=True)
class _Segment:
    """The ready endpoints one slice gives a Service, in slice order, packed as the slice
    packs them; hostnames by address (None: no address has one)."""

    packed: bytes
    width: int
    hostnames: tuple[str | None, ...] | None
    ports: tuple[ServicePort, ...]


class _Ready:
    """The ready endpoints of one Service merged over its slices, each (label, address)
    once, in slice-name then slice order (what `endpoints()` returns, built lazily)."""

    __slots__ = ("count", "key", "segments")

    def __init__(self, key: Key, segments: tuple[_Segment, ...]) -> None:
        self.key = key
        self.segments = segments
        self.count = sum(address_count(s.packed, s.width) for s in segments)

    def raws(self) -> Iterator[bytes]:
        """Every address as 4 or 16 raw bytes, in order (repeats when labels differ)."""
        for seg in self.segments:
            yield from raw_addresses(seg.packed, seg.width)

    def build(self) -> tuple[ReadyEndpoint, ...]:
        built: list[ReadyEndpoint] = []
        for seg in self.segments:
            addresses = unpack_addresses(seg.packed, seg.width)
            hostnames = seg.hostnames or (None,) * len(addresses)
            ports = seg.ports
            built.extend(
                ReadyEndpoint(hostname or dashed_label(address), address, ports)
                for address, hostname in zip(addresses, hostnames, strict=True)
            )
        return tuple(built)

    def labels_of(self, raw: bytes) -> list[str]:
        """The labels under which the address `raw` is a ready endpoint of this Service."""
        labels: list[str] = []
        dashed: str | None = None
        for seg in self.segments:
            for i in address_positions(seg.packed, seg.width, raw):
                hostname = seg.hostnames[i] if seg.hostnames is not None else None
                if hostname is None:
                    dashed = dashed or dashed_label(address_from_raw(raw))
                labels.append(hostname or dashed or "")
        return labels


def _segment(es: EndpointSlice, seen: set[tuple[str | None, bytes]]) -> _Segment | None:
    """The ready endpoints of `es` not already in `seen` (as (label, raw address); a
    label equal to the dashed one counts as none, as the label is the same). The label is
    the hostname, else the pod name where the slice keeps one (`endpoint_pod_names`)."""
    raws: list[bytes] = []
    hosts: list[str | None] = []
    whole = True  # every address kept as the slice has it: share the slice's bytes
    for ready, label, raw in es.raw_entries():
        if not ready:  # EndpointSlice: ready=None is stored as ready
            whole = False
            continue
        host = label
        if (
            host is not None
            and not host.strip(_DASHED_CHARS)
            and host == dashed_label(address_from_raw(raw))
        ):
            host = None
            whole = False
        if (host, raw) in seen:
            whole = False
            continue
        seen.add((host, raw))
        raws.append(raw)
        hosts.append(host)
    if not raws:
        return None
    hostnames = tuple(hosts) if any(hosts) else None
    if not whole:
        return _Segment(pack_raw(raws, es.width), es.width, hostnames, es.ports)
    if hostnames == es.hostnames:  # one per address too: share the slice's tuple
        hostnames = es.hostnames
    return _Segment(es.packed, es.width, hostnames, es.ports)


class _Bucket:
    """Reverse owners of the addresses sharing all but their last byte: a dict by last
    byte while few, a 256-slot list once dense (a list slot is 8 bytes; a dict entry ~40,
    and small ints as keys are shared objects, so no per-address key object either)."""

    __slots__ = ("count", "slots")

    def __init__(self) -> None:
        self.count = 0
        self.slots: dict[int, _Ready | list[_Ready]] | list[_Ready | list[_Ready] | None] = {}

    def get(self, low: int) -> _Ready | list[_Ready] | None:
        slots = self.slots
        return slots.get(low) if isinstance(slots, dict) else slots[low]

    def _set(self, low: int, owners: _Ready | list[_Ready] | None) -> None:
        slots = self.slots
        if isinstance(slots, list):
            slots[low] = owners
        elif owners is None:
            del slots[low]
        else:
            slots[low] = owners

    def add(self, low: int, owner: _Ready) -> None:
        owners = self.get(low)
        if owners is None:
            self._set(low, owner)
            self.count += 1
            if self.count >= _DENSE and isinstance(self.slots, dict):
                dense: list[_Ready | list[_Ready] | None] = [None] * 256
                for k, v in self.slots.items():
                    dense[k] = v
                self.slots = dense
        elif isinstance(owners, list):
            if all(o.key != owner.key for o in owners):
                owners.append(owner)
        elif owners.key != owner.key:
            self._set(low, [owners, owner])

    def remove(self, low: int, owner: _Ready) -> None:
        owners = self.get(low)
        if owners is None:
            return
        if isinstance(owners, list):
            rest = [o for o in owners if o is not owner]
            if len(rest) != len(owners):
                self._set(low, rest[0] if len(rest) == 1 else rest)
            return
        if owners is not owner:
            return
        self._set(low, None)
        self.count -= 1
        if self.count < _SPARSE and isinstance(self.slots, list):
            self.slots = {k: v for k, v in enumerate(self.slots) if v is not None}


def _bucket_key(raw: bytes) -> tuple[int, int]:
    """(bucket key, last byte) of a raw address."""
    value = int.from_bytes(raw, "big")
    high = value >> 8
    return (high if len(raw) == 4 else high | _V6_BUCKET), value & 0xFF


@dataclass(slots=True)
class Change:
    """What a data change touched, for kdns's own first-query latency measurement (from
    the change's arrival to the first answer after it)."""

    received_at: float  # time.monotonic() when the source received it
    # CoreDNS's service_kind label: "cluster_ip" | "headless_with_selector", or "other"
    # (a relist, a deletion, a namespace or pod, a slice of an unknown Service).
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
        self._ready: dict[Key, _Ready] = {}  # (ns, service) -> its ready endpoints, packed
        self._built: dict[Key, tuple[ReadyEndpoint, ...]] = {}  # built lately, oldest first
        self._built_count = 0  # endpoints held in _built
        self._services_in: dict[str, int] = {}  # ns -> number of Services
        self._objects_in: dict[str, int] = {}  # ns -> Services + slices + pods
        # One owner is stored as itself; a list only when several share the address (memory:
        # a one-element list per address costs ~90 bytes).
        self._cluster_ip: dict[IPAddress, Key | list[Key]] = {}
        # Endpoint reverse owners by bucket (see _Bucket); labels are found when asked.
        self._endpoint_ip: dict[int, _Bucket] = {}
        # Pod IP -> the namespace of the one Pod that has it, or the number of Pods per
        # namespace when several do (hostNetwork Pods share their node's address).
        self._pod_ip: dict[IPAddress, str | dict[str, int]] = {}
        # (version, prefix length, prefix) -> how many owned addresses lie under it.
        self._prefixes: dict[tuple[int, int, int], int] = {}
        self._pending: list[Change] = []
        # CoreDNS's DNS programming latency, by service_kind: see _record_programming.
        self.programming: dict[str, Histogram] = {}
        # (generation, Services whose answers the change may alter; None = any), newest last.
        self._changes: deque[tuple[int, frozenset[Key] | None]] = deque(maxlen=CHANGE_LOG)

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
        key = (namespace, service)
        built = self._built.pop(key, None)
        if built is None:
            ready = self._ready.get(key)
            if ready is None:
                return ()
            built = ready.build()
            self._built_count += len(built)
            while self._built and self._built_count > BUILT_ENDPOINTS:
                self._built_count -= len(self._built.pop(next(iter(self._built))))
        self._built[key] = built  # (re)inserted last: the most recently used
        return built

    def slices_of(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        """Every EndpointSlice labelled for the Service, ready endpoints or not, in name
        order (not DNS data: for `kdns explain`)."""
        return tuple(self.slices[k] for k in self._slices_of.get((namespace, service), ()))

    def reverse(self, address: IPAddress) -> Sequence[ReverseName]:
        owners = self._cluster_ip.get(address)
        if owners:
            ns, name = min(owners) if isinstance(owners, list) else owners
            return (ReverseName(ns, name),)
        raw = address.packed
        bucket_key, low = _bucket_key(raw)
        bucket = self._endpoint_ip.get(bucket_key)
        found = bucket.get(low) if bucket is not None else None
        if found is None:
            return ()
        names = {
            ReverseName(r.key[0], r.key[1], label)
            for r in (found if isinstance(found, list) else (found,))
            for label in r.labels_of(raw)
        }
        return tuple(sorted(names, key=lambda n: (n.namespace, n.service, n.label or "")))

    def reverse_prefix_exists(self, network: IPv4Network | IPv6Network) -> bool:
        bits = network.max_prefixlen
        plen = network.prefixlen
        if plen == bits:
            return bool(self.reverse(network.network_address))
        key = (network.version, plen, int(network.network_address) >> (bits - plen))
        return self._prefixes.get(key, 0) > 0

    def pod_exists(self, namespace: str, address: IPAddress) -> bool:
        found = self._pod_ip.get(address)
        return found == namespace or (isinstance(found, dict) and namespace in found)

    def pod_namespace(self, address: IPAddress) -> str | None:
        found = self._pod_ip.get(address)
        if isinstance(found, dict):
            return next(iter(found))  # the first Pod seen with it still there
        return found

    def listed_namespaces(self) -> Collection[str]:
        return self.namespaces.keys()

    # ---- state -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "services": len(self.services),
            "endpointslices": len(self.slices),
            "namespaces": len(self.namespaces),
            "pods": len(self.pods),
            "endpoints": sum(r.count for r in self._ready.values()),
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
        touched = self._touched(event)
        triggered = self._triggered(event)
        if isinstance(event, Replace):
            changed = self._replace(event)
            self._listed.add(event.kind)
            kinds = "other"
            if changed and len(event.objects) >= BULK_OBJECTS:
                # Collect the load's garbage once, then freeze what survives (no
                # full-collection pauses rescanning it while answering).
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
            self._changes.append((self.generation, touched))
            # SOA serial = Unix time of the last change (CoreDNS); never goes backwards.
            self._serial = max(self._serial, int(self._clock()))
            self._pending.append(Change(received_at, kinds))
            if len(self._pending) > 10_000:
                del self._pending[:-10_000]
            if triggered:
                self._record_programming(triggered)
        return changed

    # ---- DNS programming latency ---------------------------------------------------------

    def _triggered(self, event: Event) -> list[EndpointSlice]:
        """The slices of `event` that carry a trigger time and change what the index holds,
        read before it is applied. Empty before the first sync: the initial list is the
        state of the cluster, not a change to program (as CoreDNS's informer start-up)."""
        if not self.synced:
            return []
        if isinstance(event, Upsert):
            obj = event.obj
            if isinstance(obj, EndpointSlice) and obj.trigger_time is not None:
                return [obj]
        elif isinstance(event, Replace) and event.kind is Kind.ENDPOINT_SLICE:
            slices = self.slices
            return [
                o
                for o in event.objects
                if isinstance(o, EndpointSlice)
                and o.trigger_time is not None
                and slices.get((o.namespace, o.name)) != o
            ]
        return []

    def _record_programming(self, slices: Iterable[EndpointSlice]) -> None:
        """Observe, per slice just applied, the seconds from its last-change-trigger-time
        to now: CoreDNS's coredns_kubernetes_dns_programming_duration_seconds. Labelled by
        the Service's kind (`cluster_ip`, or `headless_with_selector`: a slice with the
        annotation comes from the controller, so its Service has a selector); skipped when
        the Service is unknown. A clock behind the API server's counts as 0 s. Deletions
        are not observed (their annotation dates the last change, not the deletion)."""
        now = self._clock()
        for es in slices:
            svc = self.services.get((es.namespace, es.service)) if es.service else None
            if svc is None or es.trigger_time is None:
                continue
            kind = "headless_with_selector" if svc.headless else "cluster_ip"
            hist = self.programming.get(kind)
            if hist is None:
                hist = self.programming[kind] = Histogram(PROGRAMMING_BUCKETS)
            hist.observe(max(0.0, now - es.trigger_time))

    def changes_since(self, generation: int) -> set[Key] | None:
        """The (namespace, service) keys whose answers may have changed after `generation`,
        for reply caches; None means anything may have (a relist, a namespace or pod
        change, or `generation` is older than the change log). Apart from these Services,
        only structural answers and negative ones (through the SOA serial) can change."""
        if generation == self.generation:
            return set()
        changes = self._changes
        if not changes or changes[0][0] > generation + 1:
            return None
        out: set[Key] = set()
        for gen, keys in reversed(changes):
            if gen <= generation:
                break
            if keys is None:
                return None
            out |= keys
        return out

    def _touched(self, event: Event) -> frozenset[Key] | None:
        """The Services an event can change the answers of, read before it is applied:
        a Service itself, or the Services a slice belonged to and belongs to now."""
        if isinstance(event, Upsert):
            obj = event.obj
            if isinstance(obj, Service):
                return frozenset({(obj.namespace, obj.name)})
            if isinstance(obj, EndpointSlice):
                old = self.slices.get((obj.namespace, obj.name))
                return frozenset(
                    (s.namespace, s.service)
                    for s in (old, obj)
                    if s is not None and s.service is not None
                )
        elif isinstance(event, Delete):
            if event.kind is Kind.SERVICE:
                return frozenset({(event.namespace, event.name)})
            if event.kind is Kind.ENDPOINT_SLICE:
                old = self.slices.get((event.namespace, event.name))
                if old is not None and old.service is not None:
                    return frozenset({(old.namespace, old.service)})
                return frozenset()
        return None

    def _service_kind(self, obj: ClusterObject) -> str:
        if isinstance(obj, Service):
            return "headless_with_selector" if obj.headless else "cluster_ip"
        if isinstance(obj, EndpointSlice) and obj.service is not None:
            svc = self.services.get((obj.namespace, obj.service))
            if svc is not None:
                return "headless_with_selector" if svc.headless else "cluster_ip"
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
            pod_ip = self._pod_ip
            for ip in obj.ips:
                found = pod_ip.get(ip)
                if found is None:
                    pod_ip[ip] = obj.namespace
                    continue
                if not isinstance(found, dict):
                    found = pod_ip[ip] = {found: 1}
                found[obj.namespace] = found.get(obj.namespace, 0) + 1

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
            pod_ip = self._pod_ip
            for ip in obj.ips:
                found = pod_ip.get(ip)
                if not isinstance(found, dict):
                    if found == obj.namespace:
                        del pod_ip[ip]
                    continue
                n = found.get(obj.namespace, 0) - 1
                if n > 0:
                    found[obj.namespace] = n
                else:
                    found.pop(obj.namespace, None)
                left = sum(found.values())
                if left == 1:
                    pod_ip[ip] = next(iter(found))  # one Pod again: back to its namespace
                elif not left:
                    del pod_ip[ip]

    def _add_prefixes(self, address: IPAddress, delta: int) -> None:
        self._add_raw_prefixes(address.packed, delta)

    def _add_raw_prefixes(self, raw: bytes, delta: int) -> None:
        """Count the address `raw` under each reverse-tree prefix above it (octets for
        IPv4, nibbles for IPv6)."""
        version, bits, step = (4, 32, 8) if len(raw) == 4 else (6, 128, 4)
        value = int.from_bytes(raw, "big")
        prefixes = self._prefixes
        for plen in range(step, bits, step):
            key = (version, plen, value >> (bits - plen))
            n = prefixes.get(key, 0) + delta
            if n > 0:
                prefixes[key] = n
            else:
                prefixes.pop(key, None)

    def _rebuild_endpoints(self, key: Key) -> None:
        """Re-merge the ready endpoints of one Service and update the reverse index."""
        old = self._ready.pop(key, None)
        built = self._built.pop(key, None)
        if built is not None:
            self._built_count -= len(built)
        if old is not None:
            self._index_ready(old, -1)
        seen: set[tuple[str | None, bytes]] = set()
        segments: list[_Segment] = []
        for slice_key in self._slices_of.get(key, ()):
            segment = _segment(self.slices[slice_key], seen)
            if segment is not None:
                segments.append(segment)
        if segments:
            ready = _Ready(key, tuple(segments))
            self._ready[key] = ready
            self._index_ready(ready, 1)

    def _index_ready(self, ready: _Ready, delta: int) -> None:
        """Add (delta 1) or remove (-1) a Service's ready endpoints in the reverse index
        and the prefix counts."""
        buckets = self._endpoint_ip
        for raw in ready.raws():
            self._add_raw_prefixes(raw, delta)
            bucket_key, low = _bucket_key(raw)
            bucket = buckets.get(bucket_key)
            if delta > 0:
                if bucket is None:
                    bucket = buckets[bucket_key] = _Bucket()
                bucket.add(low, ready)
            elif bucket is not None:
                bucket.remove(low, ready)
                if not bucket.count:
                    del buckets[bucket_key]
