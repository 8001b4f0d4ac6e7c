"""The benchmark workload: one set of Services, written out for every server under test.

Owns the deterministic generation (`--services N --seed S`) of
* the `cluster.local` zone file for NSD and Knot,
* the dnsmasq hosts file and config lines (`addn-hosts`, `srv-host`),
* the kdns manifests file (Services, plus EndpointSlices for headless ones),
* the dnsperf query file (85 % A, 10 % SRV, 5 % nonexistent; docs/benchmarking.md),
* the named query mixes (`MIXES`: which names, which anchors, which dnsperf flags), with
  the per-run files of unique names and the external zone a forwarding row resolves,
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

# The external zone of the forwarding rows: a local authoritative upstream serves it with a
# wildcard, so every name below it exists, unique or not (docs/benchmarking.md#workloads).
EXT_ZONE = "ext.test"
EXT_ADDRESS = "192.0.2.1"  # TEST-NET-1
EXT_TTL = 300
EXT_NAMES = 1000  # forward-hits draws from ext-0 .. ext-999
# search-misses: the external domain, and kubelet's search list for a pod in NAMESPACE.
SEARCH_DOMAIN = "example.com"
SEARCH_LIST = (f"{NAMESPACE}.svc.{ZONE}", f"svc.{ZONE}", ZONE)
_SCRAMBLE = 0x9E3779B1  # odd, so i -> i * K mod 2**32 is a bijection: unique, random-looking


@dataclass(frozen=True, slots=True)
class Mix:
    """One benchmark row: what dnsperf sends, how, and which reference servers anchor it.

    `names` picks the query file: "mix" (the static 85/10/5 file), "mix-unique-misses"
    (the same with every miss a name used once), "unique-misses" (only names used once,
    under the cluster zone), "search-misses" (new external names under each search domain
    of a pod in turn), "forward-unique" (external names used once), "forward-hits"
    (external names drawn from EXT_NAMES). Unique files are generated per run.
    """

    name: str
    summary: str
    anchors: tuple[str, ...]
    names: str
    forward: bool = False  # the names are external: servers run as forwarders
    dnsperf: tuple[str, ...] = ()  # extra dnsperf flags
    tcp: bool = False
    dnssec_ok: bool = False

    @property
    def unique(self) -> bool:
        return self.names in UNIQUE_NAMES


UNIQUE_NAMES = ("mix-unique-misses", "unique-misses", "search-misses", "forward-unique")

MIXES: dict[str, Mix] = {
    m.name: m
    for m in (
        Mix(
            "mix",
            "85 % A and 10 % SRV of the Services' names, 5 % NXDOMAIN (missing-N)",
            ("nsd", "knot", "dnsmasq"),
            "mix",
        ),
        Mix(
            "mix-unique-misses",
            "85 % A, 10 % SRV, 5 % NXDOMAIN, every miss a new name",
            ("nsd",),
            "mix-unique-misses",
        ),
        Mix(
            "unique-misses",
            f"only new nonexistent names <random>.{NAMESPACE}.svc.{ZONE} (random subdomains)",
            ("nsd",),
            "unique-misses",
        ),
        Mix(
            "search-misses",
            f"ndots:5 search-path misses: new names <random>.{SEARCH_DOMAIN} under "
            f"{NAMESPACE}.svc.{ZONE}, svc.{ZONE} and {ZONE} in turn",
            ("nsd",),
            "search-misses",
        ),
        Mix(
            "mix-tcp",
            "the mix over TCP, 8 connections",
            ("nsd",),
            "mix",
            dnsperf=("-m", "tcp"),
            tcp=True,
        ),
        Mix(
            "mix-do",
            "the mix with EDNS and the DO bit",
            ("nsd",),
            "mix",
            dnsperf=("-D",),
            dnssec_ok=True,
        ),
        Mix(
            "forward-unique",
            f"external names <random>.{EXT_ZONE}, each new, forwarded to a local upstream",
            ("dnsmasq", "unbound"),
            "forward-unique",
            forward=True,
        ),
        Mix(
            "forward-hits",
            f"external names from {EXT_NAMES:,} (forward-cache hits after the warm-up)",
            ("dnsmasq", "unbound"),
            "forward-hits",
            forward=True,
        ),
    )
}


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


def unique_label(tag: str, i: int) -> str:
    """The i-th name label of a run tagged `tag`: distinct for every (tag, i < 2**32)."""
    return f"{tag}-{(i * _SCRAMBLE) & 0xFFFFFFFF:08x}"


def unique_miss_name(tag: str, i: int) -> str:
    return f"{unique_label(tag, i)}.{NAMESPACE}.svc.{ZONE}."


def search_miss_name(tag: str, i: int) -> str:
    """The i-th query of a pod in namespace NAMESPACE resolving new external names
    through its search path (ndots:5): name i // 3 under search domain i % 3."""
    return f"{unique_label(tag, i // 3)}.{SEARCH_DOMAIN}.{SEARCH_LIST[i % 3]}."


def ext_name(i: int) -> str:
    """One of the EXT_NAMES external names of forward-hits."""
    return f"ext-{i}.{EXT_ZONE}."


def forward_hit_queries(seed: int, *, count: int = 100_000) -> list[tuple[str, str]]:
    """`count` A queries drawn uniformly (seeded) from the EXT_NAMES external names."""
    rng = random.Random(seed * 7919 + 2)
    return [(ext_name(rng.randrange(EXT_NAMES)), "A") for _ in range(count)]


def write_unique_queries(
    path: Path, names: str, *, lines: int, tag: str, workload: Workload
) -> int:
    """Write a dnsperf file of `lines` queries in which no generated name repeats.

    `names` is one of UNIQUE_NAMES; `tag` must differ between runs against the same server
    process so that its caches cannot have seen any of the names. Returns the number of
    lines written (dnsperf loops over the file, so a run must send at most that many).
    """
    if names not in UNIQUE_NAMES:
        raise ValueError(f"{names!r} is not one of {UNIQUE_NAMES}")
    if names == "mix-unique-misses" and not workload.queries:
        raise ValueError("mix-unique-misses needs workload.queries (make_queries first)")
    chunk = 100_000
    counter = 0
    with path.open("w") as f:
        for start in range(0, lines, chunk):
            stop = min(lines, start + chunk)
            if names == "unique-misses":
                f.write("".join([f"{unique_miss_name(tag, i)} A\n" for i in range(start, stop)]))
            elif names == "search-misses":
                f.write("".join([f"{search_miss_name(tag, i)} A\n" for i in range(start, stop)]))
            elif names == "forward-unique":
                f.write(
                    "".join([f"{unique_label(tag, i)}.{EXT_ZONE}. A\n" for i in range(start, stop)])
                )
            else:
                base = workload.queries
                out: list[str] = []
                for i in range(start, stop):
                    name, qtype = base[i % len(base)]
                    if name.startswith("missing-"):
                        name = unique_miss_name(tag, counter)
                        counter += 1
                    out.append(f"{name} {qtype}\n")
                f.write("".join(out))
    return lines


def ext_zone_text() -> str:
    """The upstream's zone for the forwarding rows: SOA, NS and a wildcard A."""
    refresh, retry, expire, _ = SOA_TIMERS
    return (
        f"$ORIGIN {EXT_ZONE}.\n"
        f"$TTL {EXT_TTL}\n"
        f"@ IN SOA ns.{EXT_ZONE}. hostmaster.{EXT_ZONE}. 1 {refresh} {retry} {expire} {EXT_TTL}\n"
        f"@ IN NS ns.{EXT_ZONE}.\n"
        f"ns IN A 127.0.0.1\n"
        f"* IN A {EXT_ADDRESS}\n"
    )


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
    queries: Path  # the static mix
    srv_lines: tuple[str, ...]
    ext_zone: Path  # the forwarding rows' upstream zone (EXT_ZONE)
    hits_queries: Path  # forward-hits: external names from EXT_NAMES


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
    ext_zone = directory / f"{EXT_ZONE}.zone"
    ext_zone.write_text(ext_zone_text())
    hits = directory / "forward-hits.txt"
    hits.write_text(queries_text(forward_hit_queries(workload.seed, count=query_count)))
    return Files(
        zone,
        hosts,
        manifests_dir,
        queries,
        tuple(dnsmasq_srv_lines(workload)),
        ext_zone,
        hits,
    )
