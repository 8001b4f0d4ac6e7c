"""The benchmark workload: one set of Services, written out for every server under test.

Owns the deterministic generation (`--services N --seed S`) of
* the `cluster.local` zone file for NSD and Knot,
* the dnsmasq hosts file and config lines (`addn-hosts`, `srv-host`),
* the kdns manifests file (Services, plus EndpointSlices for headless ones),
* the dnsperf query file (85 % A, 10 % SRV, 5 % nonexistent; docs/benchmarking.md),
and the expected answers the equivalence check compares against.

It must not start processes or touch the network; it only writes files into a directory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

ZONE = "cluster.local"
NAMESPACE = "default"
TTL = 5  # CoreDNS's default ttl (docs/rules.md#ttls)
# CoreDNS's SOA: ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>
SOA_MNAME = f"ns.dns.{ZONE}."
SOA_RNAME = f"hostmaster.{ZONE}."
SOA_TIMERS = (7200, 1800, 86400, TTL)
SERVICE_BASE = int(IPv4Address("10.96.0.10"))  # ClusterIPs count up from here (10.96.0.0/12)
ENDPOINT_BASE = int(IPv4Address("10.244.0.10"))  # headless endpoint IPs count up from here
ENDPOINTS_PER_HEADLESS = 2
PORT_NAME = "http"
PORT_PROTO = "tcp"
PORT_NUMBER = 80

MIX_A = 0.85
MIX_SRV = 0.10  # the rest (5 %) are names that do not exist


@dataclass(frozen=True, slots=True)
class Endpoint:
    hostname: str
    ip: str


@dataclass(frozen=True, slots=True)
class Service:
    """One generated Service: `cluster_ip` is "" for a headless one (then `endpoints`)."""

    name: str
    cluster_ip: str
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{NAMESPACE}.svc.{ZONE}."

    @property
    def srv_name(self) -> str:
        return f"_{PORT_NAME}._{PORT_PROTO}.{self.fqdn}"

    def a_rdata(self) -> list[str]:
        """The A rdata of the service name (R9 ClusterIP, R17 headless endpoints)."""
        if self.cluster_ip:
            return [self.cluster_ip]
        return sorted(ep.ip for ep in self.endpoints)

    def srv_rdata(self) -> list[str]:
        """SRV rdata as `priority weight port target` (R10, R22; weight = floor(100/N))."""
        if self.cluster_ip:
            return [f"0 100 {PORT_NUMBER} {self.fqdn}"]
        weight = max(1, 100 // len(self.endpoints))
        return sorted(
            f"0 {weight} {PORT_NUMBER} {ep.hostname}.{self.fqdn}" for ep in self.endpoints
        )


@dataclass(slots=True)
class Workload:
    services: list[Service]
    seed: int
    queries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def missing_name(self) -> str:
        return f"missing-0.{NAMESPACE}.svc.{ZONE}."


def build(services: int, *, seed: int = 1, headless_fraction: float = 0.0) -> Workload:
    """The Services svc-0..svc-(N-1) in `default`; a seeded subset is headless."""
    rng = random.Random(seed)
    out: list[Service] = []
    next_ep = ENDPOINT_BASE
    for i in range(services):
        name = f"svc-{i}"
        if headless_fraction > 0 and rng.random() < headless_fraction:
            eps = []
            for j in range(ENDPOINTS_PER_HEADLESS):
                eps.append(Endpoint(hostname=f"ep-{j}", ip=str(IPv4Address(next_ep))))
                next_ep += 1
            out.append(Service(name, "", tuple(eps)))
        else:
            out.append(Service(name, str(IPv4Address(SERVICE_BASE + i))))
    return Workload(services=out, seed=seed)


def make_queries(workload: Workload, *, count: int = 100_000) -> list[tuple[str, str]]:
    """`count` (name, type) pairs: 85 % A, 10 % SRV, 5 % `missing-N` A (NXDOMAIN)."""
    rng = random.Random(workload.seed * 7919 + 1)
    n = len(workload.services)
    queries: list[tuple[str, str]] = []
    for _ in range(count):
        r = rng.random()
        svc = workload.services[rng.randrange(n)]
        if r < MIX_A:
            queries.append((svc.fqdn, "A"))
        elif r < MIX_A + MIX_SRV:
            queries.append((svc.srv_name, "SRV"))
        else:
            queries.append((f"missing-{rng.randrange(n)}.{NAMESPACE}.svc.{ZONE}.", "A"))
    workload.queries = queries
    return queries


def zone_text(workload: Workload) -> str:
    """RFC 1035 master file for NSD and Knot, with the records kdns would answer."""
    refresh, retry, expire, minimum = SOA_TIMERS
    lines = [
        f"$ORIGIN {ZONE}.",
        f"$TTL {TTL}",
        f"@ {TTL} IN SOA {SOA_MNAME} {SOA_RNAME} 1 {refresh} {retry} {expire} {minimum}",
        f"@ {TTL} IN NS {SOA_MNAME}",
        f"{SOA_MNAME} {TTL} IN A 127.0.0.1",
    ]
    for svc in workload.services:
        for ip in svc.a_rdata():
            lines.append(f"{svc.fqdn} {TTL} IN A {ip}")
        for ep in svc.endpoints:
            lines.append(f"{ep.hostname}.{svc.fqdn} {TTL} IN A {ep.ip}")
        for rdata in svc.srv_rdata():
            lines.append(f"{svc.srv_name} {TTL} IN SRV {rdata}")
    return "\n".join(lines) + "\n"


def dnsmasq_hosts(workload: Workload) -> str:
    """The `addn-hosts` file: one line per (address, name)."""
    lines = [f"127.0.0.1 {SOA_MNAME[:-1]}"]
    for svc in workload.services:
        for ip in svc.a_rdata():
            lines.append(f"{ip} {svc.fqdn[:-1]}")
        for ep in svc.endpoints:
            lines.append(f"{ep.ip} {ep.hostname}.{svc.fqdn[:-1]}")
    return "\n".join(lines) + "\n"


def dnsmasq_srv_lines(workload: Workload) -> list[str]:
    """`srv-host=<name>,<target>,<port>,<priority>,<weight>` lines."""
    lines = []
    for svc in workload.services:
        for rdata in svc.srv_rdata():
            prio, weight, port, target = rdata.split()
            lines.append(f"srv-host={svc.srv_name[:-1]},{target[:-1]},{port},{prio},{weight}")
    return lines


def manifests_text(workload: Workload) -> str:
    """Multi-document YAML: the Services (and headless EndpointSlices) for `kdns --manifests`."""
    docs: list[str] = []
    for svc in workload.services:
        cluster_ip = svc.cluster_ip or "None"
        docs.append(
            "apiVersion: v1\n"
            "kind: Service\n"
            "metadata:\n"
            f"  name: {svc.name}\n"
            f"  namespace: {NAMESPACE}\n"
            "spec:\n"
            f"  clusterIP: {cluster_ip}\n"
            "  ports:\n"
            f"  - name: {PORT_NAME}\n"
            f"    protocol: {PORT_PROTO.upper()}\n"
            f"    port: {PORT_NUMBER}\n"
        )
        if svc.endpoints:
            eps = "".join(
                f"- addresses: [{ep.ip}]\n"
                f"  hostname: {ep.hostname}\n"
                "  conditions:\n"
                "    ready: true\n"
                for ep in svc.endpoints
            )
            docs.append(
                "apiVersion: discovery.k8s.io/v1\n"
                "kind: EndpointSlice\n"
                "metadata:\n"
                f"  name: {svc.name}-abc\n"
                f"  namespace: {NAMESPACE}\n"
                "  labels:\n"
                f"    kubernetes.io/service-name: {svc.name}\n"
                "addressType: IPv4\n"
                "ports:\n"
                f"- name: {PORT_NAME}\n"
                f"  protocol: {PORT_PROTO.upper()}\n"
                f"  port: {PORT_NUMBER}\n"
                "endpoints:\n" + eps
            )
    return "---\n".join(docs)


def queries_text(queries: list[tuple[str, str]]) -> str:
    """dnsperf's input format: `<name> <type>` per line."""
    return "".join(f"{name} {qtype}\n" for name, qtype in queries)


@dataclass(frozen=True, slots=True)
class Files:
    zone: Path
    hosts: Path
    manifests: Path
    queries: Path
    srv_lines: tuple[str, ...]


def write(workload: Workload, directory: Path, *, query_count: int = 100_000) -> Files:
    """Write every artefact into `directory` (created if missing) and return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    if not workload.queries:
        make_queries(workload, count=query_count)
    zone = directory / f"{ZONE}.zone"
    zone.write_text(zone_text(workload))
    hosts = directory / "hosts"
    hosts.write_text(dnsmasq_hosts(workload))
    manifests_dir = directory / "manifests"
    manifests_dir.mkdir(exist_ok=True)
    manifests = manifests_dir / "services.yaml"
    manifests.write_text(manifests_text(workload))
    queries = directory / "queries.txt"
    queries.write_text(queries_text(workload.queries))
    return Files(zone, hosts, manifests_dir, queries, tuple(dnsmasq_srv_lines(workload)))
