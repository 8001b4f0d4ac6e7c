"""The one configuration model that serving is built from.

Two front ends produce it: the Corefile (`kdns.config.corefile`) and the command-line flags
(`kdns.config.flags`, a shorthand that builds the same thing). `kdns.serve.chain` turns it
into plugin chains. A `Config` is plain frozen data: no I/O, no sockets, nothing running.

Names are stored lower-case and fully qualified ("cluster.local.", "." for the root), so a
zone match is a suffix test. Durations are seconds as floats. `Origin` records where a
directive was written, so every later error can still say `FILE:LINE`.

The execution order of plugins is fixed by kind (`PLUGIN_ORDER`, as CoreDNS's plugin.cfg
does), never by the order of the directives in the Corefile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from kdns.config.selector import Selector
from kdns.config.settings import HostPort, PodMode


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a directive came from: a Corefile and line, or a flag ("--ttl", line 0)."""

    source: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


FLAGS = Origin("command line")

# CoreDNS's default addresses of `health`, `ready` and `prometheus` (localhost:9153).
HEALTH_ADDR = HostPort("", 8080)
READY_ADDR = HostPort("", 8181)
PROMETHEUS_ADDR = HostPort("127.0.0.1", 9153)


# ---- plugins ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consolidate:
    """`errors { consolidate DURATION REGEXP [LEVEL] }`: errors matching `pattern` are
    counted for `interval` seconds and logged once with the count."""

    interval: float
    pattern: str
    level: str = "error"  # warning, error, info, debug


@dataclass(frozen=True, slots=True)
class ErrorsConfig:
    consolidate: tuple[Consolidate, ...] = ()
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class HealthConfig:
    addr: HostPort = HEALTH_ADDR
    lameduck: float = 0.0  # CoreDNS: 0 unless `lameduck DUR` is given
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class ReadyConfig:
    addr: HostPort = READY_ADDR
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    addr: HostPort = PROMETHEUS_ADDR
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    interval: float = 30.0
    jitter: float = 15.0
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class LoadbalanceConfig:
    policy: str = "round_robin"
    origin: Origin = FLAGS


class LogClass(enum.StrEnum):
    """`log { class ... }`: which responses are logged."""

    ALL = "all"
    DENIAL = "denial"  # NXDOMAIN, or NOERROR without answers (NODATA)
    ERROR = "error"  # SERVFAIL, NOTIMP, REFUSED, ...
    SUCCESS = "success"  # NOERROR with answers


COMMON_LOG_FORMAT = (
    '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
    "{rcode} {>rflags} {rsize} {duration}"
)
# `{combined}`: the common format and the query's opcode.
COMBINED_LOG_FORMAT = COMMON_LOG_FORMAT + ' "{>opcode}"'


@dataclass(frozen=True, slots=True)
class LogRule:
    """One `log [NAMES...] [FORMAT]` line: queries under `names` are logged in `format`."""

    names: tuple[str, ...] = (".",)
    format: str = COMMON_LOG_FORMAT
    classes: frozenset[LogClass] = frozenset({LogClass.ALL})


@dataclass(frozen=True, slots=True)
class LogConfig:
    rules: tuple[LogRule, ...] = (LogRule(),)
    origin: Origin = FLAGS


class StaleRefresh(enum.StrEnum):
    """`serve_stale DURATION REFRESH_MODE`: when an expired entry is refreshed."""

    IMMEDIATE = "immediate"  # answer stale at once, refresh in the background
    VERIFY = "verify"  # ask upstream first; answer stale only when that fails


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """`cache [TTL] [ZONES...] { success|denial CAPACITY [TTL [MINTTL]], prefetch ...,
    serve_stale ..., servfail DURATION, disable success|denial [ZONES...], keepttl }`.

    `max_ttl` caps both success and denial TTLs (CoreDNS: 3600 success, 1800 denial unless
    TTL is given); `min_ttl` floors them (5 s). A `disable` with no zones disables that
    kind of caching for every zone of the plugin (a Corefile gives `(".",)`). Capacities
    are the ones CoreDNS uses: CAPACITY rounded down to a multiple of its 256 shards,
    1024 at least.

    `prefetch AMOUNT [DURATION] [PERCENTAGE%]`: an entry asked AMOUNT times with no gap
    of DURATION between queries is refreshed once its TTL falls to PERCENTAGE of the
    original (0 = off). `serve_stale [DURATION [MODE ...]]`: expired entries are kept
    `stale` seconds longer (0 = off) and answered when the upstream cannot be reached;
    `stale_ttl` is the TTL of such answers, `stale_verify_timeout` bounds how long
    `verify` waits (0 = the upstream's own timeout), `stale_recheck` the pause after a
    failed refresh (0 = retry on the next query)."""

    zones: tuple[str, ...] = (".",)
    success_capacity: int = 9984
    success_ttl: int = 3600
    success_min_ttl: int = 5
    denial_capacity: int = 9984
    denial_ttl: int = 1800
    denial_min_ttl: int = 5
    servfail_ttl: int = 5
    disable_success: tuple[str, ...] | None = None  # None = caching success everywhere
    disable_denial: tuple[str, ...] | None = None
    prefetch: int = 0  # AMOUNT; 0 = no prefetching
    prefetch_gap: float = 60.0  # DURATION (CoreDNS: 1m)
    prefetch_percentage: int = 10  # PERCENTAGE% of the original TTL (CoreDNS: 10%)
    stale: float = 0.0  # serve_stale DURATION (CoreDNS: 1h when given); 0 = off
    stale_refresh: StaleRefresh = StaleRefresh.IMMEDIATE
    stale_verify_timeout: float = 0.0
    stale_ttl: int = 0
    stale_recheck: float = 0.0
    keepttl: bool = False
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """`kubernetes [ZONES...] { ... }`. `zones` includes any reverse zones it serves
    (e.g. "in-addr.arpa."); the first forward zone is the cluster domain."""

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    pods: PodMode = PodMode.DISABLED  # CoreDNS's default
    ttl: int = 5
    # None: no fallthrough; (): fall through for every zone; else only for these zones.
    fallthrough: tuple[str, ...] | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    endpoint: str | None = None
    # Reverse misses inside these networks are final NXDOMAIN, never passed on (the flags
    # front end sets the service and pod CIDRs; a Corefile passes every miss on, as
    # CoreDNS does with `fallthrough in-addr.arpa ip6.arpa`).
    final_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    # What is served (CoreDNS's options of the same names): only these namespaces (() =
    # all), only namespaces whose labels match, only Services, EndpointSlices and Pods
    # whose labels match (None = no filter).
    namespaces: tuple[str, ...] = ()
    namespace_labels: Selector | None = None
    labels: Selector | None = None
    endpoint_pod_names: bool = False  # an endpoint without hostname is named by its pod
    noendpoints: bool = False  # no EndpointSlices: endpoint and headless names NXDOMAIN
    ignore_empty_service: bool = False  # ClusterIP Services without ready endpoints NXDOMAIN
    origin: Origin = FLAGS

    @property
    def cluster_zone(self) -> str:
        for zone in self.zones:
            if not zone.endswith(("in-addr.arpa.", "ip6.arpa.")):
                return zone
        return "cluster.local."


@dataclass(frozen=True, slots=True)
class AutopathConfig:
    """`autopath [ZONES...] RESOLV-CONF`: server-side search path completion.

    `plugin` "kubernetes" (`@kubernetes`): the search path of the pod that asks, from its
    namespace, then `search` (the search domains of kdns's own /etc/resolv.conf, as
    CoreDNS's kubernetes plugin reads them). `plugin` None: `search` is the search list of
    the RESOLV-CONF file, the same for every client."""

    zones: tuple[str, ...] = (".",)
    plugin: str | None = "kubernetes"
    search: tuple[str, ...] = ()  # absolute, lower-case
    resolv_conf: str = "@kubernetes"  # as written
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class Upstream:
    """One `forward` destination: an address and port (53, or 853 for `tls://`), and for
    DNS over TLS (RFC 7858) the name its certificate must carry when written as
    `tls://IP%NAME` (else `tls_servername`, else the IP address itself)."""

    addr: HostPort
    tls: bool = False
    server_name: str | None = None

    def __str__(self) -> str:
        return f"tls://{self.addr}" if self.tls else str(self.addr)


class ForwardPolicy(enum.StrEnum):
    """`policy`: the order upstreams are tried in, per query."""

    RANDOM = "random"  # CoreDNS's default
    ROUND_ROBIN = "round_robin"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """`tls [CERT KEY] [CA]`: a client certificate and key, and the CA that signs the
    upstream's certificate (None = the system's CAs)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """`forward FROM TO... { ... }`. `to` is resolved (a resolv.conf path becomes its
    nameservers at load time); `to_text` keeps what was written. Defaults are CoreDNS's.

    `except_zones`: names under these (but not FROM itself) pass to the next plugin.
    `max_fails`: failed health checks in a row before an upstream counts as down (0 = never
    down, never checked). `health_check`: seconds between checks of a failing upstream,
    which ask `health_check_domain` NS, RD set unless `no_rec`. `expire`: how long upstream
    connections are reused (UDP sockets and their source ports are replaced after this
    much use, TCP and TLS connections closed after this long idle; 0 = a new one per
    query). `read_timeout`: how long one try waits for a reply."""

    from_zone: str = "."
    to: tuple[Upstream, ...] = ()
    to_text: tuple[str, ...] = ()
    except_zones: tuple[str, ...] = ()
    policy: ForwardPolicy = ForwardPolicy.RANDOM
    max_fails: int = 2
    health_check: float = 0.5
    health_check_rd: bool = True
    health_check_domain: str = "."
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = 10.0
    read_timeout: float = 2.0
    max_concurrent: int = 0  # 0 = no limit (CoreDNS's default)
    tls: TlsFiles | None = None  # None: `tls://` upstreams use the system CAs
    tls_servername: str | None = None
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class LoopConfig:
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class FileConfig:
    """`file DBFILE [ZONES...]` (and `--zone-file`): zone files served authoritatively."""

    paths: tuple[Path, ...] = ()
    zones: tuple[str, ...] = ()  # () = the zones the files declare
    reload: float = 60.0  # `reload DURATION`: how often to check the files; 0 = never
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class BufsizeConfig:
    """`bufsize [SIZE]`: EDNS UDP payload sizes above SIZE (512..4096, CoreDNS's default
    1232) are lowered to it before the query goes on."""

    size: int = 1232
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class AnyConfig:
    """`any`: ANY queries get a single HINFO record (RFC 8482)."""

    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class HostsConfig:
    """`hosts [FILE [ZONES...]] { INLINE; ttl; no_reverse; reload; fallthrough [ZONES...];
    fallthrough_unsupported }`: A, AAAA and PTR records from /etc/hosts-style lines."""

    path: Path = Path("/etc/hosts")
    zones: tuple[str, ...] = (".",)
    inline: tuple[str, ...] = ()  # the hosts lines written in the Corefile block
    ttl: int = 3600
    reverse: bool = True  # False with `no_reverse`
    reload: float = 5.0  # how often the file is checked; 0 = never
    # None: no fallthrough; (): fall through for every zone; else only for these zones.
    fallthrough: tuple[str, ...] | None = None
    fallthrough_unsupported: bool = False
    origin: Origin = FLAGS


class RewriteMatch(enum.StrEnum):
    """How a `rewrite` rule matches the question name (lower-case, absolute)."""

    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    SUBSTRING = "substring"
    REGEX = "regex"


@dataclass(frozen=True, slots=True)
class NameMatch:
    kind: RewriteMatch
    pattern: str  # a name (lower-case, with its trailing dot, as CoreDNS) or a regex


@dataclass(frozen=True, slots=True)
class AnswerRule:
    """`answer name FROM TO` (owner names) or `answer value FROM TO` (the names records
    point to): regex FROM, replacement TO with {N} groups."""

    target: str  # "name" or "value"
    pattern: str
    replacement: str


@dataclass(frozen=True, slots=True)
class RewriteName:
    """`name [MATCH] FROM TO [answer ...]`: the question name is replaced, and names in
    the reply mapped back (`auto`: the reverse of this rewrite; `answers`: explicit)."""

    match: NameMatch
    replacement: str  # a name, or for regex a template with {N} groups
    auto: bool = False
    answers: tuple[AnswerRule, ...] = ()


@dataclass(frozen=True, slots=True)
class RewriteType:
    """`type FROM TO`: the question type."""

    from_type: int
    to_type: int


@dataclass(frozen=True, slots=True)
class RewriteTtl:
    """`ttl [MATCH] NAME SECONDS|MIN-MAX`: TTLs of the reply clamped into the range."""

    match: NameMatch
    minimum: int
    maximum: int


@dataclass(frozen=True, slots=True)
class RewriteRcode:
    """`rcode [MATCH] NAME FROM TO`: the reply's rcode FROM becomes TO."""

    match: NameMatch
    from_rcode: int
    to_rcode: int


@dataclass(frozen=True, slots=True)
class RewriteEdns0:
    """`edns0 local|nsid|subnet set|append|replace|unset ... [revert]`: an EDNS option of
    the query (seen by the plugins that relay it, `forward`)."""

    kind: str  # local, nsid, subnet
    action: str  # set, append, replace, unset
    code: int = 0  # the option code (local; nsid 3, subnet 8)
    data: bytes = b""  # local: fixed data
    variable: str | None = None  # local: {qname}, {qtype}, {client_ip}, ...
    v4_bits: int = 0  # subnet: source prefix lengths
    v6_bits: int = 0
    revert: bool = False  # the reply's OPT gets the option back as it was


RewriteAction = RewriteName | RewriteType | RewriteTtl | RewriteRcode | RewriteEdns0


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """One `rewrite` line; `stop` (the default) ends the rules when it applies."""

    action: RewriteAction
    stop: bool = True
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class RewriteConfig:
    rules: tuple[RewriteRule, ...] = ()
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class Template:
    """One `template CLASS TYPE [ZONES...] { ... }`. Record templates are kept as written
    (Go text/template syntax, the subset `kdns.config.gotemplate` reads)."""

    qclass: str  # IN or ANY
    qtype: int  # 255 = ANY
    zones: tuple[str, ...] = (".",)
    regexes: tuple[str, ...] = (".*",)
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    rcode: int = 0
    # None: no fallthrough (a miss is SERVFAIL); (): every zone; else only these zones.
    fallthrough: tuple[str, ...] | None = None
    origin: Origin = FLAGS


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    templates: tuple[Template, ...] = ()
    origin: Origin = FLAGS


PluginConfig = (
    AutopathConfig
    | BufsizeConfig
    | AnyConfig
    | HostsConfig
    | RewriteConfig
    | TemplateConfig
    | ErrorsConfig
    | HealthConfig
    | ReadyConfig
    | PrometheusConfig
    | ReloadConfig
    | LoadbalanceConfig
    | LogConfig
    | CacheConfig
    | KubernetesConfig
    | FileConfig
    | LoopConfig
    | ForwardConfig
)

# Execution order, as CoreDNS's plugin.cfg fixes it (only the plugins kdns implements).
# Plugins that take no part in answering queries (reload, health, ready, prometheus) are
# listed for `kdns corefile`'s output and for `coredns_plugin_enabled`.
PLUGIN_ORDER: tuple[str, ...] = (
    "reload",
    "bufsize",
    "bind",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "any",
    "loadbalance",
    "rewrite",
    "autopath",
    "cache",
    "template",
    "hosts",
    "kubernetes",
    "file",
    "loop",
    "forward",
)


# ---- server blocks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerBlock:
    """One server block: the zones it serves on one port, where it listens, its plugins."""

    zones: tuple[str, ...]
    port: int
    bind: tuple[str, ...] = ()  # () = every address ("" in HostPort terms)
    plugins: dict[str, PluginConfig] = field(default_factory=dict)
    origin: Origin = FLAGS

    def chain_names(self) -> list[str]:
        """The plugins of this block in execution order."""
        return [
            name for name in PLUGIN_ORDER if name in self.plugins or (name == "bind" and self.bind)
        ]

    def listen(self) -> tuple[HostPort, ...]:
        return tuple(HostPort(host, self.port) for host in (self.bind or ("",)))


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that serving is built from."""

    blocks: tuple[ServerBlock, ...]
    corefile: Path | None = None  # where it was read from (for reload); None = flags
    # SHA-512 of the Corefile as parsed: its tokens with imports and environment values
    # (what CoreDNS's reload compares; a comment alone does not change it).
    digest: str = ""

    def plugin(self, name: str) -> list[tuple[ServerBlock, PluginConfig]]:
        return [(b, b.plugins[name]) for b in self.blocks if name in b.plugins]


__all__ = [
    "COMBINED_LOG_FORMAT",
    "COMMON_LOG_FORMAT",
    "FLAGS",
    "PLUGIN_ORDER",
    "AnswerRule",
    "AnyConfig",
    "AutopathConfig",
    "BufsizeConfig",
    "CacheConfig",
    "Config",
    "Consolidate",
    "ErrorsConfig",
    "FileConfig",
    "ForwardConfig",
    "ForwardPolicy",
    "HealthConfig",
    "HostsConfig",
    "KubernetesConfig",
    "LoadbalanceConfig",
    "LogClass",
    "LogConfig",
    "LogRule",
    "LoopConfig",
    "NameMatch",
    "Origin",
    "PluginConfig",
    "PrometheusConfig",
    "ReadyConfig",
    "ReloadConfig",
    "RewriteAction",
    "RewriteConfig",
    "RewriteEdns0",
    "RewriteMatch",
    "RewriteName",
    "RewriteRcode",
    "RewriteRule",
    "RewriteTtl",
    "RewriteType",
    "ServerBlock",
    "StaleRefresh",
    "Template",
    "TemplateConfig",
    "TlsFiles",
    "Upstream",
]
