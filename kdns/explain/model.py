"""What `kdns explain` finds, as plain data: `Explanation.as_json()` is the `-o json` output
and the body of `GET /debug/explain`; `kdns.explain.render` turns that JSON into text.

Reason codes (`Reason.code`) are stable identifiers for tools; messages are for people and
may change. Every code:

| code | meaning |
|---|---|
| `answered` | the name has records of the asked type |
| `nodata` | the name exists but owns nothing of the asked type (D1) |
| `clusterip` | a ClusterIP Service: the answer is its ClusterIP, whatever its endpoints (R8, R9) |
| `headless` | a headless Service: the answer is its ready endpoints (R17, R18) |
| `headless-no-ready-endpoints` | a headless Service without a ready endpoint does not exist (R19) |
| `no-ready-endpoints` | a ClusterIP Service resolves, but no endpoint behind it is ready |
| `external-name` | an ExternalName Service: a CNAME to its target (R26, D5, R27) |
| `external-name-ip` | an ExternalName whose target is an IP address is not served |
| `no-namespace` | the namespace of the name does not exist |
| `no-service` | no Service of that name in that namespace |
| `no-endpoint-label` | no ready endpoint of the Service has that hostname (R20) |
| `no-port` | the Service has no port of that name and protocol (R10, R12) |
| `pods-disabled`, `pod-not-found` | pod records (P1) |
| `reverse` | a PTR name: who owns the address (R14, R24, N7) |
| `structure` | the apex, `dns-version`, `ns.dns`, empty non-terminals (D3, D7, R2) |
| `no-such-shape` | the name cannot exist in the cluster zone's grammar |
| `not-synced` | SERVFAIL: the data source has not listed everything yet |
| `filtered` | a filter (e.g. a namespace filter) hides the Service or endpoint |
| `zone-file` | answered from a zone file (`file`) |
| `forwarded` | outside the cluster zones: sent to an upstream (D6) |
| `refused` | no server block serves the name and nothing forwards it (D6) |
| `other` | anything else (the answering plugin is named) |

Endpoint exclusion codes (`EndpointInfo.reason.code`): `not-ready` (conditions.ready false,
R6), `terminating` (conditions.terminating true), `other-family` (an IPv6 address for A, or
IPv4 for AAAA), `other-label` (another endpoint name than the one asked), `filtered`,
`not-in-answer` (ready and of the right family, yet absent: a duplicate, or a reply cut
short).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    rule: str = ""  # ids of docs/rules.md, e.g. "R19" or "D1, D3"


@dataclass(frozen=True, slots=True)
class AnswerInfo:
    """The reply as dig shows it; `obtained` False when it was not asked (offline forward)."""

    obtained: bool
    rcode: str = ""
    flags: tuple[str, ...] = ()
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    truncated_udp: bool = False  # the UDP reply was cut (TC); the TCP reply is shown


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """Which server block took the name, and which plugin of its chain answered."""

    listener: str = ""  # "dns://:53"
    zone: str | None = None  # the block zone that matched; None = no block serves the name
    block_zones: tuple[str, ...] = ()
    chain: tuple[str, ...] = ()  # the plugins that answer queries, in execution order
    plugin: str = ""  # the plugin that produced the reply ("" = none)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    namespace: str
    name: str
    type: str  # "ClusterIP" (also NodePort, LoadBalancer), "headless", "ExternalName"
    cluster_ips: tuple[str, ...] = ()
    external_name: str | None = None
    ports: tuple[str, ...] = ()  # "http/tcp/80"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One address of one endpoint of one slice, and what became of it in this answer."""

    slice: str
    address: str
    label: str  # the endpoint's name under the Service (hostname, else dashed address, R7)
    ready: bool
    terminating: bool
    pod: str | None  # a Pod of the namespace with that address, when the data has Pods
    status: str  # "answered", "ready" (backs a ClusterIP, not in this answer), "excluded"
    reason: Reason | None = None  # why excluded; or a note (terminating but ready)


@dataclass(frozen=True, slots=True)
class SliceInfo:
    name: str
    ports: tuple[str, ...]
    endpoints: int  # how many endpoints (not addresses)
    ready: int


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suggestion:
    name: str
    why: str


@dataclass(frozen=True, slots=True)
class ForwardInfo:
    """Forwarding of the name (or of an ExternalName target, or of a reverse miss)."""

    name: str  # what is (or would be) sent upstream
    upstreams: tuple[str, ...]  # the forward plugin's upstreams
    asked: bool  # False offline: nothing is sent
    answered_by: str | None = None  # the upstream that answered
    from_cache: bool = False  # the cache plugin answered from an earlier upstream reply


@dataclass(slots=True)
class Explanation:
    name: str
    type: str
    source: str  # "manifests" (offline) or "server" (a running kdns)
    answer: AnswerInfo
    route: RouteInfo
    reasons: list[Reason] = field(default_factory=list)
    service: ServiceInfo | None = None
    slices: list[SliceInfo] = field(default_factory=list)
    endpoints: list[EndpointInfo] = field(default_factory=list)
    pods: list[PodInfo] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    forward: ForwardInfo | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = JSON_VERSION
        data["excluded"] = [
            {
                "address": e.address,
                "slice": e.slice,
                "label": e.label,
                "reason": e.reason.code if e.reason else "",
                "message": e.reason.message if e.reason else "",
            }
            for e in self.endpoints
            if e.status == "excluded"
        ]
        return data


__all__ = [
    "JSON_VERSION",
    "AnswerInfo",
    "EndpointInfo",
    "Explanation",
    "ForwardInfo",
    "PodInfo",
    "Reason",
    "RouteInfo",
    "ServiceInfo",
    "SliceInfo",
    "Suggestion",
]
