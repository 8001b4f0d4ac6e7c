"""Stable ClusterIPs and pod IPs, the same on every start.

A Service without `clusterIP` (not headless, not ExternalName) gets, per IP family, the
address `network + h`, where `h = sha256("<namespace>/<name>") mod size`. Never
allocated: the network and last address, offset 1 (the `kubernetes` Service in a real
cluster) and offset 10 (kube-dns in kind). Explicit `clusterIP(s)` are reserved first.
Then every Service whose home address is free takes it (when two Services share a home
address, the first by namespace/name wins); the rest probe upwards (+1, wrapping) in
namespace/name order. So a Service keeps its address while others come and go, except
when a new Service has the same home address and sorts first, or when the Service was
itself displaced (about N^2/131072 chance of any home collision for N Services in a /16).

Dual-stack: `ipFamilyPolicy` PreferDualStack/RequireDualStack get one address per family
of `ipFamilies` (default: the first service CIDR's family, then the other) that has a
configured CIDR; SingleStack (default) gets the first family only. Headless and
ExternalName Services get no address, so their families need no service CIDR (a headless
Service's families only choose which pod addresses become its endpoints).

Pod IPs come from the pod CIDRs by the same hash-and-probe rule over
`<namespace>/<pod name>` (offset 1, the gateway, is never used); a bare Pod's
`status.podIP(s)` are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from kdns.cluster.model import IPAddress, Service
from kdns.sources.manifests.errors import ManifestError
from kdns.sources.manifests.services import ServiceSpec
from kdns.sources.manifests.workloads import PodSpec

Network = IPv4Network | IPv6Network
Key = tuple[str, str]  # (namespace, name)

SERVICE_RESERVED_OFFSETS = frozenset({1, 10})  # kubernetes.default; kube-dns in kind
POD_RESERVED_OFFSETS = frozenset({1})  # the node's gateway


def _home_offset(key: str, network: Network) -> int:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    return digest % network.num_addresses


class Allocator:
    """Hash-derived, collision-probing addresses in one network.

    Probing finds the next free offset through a "next free" forest over the taken
    offsets (union-find with path compression), so filling a network costs about one
    step per address, not a scan per collision."""

    def __init__(self, network: Network, reserved_offsets: frozenset[int]) -> None:
        self.network = network
        self.size = network.num_addresses
        self.base = int(network.network_address)
        # taken offset -> an offset at or below the next free one (size: none up to the end)
        self._next: dict[int, int] = {}
        for offset in {0, self.size - 1, *reserved_offsets}:
            if 0 <= offset < self.size:
                self._take(offset)

    def _take(self, offset: int) -> None:
        self._next[offset] = offset + 1

    def _first_free(self, offset: int) -> int:
        """The first free offset at or after `offset`; `size` when there is none."""
        path = []
        while offset in self._next:
            path.append(offset)
            offset = self._next[offset]
        for taken in path:
            self._next[taken] = offset
        return offset

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.network.version and ip in self.network

    def reserve(self, ip: IPAddress) -> None:
        if self.contains(ip):
            offset = int(ip) - self.base
            self._next[offset] = offset + 1

    def free(self, offset: int) -> bool:
        return offset not in self._next

    def address(self, offset: int) -> IPAddress:
        self._take(offset)
        return ip_address(self.base + offset)

    def probe(self, start: int) -> IPAddress | None:
        """The first free address at or after offset `start`, wrapping; None when full."""
        offset = self._first_free(start)
        if offset >= self.size:
            offset = self._first_free(0)
            if offset >= start:
                return None  # [start, size) and [0, start) are taken
        return self.address(offset)


def allocators(cidrs: Sequence[Network], reserved: frozenset[int]) -> dict[int, Allocator]:
    """One allocator per IP version: the first CIDR of each family."""
    found: dict[int, Allocator] = {}
    for cidr in cidrs:
        found.setdefault(cidr.version, Allocator(cidr, reserved))
    return found


def _allocate(
    keys: Sequence[tuple[str, int]], allocators: Mapping[int, Allocator]
) -> dict[tuple[str, int], IPAddress | None]:
    """Addresses for (key, IP version) pairs: home addresses first, then probing."""
    result: dict[tuple[str, int], IPAddress | None] = {}
    homes: dict[tuple[str, int], int] = {}
    for key, version in sorted(keys):
        alloc = allocators[version]
        home = _home_offset(key, alloc.network)
        homes[(key, version)] = home
        if alloc.free(home):
            result[(key, version)] = alloc.address(home)
    for key, version in sorted(keys):
        if (key, version) not in result:
            result[(key, version)] = allocators[version].probe(homes[(key, version)])
    return result


def assign_cluster_ips(services: Mapping[Key, ServiceSpec], pool: Mapping[int, Allocator]) -> None:
    """Complete each Service's ClusterIPs in place: explicit ones are reserved first, then
    the missing families are allocated."""
    _reserve_explicit(services, pool)
    wanted: list[tuple[str, int]] = []
    for (ns, name), spec in services.items():
        have = {ip.version for ip in spec.service.cluster_ips}
        if spec.allocates and (spec.dual or not have):
            wanted += [(f"{ns}/{name}", v) for v in spec.families if v in pool and v not in have]
    allocated = _allocate(wanted, pool)
    for (ns, name), spec in services.items():
        extra: list[IPAddress] = []
        for version in spec.families:
            if (f"{ns}/{name}", version) not in allocated:
                continue  # given, or no CIDR of that family
            got = allocated[(f"{ns}/{name}", version)]
            if got is None:
                raise spec.origin.fail(
                    "spec.clusterIP",
                    f"no free address in {pool[version].network}",
                    "use a larger --service-cidr",
                )
            extra.append(got)
        if extra:
            svc = spec.service
            ips = sorted((*svc.cluster_ips, *extra), key=lambda a: _rank(spec.families, a.version))
            spec.service = Service(svc.namespace, svc.name, tuple(ips), ports=svc.ports)


def _reserve_explicit(services: Mapping[Key, ServiceSpec], pool: Mapping[int, Allocator]) -> None:
    """Reserve the ClusterIPs the manifests give; one given twice is an error, as the API
    server says "provided IP is already allocated"."""
    owners: dict[IPAddress, Key] = {}
    for key, spec in sorted(services.items()):
        for ip in spec.service.cluster_ips:
            if ip in owners:
                ns, name = owners[ip]
                raise spec.origin.fail(
                    "spec.clusterIP",
                    f"{ip} is already the ClusterIP of Service {ns}/{name}",
                    "choose another address or omit it",
                )
            owners[ip] = key
            for alloc in pool.values():
                alloc.reserve(ip)


def _rank(families: Sequence[int], version: int) -> int:
    return families.index(version) if version in families else len(families)


def assign_pod_ips(
    pods: Mapping[Key, PodSpec], pool: Mapping[int, Allocator]
) -> dict[Key, tuple[IPAddress, ...]]:
    """Each Pod's IPs: explicit `status.podIPs` reserved and kept, one address per pod
    CIDR family for the others."""
    for pod in pods.values():
        for ip in pod.ips:
            for alloc in pool.values():
                alloc.reserve(ip)
    wanted = [(f"{ns}/{name}", v) for (ns, name), pod in pods.items() if not pod.ips for v in pool]
    allocated = _allocate(wanted, pool)
    pod_ips: dict[Key, tuple[IPAddress, ...]] = {}
    for (ns, name), pod in pods.items():
        if pod.ips:
            pod_ips[(ns, name)] = pod.ips
            continue
        ips = []
        for version in pool:
            pod_ip = allocated[(f"{ns}/{name}", version)]
            if pod_ip is None:
                raise ManifestError(
                    f"{pod.origin}: no free pod IP in {pool[version].network} for pod {name}; "
                    "use a larger --pod-cidr"
                )
            ips.append(pod_ip)
        pod_ips[(ns, name)] = tuple(ips)
    return pod_ips
