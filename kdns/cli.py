"""Command line: `kdns serve` and friends. Flags (each with a KDNS_* environment twin) become
one `Settings`; errors are one line naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kdns import __version__
from kdns.config.settings import HostPort, PodMode, Settings

PROG = "kdns"


class UsageError(Exception):
    """A bad flag or value: the message is one line saying which and how to fix it."""


def parse_hostport(text: str, *, flag: str, default_host: str = "") -> HostPort:
    """HOST:PORT, :PORT (all addresses), [IPv6]:PORT."""
    text = text.strip()
    host: str
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise UsageError(f"{flag}: {text!r} is not [IPV6]:PORT; write e.g. [::1]:53")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise UsageError(f"{flag}: {text!r}: put IPv6 addresses in brackets, e.g. [::1]:53")
    else:
        raise UsageError(f"{flag}: {text!r} has no port; write HOST:PORT, e.g. 127.0.0.1:53")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{flag}: port {port_text!r} must be a number 0-65535")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise UsageError(
                    f"{flag}: {host!r} is not an IP address; give a literal address such "
                    "as 127.0.0.1 or [::1]"
                ) from None
            host = "127.0.0.1"
    return HostPort(host or default_host, int(port_text))


def _upstream(text: str) -> HostPort:
    text = text.strip()
    if text.startswith("[") or text.count(":") == 1:
        return parse_hostport(text, flag="--upstream")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(
            f"--upstream: {text!r} is not an IP address; write none, HOST or HOST:PORT "
            "(e.g. 127.0.0.1:5353)"
        ) from None
    return HostPort(text, 53)


def _zone(text: str) -> str:
    zone = text.strip().rstrip(".").lower()
    labels = zone.split(".")
    if not zone or any(not label or len(label) > 63 for label in labels) or len(zone) > 253:
        raise UsageError(f"--zone: {text!r} is not a domain name; write e.g. cluster.local")
    return zone


def _int_in(flag: str, lo: int, hi: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not text.strip().lstrip("-").isdigit() or not lo <= int(text) <= hi:
            raise UsageError(f"{flag}: {text!r} must be a whole number {lo}..{hi}")
        return int(text)

    return convert


def _seconds(flag: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 3600:
            raise UsageError(f"{flag}: {text!r} must be seconds between 0 and 3600")
        return value

    return convert


def _cidr(flag: str) -> Callable[[str], ipaddress.IPv4Network | ipaddress.IPv6Network]:
    def convert(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            raise UsageError(
                f"{flag}: {text!r} is not a CIDR ({exc}); write e.g. 10.96.0.0/16"
            ) from None

    return convert


def _existing_path(flag: str) -> Callable[[str], Path]:
    def convert(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{flag}: {text} does not exist; give an existing file or folder")
        return path

    return convert


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="kdns: cluster DNS service discovery for Kubernetes (a CoreDNS replacement).",
    )
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser(
        "serve",
        help="answer DNS for the cluster zone",
        description=(
            "Serve the cluster zone over UDP and TCP from a folder of manifests or a "
            "Kubernetes API. Every flag can also be set with the environment variable "
            "shown (repeatable flags take a comma-separated list there)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def flag(name: str, help_text: str, **kwargs: Any) -> None:
        env = "KDNS_" + name.lstrip("-").replace("-", "_").upper()
        serve.add_argument(name, help=f"{help_text} [env {env}]", **kwargs)

    flag(
        "--dns-addr",
        "UDP and TCP listener HOST:PORT, IPv6 as [::1]:53 (default 0.0.0.0:53)",
        metavar="HOST:PORT",
        default="0.0.0.0:53",
    )
    flag(
        "--zone",
        "cluster domain; kdns is also authoritative for in-addr.arpa and ip6.arpa "
        "for the cluster's addresses (default cluster.local)",
        default="cluster.local",
    )
    flag("--ttl", "TTL of cluster records in seconds, 0..3600 (default 5, CoreDNS's)", default="5")
    flag(
        "--pods",
        "pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure (any IP in an "
        "existing namespace) or verified (only IPs of running pods) (default insecure)",
        default="insecure",
    )
    flag(
        "--manifests",
        "YAML/JSON file or folder of Kubernetes objects to serve when there "
        "is no cluster; repeatable; files are watched and reloaded",
        action="append",
        metavar="PATH",
    )
    flag(
        "--kubeconfig",
        "kubeconfig of the Kubernetes API to list and watch (in a pod, the "
        "service account is used when neither this nor --manifests is given)",
        metavar="FILE",
    )
    flag(
        "--upstream",
        "where names outside the served zones go: none (answer REFUSED) or "
        "HOST[:PORT]; repeatable (default: the nameservers of /etc/resolv.conf)",
        action="append",
        metavar="none|HOST[:PORT]",
    )
    flag(
        "--health-addr",
        "HTTP /health (200 while alive) (default :8080)",
        default=":8080",
        metavar="HOST:PORT",
    )
    flag(
        "--ready-addr",
        "HTTP /ready (200 once data is loaded, 503 before and in lameduck) (default :8181)",
        default=":8181",
        metavar="HOST:PORT",
    )
    flag(
        "--metrics-addr",
        "HTTP /metrics, Prometheus text with CoreDNS's metric names (default :9153)",
        default=":9153",
        metavar="HOST:PORT",
    )
    flag(
        "--lameduck",
        "seconds to keep answering after SIGTERM while /ready is 503 (default 5)",
        default="5",
        metavar="SECONDS",
    )
    flag(
        "--zone-file",
        "RFC 1035 zone file (or folder of them) served beside the cluster "
        "zone; repeatable; reloaded on change",
        action="append",
        metavar="PATH",
    )
    flag(
        "--service-cidr",
        "service CIDR the manifests source allocates ClusterIPs from; "
        "repeatable for dual-stack (default 10.96.0.0/16, kind's)",
        action="append",
        metavar="CIDR",
    )
    flag(
        "--pod-cidr",
        "pod CIDR the manifests source allocates pod IPs from; repeatable "
        "(default 10.244.0.0/16, kind's)",
        action="append",
        metavar="CIDR",
    )
    flag(
        "--workers",
        "DNS worker processes sharing the port with SO_REUSEPORT (default 1)",
        default="1",
        metavar="N",
    )
    flag(
        "--max-concurrent",
        "upstream queries in flight at most; more get REFUSED (default 1000)",
        default="1000",
        metavar="N",
    )
    flag(
        "--rrl-responses-per-second",
        "response-rate limit per client /24 or /56 over UDP; 0 = off (default 0)",
        default="0",
        metavar="N",
    )
    flag(
        "--rrl-slip",
        "with RRL: every Nth limited reply is sent truncated so clients retry "
        "over TCP; 0 drops them (default 2)",
        default="2",
        metavar="N",
    )
    flag(
        "--tcp-idle-timeout",
        "seconds before an idle TCP connection is closed (RFC 7766) (default 10)",
        default="10",
        metavar="SECONDS",
    )
    flag(
        "--tcp-max-connections",
        "open TCP connections at most; the longest-idle one makes "
        "room for a new client (default 1000)",
        default="1000",
        metavar="N",
    )
    flag("--log-level", "debug, info, warning or error (default info)", default="info")

    manifests = sub.add_parser(
        "manifests",
        help="show what a folder of manifests serves (services and ready endpoints)",
        description="Load manifests as `kdns serve --manifests` would and print the "
        "Services and their endpoints, like `kubectl get endpoints`.",
    )
    manifests.add_argument("paths", nargs="+", metavar="PATH")
    manifests.add_argument("--service-cidr", action="append", metavar="CIDR")
    manifests.add_argument("--pod-cidr", action="append", metavar="CIDR")
    return parser


def _env_defaults(argv: Sequence[str]) -> list[str]:
    """Prepend flags from KDNS_* variables for `serve`, so the command line wins."""
    if not argv or argv[0] != "serve":
        return list(argv)
    extra: list[str] = []
    repeatable = {"manifests", "upstream", "zone_file", "service_cidr", "pod_cidr"}
    for key, value in sorted(os.environ.items()):
        if not key.startswith("KDNS_") or key == "KDNS_E2E":
            continue
        name = key[5:].lower()
        flag = "--" + name.replace("_", "-")
        given = any(a == flag or a.startswith(flag + "=") for a in argv)
        if given:
            continue
        items = [v for v in value.split(",") if v] if name in repeatable else [value]
        for item in items:
            extra.append(f"{flag}={item}")
    return ["serve", *extra, *argv[1:]]


def settings_from_args(ns: argparse.Namespace) -> Settings:
    ttl = _int_in("--ttl", 0, 3600)(ns.ttl)
    try:
        pods = PodMode(ns.pods.strip().lower())
    except ValueError:
        raise UsageError(
            f"--pods: {ns.pods!r} is not a mode; use disabled, insecure or verified"
        ) from None
    upstreams: tuple[HostPort, ...] | None = None
    if ns.upstream:
        values = [u for u in ns.upstream if u.strip()]
        if any(u.strip().lower() == "none" for u in values):
            if len(values) > 1:
                raise UsageError(
                    "--upstream: none cannot be combined with servers; give one or the other"
                )
            upstreams = ()
        else:
            upstreams = tuple(_upstream(u) for u in values)
    manifests = tuple(_existing_path("--manifests")(p) for p in ns.manifests or ())
    zone_files = tuple(_existing_path("--zone-file")(p) for p in ns.zone_file or ())
    kubeconfig = _existing_path("--kubeconfig")(ns.kubeconfig) if ns.kubeconfig else None
    in_cluster = False
    if manifests and kubeconfig:
        raise UsageError("--manifests and --kubeconfig are two data sources; give only one")
    if not manifests and kubeconfig is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            in_cluster = True
        else:
            raise UsageError(
                "no data source: give --manifests PATH (a folder of YAML/JSON objects) or "
                "--kubeconfig FILE, or run inside a cluster"
            )
    settings = Settings(
        dns_addr=parse_hostport(ns.dns_addr, flag="--dns-addr", default_host="0.0.0.0"),
        zone=_zone(ns.zone),
        ttl=ttl,
        pods=pods,
        manifests=manifests,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        upstreams=upstreams,
        health_addr=parse_hostport(ns.health_addr, flag="--health-addr"),
        ready_addr=parse_hostport(ns.ready_addr, flag="--ready-addr"),
        metrics_addr=parse_hostport(ns.metrics_addr, flag="--metrics-addr"),
        lameduck_seconds=_seconds("--lameduck")(ns.lameduck),
        zone_files=zone_files,
        workers=_int_in("--workers", 1, 64)(ns.workers),
        max_concurrent=_int_in("--max-concurrent", 1, 100_000)(ns.max_concurrent),
        log_level=_log_level(ns.log_level),
        rrl_responses_per_second=_int_in("--rrl-responses-per-second", 0, 1_000_000)(
            ns.rrl_responses_per_second
        ),
        rrl_slip=_int_in("--rrl-slip", 0, 10)(ns.rrl_slip),
        tcp_idle_seconds=_seconds("--tcp-idle-timeout")(ns.tcp_idle_timeout),
        tcp_max_connections=_int_in("--tcp-max-connections", 1, 1_000_000)(ns.tcp_max_connections),
        **_cidrs(ns),
    )
    return settings


def _cidrs(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ns.service_cidr:
        out["service_cidrs"] = tuple(_cidr("--service-cidr")(c) for c in ns.service_cidr)
    if ns.pod_cidr:
        out["pod_cidrs"] = tuple(_cidr("--pod-cidr")(c) for c in ns.pod_cidr)
    return out


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level: {text!r} is not a level; use debug, info, warning or error")
    return level


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        ns = parser.parse_args(_env_defaults(args))
        if ns.command is None:
            parser.print_help()
            return 2
        if ns.command == "manifests":
            return _run_manifests_command(ns)
        settings = settings_from_args(ns)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from kdns.app import run  # late import: `kdns --help` stays fast

    code: int = run(settings)
    return code


def _run_manifests_command(ns: argparse.Namespace) -> int:
    from kdns.sources.manifests import ManifestError, load_manifests, render_endpoints

    defaults = Settings()
    try:
        paths = [_existing_path("PATH")(p) for p in ns.paths]
        cidrs = _cidrs(ns)
        data = load_manifests(
            paths,
            service_cidrs=cidrs.get("service_cidrs", defaults.service_cidrs),
            pod_cidrs=cidrs.get("pod_cidrs", defaults.pod_cidrs),
        )
    except (UsageError, ManifestError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(render_endpoints(data))
    return 0
