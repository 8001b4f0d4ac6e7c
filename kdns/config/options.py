"""Every `kdns serve` option, defined once: flag, Settings field, value parser, help, the
environment twin, and the Corefile directive that replaces it.

The command line parser (`kdns.cli`), `Settings` and the README's flag table are derived
from `OPTIONS`; defaults come from `Settings`, so no default is written twice. Values are
parsed here with one-line errors that name where the value came from: the flag, or the
environment variable when it came from there (`KDNS_TTL=abc`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kdns.config.selector import Selector, SelectorError, parse_selector
from kdns.config.settings import HostPort, PodMode, Settings

ENV_PREFIX = "KDNS_"


class UsageError(Exception):
    """A bad flag or value: the message is one line saying which and how to fix it."""


# ---- value parsers: (text, where) -> value ------------------------------------------------

Parse = Callable[[str, str], Any]


def parse_hostport(text: str, where: str, *, default_host: str = "") -> HostPort:
    """HOST:PORT, :PORT (all addresses), [IPv6]:PORT."""
    text = text.strip()
    host: str
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise UsageError(f"{where}: {text!r} is not [IPV6]:PORT; write e.g. [::1]:53")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise UsageError(f"{where}: {text!r}: put IPv6 addresses in brackets, e.g. [::1]:53")
    else:
        raise UsageError(f"{where}: {text!r} has no port; write HOST:PORT, e.g. 127.0.0.1:53")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{where}: port {port_text!r} must be a number 0-65535")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise UsageError(
                    f"{where}: {host!r} is not an IP address; give a literal address such "
                    "as 127.0.0.1 or [::1]"
                ) from None
            host = "127.0.0.1"
    return HostPort(host or default_host, int(port_text))


def _dns_addr(text: str, where: str) -> HostPort:
    return parse_hostport(text, where, default_host="0.0.0.0")


def _http_addr(text: str, where: str) -> HostPort:
    return parse_hostport(text, where)


def _debug_addr(text: str, where: str) -> HostPort | None:
    if text.strip().lower() == "none":
        return None
    return parse_hostport(text, where)


def _upstream(text: str, where: str) -> HostPort:
    text = text.strip()
    if text.startswith("[") or text.count(":") == 1:
        return parse_hostport(text, where)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(
            f"{where}: {text!r} is not an IP address; write none, HOST or HOST:PORT "
            "(e.g. 127.0.0.1:5353)"
        ) from None
    return HostPort(text, 53)


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def parse_zone(text: str, where: str) -> str:
    """A domain name of DNS-1123 labels (what a cluster domain may be)."""
    zone = text.strip().rstrip(".").lower()
    labels = zone.split(".")
    if not zone or len(zone) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UsageError(
            f"{where}: {text!r} is not a domain name of DNS labels (a-z, 0-9 and '-', "
            "1-63 characters, dot-separated); write e.g. cluster.local"
        )
    return zone


def int_in(lo: int, hi: int) -> Parse:
    def parse(text: str, where: str) -> int:
        if not text.strip().lstrip("-").isdigit() or not lo <= int(text) <= hi:
            raise UsageError(f"{where}: {text!r} must be a whole number {lo}..{hi}")
        return int(text)

    return parse


def _seconds(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise UsageError(f"{where}: {text!r} must be seconds between 0 and 3600")
    return value


def _cidr(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise UsageError(
            f"{where}: {text!r} is not a CIDR ({exc}); write e.g. 10.96.0.0/16"
        ) from None


def existing_path(text: str, where: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise UsageError(f"{where}: {text} does not exist; give an existing file or folder")
    return path


def _pods(text: str, where: str) -> PodMode:
    try:
        return PodMode(text.strip().lower())
    except ValueError:
        raise UsageError(
            f"{where}: {text!r} is not a mode; use disabled, insecure or verified"
        ) from None


def _namespace(text: str, where: str) -> str:
    name = text.strip().lower()
    if not _LABEL.match(name):
        raise UsageError(
            f"{where}: {text!r} is not a namespace name (a DNS label); give one namespace "
            "per flag, e.g. --namespaces default --namespaces kube-system"
        )
    return name


def _selector(text: str, where: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise UsageError(f"{where}: {text!r}: {exc}") from None


def _bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise UsageError(f"{where}: {text!r} is not true or false")
    return value == "true"


def _policy(text: str, where: str) -> str:
    policy = text.strip().lower()
    if policy not in ("random", "round_robin", "sequential"):
        raise UsageError(
            f"{where}: {text!r} is not a policy; use random, round_robin or sequential"
        )
    return policy


def _log_level(text: str, where: str) -> str:
    level = text.strip().lower()
    if level not in ("debug", "info", "warning", "error"):
        raise UsageError(f"{where}: {text!r} is not a level; use debug, info, warning or error")
    return level


# ---- the table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    flag: str
    field: str  # the Settings field it sets
    metavar: str
    help: str
    parse: Parse
    repeat: bool = False  # repeatable; a comma-separated list in the environment
    # What a Corefile says instead; None = also valid beside --corefile.
    directive: str | None = None
    show_default: str | None = None  # overrides the default shown (e.g. for None)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def default_text(self) -> str:
        if self.show_default is not None:
            return self.show_default
        value = getattr(Settings(), self.field)
        if isinstance(value, tuple):
            return ",".join(str(v) for v in value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, HostPort) and not value.host:
            return f":{value.port}"
        return "" if value is None else str(value)

    def help_text(self) -> str:
        default = self.default_text()
        tail = f" (default {default})" if default else ""
        return f"{self.help}{tail} [env {self.env}]"


OPTIONS: tuple[Option, ...] = (
    Option(
        "--corefile",
        "corefile",
        "PATH",
        "serve what this CoreDNS Corefile says (server blocks, zones, ports, plugins); "
        "reloaded on SIGHUP/SIGUSR1 and, with `reload`, when it changes",
        existing_path,
    ),
    Option(
        "--dns-addr",
        "dns_addr",
        "HOST:PORT",
        "UDP and TCP listener, IPv6 as [::1]:53",
        _dns_addr,
        directive="a server block key .:PORT, and bind HOST",
        show_default="0.0.0.0:53",
    ),
    Option(
        "--dns-port",
        "dns_addr",
        "N",
        "with --corefile: the port of server blocks that name none (CoreDNS's -dns.port)",
        int_in(0, 65535),
        show_default="53",
    ),
    Option(
        "--zone",
        "zone",
        "ZONE",
        "cluster domain; kdns is also authoritative for in-addr.arpa and ip6.arpa",
        parse_zone,
        directive="kubernetes ZONE in-addr.arpa ip6.arpa",
    ),
    Option(
        "--ttl",
        "ttl",
        "N",
        "TTL of cluster records in seconds, 0..3600 (CoreDNS's default; kubeadm sets 30)",
        int_in(0, 3600),
        directive="kubernetes { ttl N }",
    ),
    Option(
        "--pods",
        "pods",
        "MODE",
        "pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure (any IP in an existing "
        "namespace) or verified (only IPs of running pods)",
        _pods,
        directive="kubernetes { pods MODE }",
    ),
    Option(
        "--namespaces",
        "namespaces",
        "NAMESPACE",
        "serve only these namespaces; names elsewhere are NXDOMAIN; repeatable",
        _namespace,
        repeat=True,
        directive="kubernetes { namespaces NAMESPACE... }",
        show_default="all",
    ),
    Option(
        "--namespace-labels",
        "namespace_labels",
        "SELECTOR",
        "serve only namespaces whose labels match this label selector, e.g. team=a",
        _selector,
        directive="kubernetes { namespace_labels SELECTOR }",
    ),
    Option(
        "--labels",
        "labels",
        "SELECTOR",
        "serve only Services, EndpointSlices and Pods whose labels match this label "
        "selector, e.g. 'environment in (staging, qa)'",
        _selector,
        directive="kubernetes { labels SELECTOR }",
    ),
    Option(
        "--endpoint-pod-names",
        "endpoint_pod_names",
        "true|false",
        "name endpoints without a hostname by their pod, not by their dashed address",
        _bool,
        directive="kubernetes { endpoint_pod_names }",
        show_default="false",
    ),
    Option(
        "--autopath",
        "autopath",
        "true|false",
        "complete a pod's search path server-side: one query instead of up to five for "
        "each name (needs --pods verified)",
        _bool,
        directive="autopath @kubernetes",
        show_default="false",
    ),
    Option(
        "--manifests",
        "manifests",
        "PATH",
        "YAML/JSON file or folder of Kubernetes objects to serve when there is no cluster; "
        "repeatable; files are watched and reloaded",
        existing_path,
        repeat=True,
    ),
    Option(
        "--kubeconfig",
        "kubeconfig",
        "FILE",
        "kubeconfig of the Kubernetes API to list and watch (in a pod, the service account "
        "is used when neither this nor --manifests is given)",
        existing_path,
    ),
    Option(
        "--upstream",
        "upstreams",
        "none|HOST[:PORT]",
        "where names outside the served zones go: none (answer REFUSED) or HOST[:PORT]; repeatable",
        _upstream,
        repeat=True,
        directive="forward . UPSTREAM...",
        show_default="the nameservers of /etc/resolv.conf",
    ),
    Option(
        "--health-addr",
        "health_addr",
        "HOST:PORT",
        "HTTP /health (200 while alive)",
        _http_addr,
        directive="health HOST:PORT",
    ),
    Option(
        "--ready-addr",
        "ready_addr",
        "HOST:PORT",
        "HTTP /ready (200 once data is loaded, 503 before and in lameduck)",
        _http_addr,
        directive="ready HOST:PORT",
    ),
    Option(
        "--metrics-addr",
        "metrics_addr",
        "HOST:PORT",
        "HTTP /metrics, Prometheus text with CoreDNS's metric names",
        _http_addr,
        directive="prometheus HOST:PORT",
    ),
    Option(
        "--debug-addr",
        "debug_addr",
        "none|HOST:PORT",
        "HTTP /debug/explain for `kdns explain --server`: why a name answers as it does "
        "(cluster data: keep it on loopback); none = off; an address in use is skipped "
        "with a warning",
        _debug_addr,
    ),
    Option(
        "--lameduck",
        "lameduck_seconds",
        "SECONDS",
        "seconds to keep answering after SIGTERM while /ready is 503",
        _seconds,
        directive="health { lameduck DURATION }",
    ),
    Option(
        "--zone-file",
        "zone_files",
        "PATH",
        "RFC 1035 zone file (or folder of them) served beside the cluster zone; "
        "repeatable; reloaded on change",
        existing_path,
        repeat=True,
        directive="file DBFILE [ZONES]",
    ),
    Option(
        "--hosts",
        "hosts_file",
        "FILE",
        "/etc/hosts-style file (ADDRESS NAME...) answered before the cluster zone, for A, "
        "AAAA and PTR; other names go on; reloaded on change",
        existing_path,
        directive="hosts FILE { fallthrough }",
    ),
    Option(
        "--service-cidr",
        "service_cidrs",
        "CIDR",
        "service CIDR the manifests source allocates ClusterIPs from; repeatable for "
        "dual-stack (kind's range)",
        _cidr,
        repeat=True,
    ),
    Option(
        "--pod-cidr",
        "pod_cidrs",
        "CIDR",
        "pod CIDR the manifests source allocates pod IPs from; repeatable (kind's range)",
        _cidr,
        repeat=True,
    ),
    Option(
        "--workers",
        "workers",
        "N",
        "DNS worker processes sharing the port with SO_REUSEPORT",
        int_in(1, 64),
    ),
    Option(
        "--max-concurrent",
        "max_concurrent",
        "N",
        "upstream queries in flight at most; more get REFUSED",
        int_in(1, 100_000),
        directive="forward . UPSTREAM { max_concurrent N }",
    ),
    Option(
        "--upstream-policy",
        "upstream_policy",
        "POLICY",
        "the order upstreams are tried in: random, round_robin or sequential (the first "
        "that is up)",
        _policy,
        directive="forward . UPSTREAM { policy POLICY }",
    ),
    Option(
        "--serve-stale",
        "serve_stale_seconds",
        "SECONDS",
        "answer names from cache entries up to SECONDS after they expired while no "
        "upstream answers (TTL 0, RFC 8767); 0 = off",
        _seconds,
        directive="cache { serve_stale DURATION }",
    ),
    Option(
        "--rrl-responses-per-second",
        "rrl_responses_per_second",
        "N",
        "response-rate limit per client /24 or /56 over UDP; 0 = off",
        int_in(0, 1_000_000),
    ),
    Option(
        "--rrl-slip",
        "rrl_slip",
        "N",
        "with RRL: every Nth limited reply is sent truncated so clients retry over TCP; "
        "0 drops them",
        int_in(0, 10),
    ),
    Option(
        "--tcp-idle-timeout",
        "tcp_idle_seconds",
        "SECONDS",
        "seconds before an idle TCP connection is closed (RFC 7766)",
        _seconds,
    ),
    Option(
        "--tcp-max-connections",
        "tcp_max_connections",
        "N",
        "open TCP connections at most; the longest-idle one makes room for a new client",
        int_in(1, 1_000_000),
    ),
    Option(
        "--log-level",
        "log_level",
        "LEVEL",
        "debug, info, warning or error",
        _log_level,
    ),
)

BY_FLAG: dict[str, Option] = {o.flag: o for o in OPTIONS}
BY_ENV: dict[str, Option] = {o.env: o for o in OPTIONS}
_SETTINGS_FIELDS = {f.name for f in fields(Settings)}
assert all(o.field in _SETTINGS_FIELDS for o in OPTIONS), "an option sets no Settings field"


def env_values(environ: Mapping[str, str]) -> dict[str, list[str]]:
    """The `KDNS_*` variables that are twins of real flags, as flag -> values. Other
    `KDNS_*` names (the kubelet's service links for a Service named kdns, e.g.
    `KDNS_SERVICE_HOST`) are not ours and are left alone."""
    found: dict[str, list[str]] = {}
    for key, value in environ.items():
        option = BY_ENV.get(key)
        if option is None:
            continue
        found[option.flag] = [v for v in value.split(",") if v] if option.repeat else [value]
    return found


def flag_table() -> str:
    """The README's flag table, derived from OPTIONS (kept equal to `kdns serve --help`)."""
    rows = ["| flag | environment | default | meaning | with --corefile |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        default = f"`{o.default_text()}`" if o.default_text() else ""
        instead = f"`{o.directive}`" if o.directive else "allowed"
        cells = (f"`{o.flag} {o.metavar}`", f"`{o.env}`", default, o.help, instead)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def settings_from_values(
    values: Mapping[str, Sequence[str]], *, where: Mapping[str, str], in_cluster_env: bool
) -> Settings:
    """Build Settings from flag -> raw values (`where` names each value's origin)."""
    kwargs: dict[str, Any] = {}
    corefile = "--corefile" in values
    for flag, raw in values.items():
        option = BY_FLAG[flag]
        origin = where.get(flag, flag)
        if corefile and option.directive is not None:
            raise UsageError(
                f"{origin} cannot be combined with --corefile; in the Corefile write "
                f"`{option.directive}` instead"
            )
        if not corefile and flag == "--dns-port":
            raise UsageError(f"{origin} goes with --corefile; without it use --dns-addr HOST:PORT")
        if option.repeat:
            kwargs[option.field] = _repeated(option, raw, origin)
        else:
            value = option.parse(raw[-1], origin)
            if flag == "--dns-port":
                value = HostPort(Settings().dns_addr.host, value)
            kwargs[option.field] = value
    manifests = kwargs.get("manifests", ())
    kubeconfig = kwargs.get("kubeconfig")
    if manifests and kubeconfig:
        raise UsageError("--manifests and --kubeconfig are two data sources; give only one")
    if not manifests and kubeconfig is None and not corefile and not in_cluster_env:
        raise UsageError(
            "no data source: give --manifests PATH (a folder of YAML/JSON objects) or "
            "--kubeconfig FILE, or run inside a cluster"
        )
    kwargs["in_cluster"] = not manifests and kubeconfig is None and in_cluster_env
    if kwargs.get("autopath") and kwargs.get("pods", Settings().pods) is not PodMode.VERIFIED:
        raise UsageError(
            f"{where.get('--autopath', '--autopath')} needs --pods verified: autopath finds "
            "the asking pod by its address"
        )
    if kwargs.get("namespaces") and kwargs.get("namespace_labels") is not None:
        raise UsageError(
            "--namespaces and --namespace-labels cannot both be given (as in CoreDNS); keep "
            "one, e.g. --namespace-labels 'kubernetes.io/metadata.name in (a, b)'"
        )
    return Settings(**kwargs)


def _repeated(option: Option, raw: Sequence[str], origin: str) -> tuple[Any, ...]:
    items = [r for r in raw if r.strip()]
    if option.flag == "--upstream" and any(r.strip().lower() == "none" for r in items):
        if len(items) > 1:
            raise UsageError(
                f"{origin}: none cannot be combined with servers; give one or the other"
            )
        return ()
    values: list[Any] = []
    for text in items:
        value = option.parse(text, origin)
        if value in values:
            raise UsageError(f"{origin}: {text} is given twice; give each value once")
        values.append(value)
    return tuple(values)


__all__ = [
    "OPTIONS",
    "Option",
    "UsageError",
    "env_values",
    "existing_path",
    "flag_table",
    "int_in",
    "parse_hostport",
    "parse_zone",
    "settings_from_values",
]
