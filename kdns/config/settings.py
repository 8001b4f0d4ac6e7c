"""Every knob of kdns, as frozen values. The CLI builds one `Settings`; nothing reads globals.

No I/O here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from kdns.config.selector import Selector


class PodMode(enum.StrEnum):
    """How `a-b-c-d.<ns>.pod.<zone>` is answered (CoreDNS's `pods` option)."""

    DISABLED = "disabled"  # NXDOMAIN
    INSECURE = "insecure"  # the IP parsed from the name, if the namespace exists
    VERIFIED = "verified"  # only if a running Pod in that namespace has the IP


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str  # "" = all addresses
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    dns_addr: HostPort = HostPort("0.0.0.0", 53)
    """UDP and TCP listener. Port 53 by default, like every DNS server."""

    zone: str = "cluster.local"
    """The cluster domain, lower-case, without trailing dot."""

    ttl: int = 5
    """Record TTL in seconds, 0..3600. CoreDNS's default 5 (kubeadm sets 30)."""

    pods: PodMode = PodMode.INSECURE
    """Pod records; `insecure` is what kubeadm's Corefile sets and the e2e tests need."""

    namespaces: tuple[str, ...] = ()
    """Serve only these namespaces (CoreDNS's `namespaces`); () = all."""

    labels: Selector | None = None
    """Serve only Services, EndpointSlices and Pods whose labels match (`labels`)."""

    namespace_labels: Selector | None = None
    """Serve only namespaces whose labels match (`namespace_labels`)."""

    endpoint_pod_names: bool = False
    """Name endpoints without a hostname by their pod (`endpoint_pod_names`)."""

    autopath: bool = False
    """Complete pods' search paths server-side (`autopath @kubernetes`; needs pods
    verified)."""

    corefile: Path | None = None
    """A CoreDNS Corefile to serve; None = the flags describe the one server block."""

    manifests: tuple[Path, ...] = ()
    """YAML/JSON files or folders: the data source when there is no cluster."""

    kubeconfig: Path | None = None
    """A kubeconfig for a real API server (else in-cluster config when available)."""

    in_cluster: bool = False
    """Use the in-cluster service account (set when KUBERNETES_SERVICE_HOST is present)."""

    upstreams: tuple[HostPort, ...] | None = None
    """Where names outside the served zones go; None = the nameservers of /etc/resolv.conf,
    () = nowhere (REFUSED)."""

    health_addr: HostPort = HostPort("", 8080)
    ready_addr: HostPort = HostPort("", 8181)
    metrics_addr: HostPort = HostPort("", 9153)
    """CoreDNS's ports for /health, /ready and /metrics."""

    debug_addr: HostPort | None = HostPort("127.0.0.1", 9154)
    """HTTP /debug/explain (`kdns explain --server`); loopback only unless told otherwise,
    None = not served."""

    lameduck_seconds: float = 5.0
    """After SIGTERM: /ready turns 503 at once, DNS keeps answering this long, then exit."""

    zone_files: tuple[Path, ...] = ()
    """RFC 1035 zone files (or folders of them) served beside the cluster zone."""

    hosts_file: Path | None = None
    """An /etc/hosts-style file whose names are answered first (A, AAAA, PTR); other
    names go on to the cluster, zone files and upstreams."""

    service_cidrs: tuple[IPv4Network | IPv6Network, ...] = (IPv4Network("10.96.0.0/16"),)
    """Where the manifests source allocates ClusterIPs (kind's default service CIDR)."""

    pod_cidrs: tuple[IPv4Network | IPv6Network, ...] = (IPv4Network("10.244.0.0/16"),)
    """Where the manifests source allocates pod IPs (kind's default pod CIDR)."""

    workers: int = 1
    """DNS worker processes sharing the port with SO_REUSEPORT."""

    max_concurrent: int = 1000
    """Upstream queries in flight at most; past that, REFUSED (CoreDNS's max_concurrent)."""

    cache_size: int = 9984
    """Entries of the forward cache (CoreDNS's per-type default)."""

    cache_max_ttl: int = 30
    """Cap on cached upstream TTLs, like kubeadm's `cache 30`."""

    serve_stale_seconds: float = 0.0
    """Answer from expired cache entries this long after they expire while no upstream
    answers (RFC 8767; CoreDNS's `serve_stale`); 0 = off, as in CoreDNS."""

    upstream_policy: str = "random"
    """The order upstreams are tried in: random, round_robin or sequential (CoreDNS's
    `policy`; random is its default)."""

    rrl_responses_per_second: int = 0
    """Response-rate limit per client /24 (IPv4) or /56 (IPv6) over UDP; 0 = off, as in
    CoreDNS (its `rrl` plugin is not in the default Corefile)."""

    rrl_slip: int = 2
    """With RRL on: every Nth limited reply goes out truncated so real clients retry over
    TCP (BIND's `slip`); 0 drops them all."""

    tcp_idle_seconds: float = 10.0
    """RFC 7766 §6.2.3: idle TCP connections are closed after this."""

    tcp_max_connections: int = 1000
    """TCP connections at most; at the cap the longest-idle one is closed for a new one."""

    log_level: str = "info"
