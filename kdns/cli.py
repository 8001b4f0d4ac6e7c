"""Command line: `kdns serve`, `kdns corefile`, `kdns manifests`.

`serve`'s flags come from `kdns.config.options.OPTIONS` (one definition per option: its
parser, help, environment twin and Corefile equivalent). Errors are one line naming the flag
(or the environment variable) and the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import NoReturn

from kdns import __version__
from kdns.config.options import (
    OPTIONS,
    UsageError,
    env_values,
    existing_path,
    int_in,
    settings_from_values,
)
from kdns.config.settings import Settings

PROG = "kdns"

SERVE_DESCRIPTION = (
    "Serve DNS for the cluster over UDP and TCP: from a CoreDNS Corefile (--corefile), or "
    "from the flags below, which describe one server block. The cluster data comes from a "
    "folder of manifests or a Kubernetes API. Every flag can also be set with the "
    "environment variable shown (repeatable flags take a comma-separated list there); the "
    "command line wins."
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps help text at spaces only, so names such as in-addr.arpa stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="kdns: cluster DNS service discovery for Kubernetes (a CoreDNS replacement).",
    )
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser(
        "serve",
        help="answer DNS for the cluster zone",
        description=SERVE_DESCRIPTION,
        formatter_class=_Formatter,
    )
    for option in OPTIONS:
        serve.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            help=option.help_text(),
            action="append",
        )

    corefile = sub.add_parser(
        "corefile",
        help="check a Corefile without serving it",
        description="Read a CoreDNS Corefile as `kdns serve --corefile` would and print each "
        "server block: its zones, where it listens and its plugin chain in execution order. "
        "Exit 1 with one line per problem (PATH:LINE: what is wrong, and what kdns supports "
        "instead) when kdns cannot serve it as written.",
    )
    corefile.add_argument("path", metavar="PATH", help="the Corefile")
    corefile.add_argument(
        "--dns-port",
        metavar="N",
        default="53",
        help="the port of server blocks that name none (default 53)",
    )

    manifests = sub.add_parser(
        "manifests",
        help="show what a folder of manifests serves (services and ready endpoints)",
        description="Load manifests as `kdns serve --manifests` would and print the "
        "Services and their endpoints, like `kubectl get endpoints`.",
    )
    manifests.add_argument(
        "paths", nargs="+", metavar="PATH", help="YAML/JSON files or folders of Kubernetes objects"
    )
    manifests.add_argument(
        "--service-cidr",
        action="append",
        metavar="CIDR",
        help="service CIDR ClusterIPs are allocated from; repeatable (default 10.96.0.0/16)",
    )
    manifests.add_argument(
        "--pod-cidr",
        action="append",
        metavar="CIDR",
        help="pod CIDR pod IPs are allocated from; repeatable (default 10.244.0.0/16)",
    )
    return parser


def serve_settings(ns: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from the command line, then the environment twins of flags not given."""
    values: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for flag, raw in env_values(environ).items():
        values[flag] = raw
        where[flag] = next(o.env for o in OPTIONS if o.flag == flag)
    for option in OPTIONS:
        given = getattr(ns, option.dest)
        if given is not None:
            values[option.flag] = given
            where[option.flag] = option.flag
    return settings_from_values(
        values, where=where, in_cluster_env=bool(environ.get("KUBERNETES_SERVICE_HOST"))
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(args)
        if ns.command is None:
            parser.print_help()
            return 2
        if ns.command == "manifests":
            return _run_manifests_command(ns)
        if ns.command == "corefile":
            return _run_corefile_command(ns)
        settings = serve_settings(ns, os.environ)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from kdns.app import run  # late import: `kdns --help` stays fast

    code: int = run(settings)
    return code


def _run_corefile_command(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from kdns.config.corefile import CorefileError, load_corefile, render

    port = int_in(0, 65535)(ns.dns_port, "--dns-port")
    path = Path(ns.path)
    try:
        config = load_corefile(path, dns_port=port)
    except CorefileError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(render(config))
    return 0


def _run_manifests_command(ns: argparse.Namespace) -> int:
    from kdns.config.options import BY_FLAG
    from kdns.sources.manifests import ManifestError, load_manifests, render_endpoints

    defaults = Settings()
    try:
        paths = [existing_path(p, "PATH") for p in ns.paths]
        service = BY_FLAG["--service-cidr"].parse
        pod = BY_FLAG["--pod-cidr"].parse
        data = load_manifests(
            paths,
            service_cidrs=tuple(service(c, "--service-cidr") for c in ns.service_cidr or ())
            or defaults.service_cidrs,
            pod_cidrs=tuple(pod(c, "--pod-cidr") for c in ns.pod_cidr or ()) or defaults.pod_cidrs,
        )
    except (UsageError, ManifestError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(render_endpoints(data))
    return 0
