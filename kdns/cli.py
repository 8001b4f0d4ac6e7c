"""Command line: `kdns serve`, `kdns corefile`, `kdns manifests`, `kdns explain`.

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
from typing import Any, NoReturn

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
    _add_explain(sub)
    return parser


EXPLAIN_DESCRIPTION = (
    "Explain the answer to a name: the real reply (the question runs through the same "
    "plugin chain kdns serve builds), the server block and plugin that produced it, the "
    "Service, EndpointSlices and Pods behind it, every endpoint left out and why (not "
    "ready, terminating, the other address family), and for a name that does not exist "
    "what nearby does. Offline from --manifests with the serve flags below (or "
    "--corefile), or from a running kdns with --server. The flags' environment twins are "
    "read as kdns serve reads them; the command line wins."
)

# The `kdns serve` flags that decide answers; `kdns explain` takes them with the same
# meaning, so it builds the same configuration.
EXPLAIN_FLAGS = (
    "--manifests",
    "--corefile",
    "--dns-port",
    "--zone",
    "--ttl",
    "--pods",
    "--service-cidr",
    "--pod-cidr",
    "--upstream",
    "--zone-file",
)


_EXPLAIN_HELP = {
    "--manifests": "YAML/JSON file or folder of Kubernetes objects, read once as kdns serve "
    "reads them; repeatable",
    "--corefile": "build the server blocks from this CoreDNS Corefile, as kdns serve "
    "--corefile does",
}


def _add_explain(sub: argparse._SubParsersAction[_Parser]) -> None:
    from kdns.config.options import BY_FLAG

    explain = sub.add_parser(
        "explain",
        help="explain why a name answers as it does, or does not resolve",
        description=textwrap.fill(EXPLAIN_DESCRIPTION, 79),
        formatter_class=_Formatter,
    )
    explain.add_argument(
        "name",
        metavar="NAME",
        help="the name to explain, e.g. web.default.svc.cluster.local (an IP address is "
        "looked up in reverse, as dig -x does)",
    )
    explain.add_argument(
        "type",
        metavar="TYPE",
        nargs="?",
        help="record type: A (default; PTR for an IP address), AAAA, SRV, PTR, CNAME, TXT, "
        "SOA, NS, ANY, or TYPEnn",
    )
    explain.add_argument(
        "--server",
        metavar="URL",
        help="ask a running kdns instead, at its --debug-addr (e.g. http://127.0.0.1:9154); "
        "it answers for real, forwarding included, and says which upstream answered",
    )
    explain.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or json for tools",
    )
    for flag in EXPLAIN_FLAGS:
        option = BY_FLAG[flag]
        text = _EXPLAIN_HELP.get(flag)
        explain.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            help=f"{text} [env {option.env}]" if text else f"as kdns serve: {option.help_text()}",
            action="append",
        )


def explain_settings(ns: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings for `kdns explain` offline: its serve flags, then their environment twins."""
    values: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for flag, raw in env_values(environ).items():
        if flag in EXPLAIN_FLAGS:
            values[flag] = raw
            where[flag] = next(o.env for o in OPTIONS if o.flag == flag)
    for option in OPTIONS:
        if option.flag not in EXPLAIN_FLAGS:
            continue
        given = getattr(ns, option.dest)
        if given is not None:
            values[option.flag] = given
            where[option.flag] = option.flag
    if not values.get("--manifests"):
        raise UsageError(
            "explain: give --manifests PATH (the objects to explain from, offline) or "
            "--server URL (a running kdns's --debug-addr)"
        )
    return settings_from_values(values, where=where, in_cluster_env=False)


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
        if ns.command == "explain":
            return _run_explain_command(ns)
        settings = serve_settings(ns, os.environ)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from kdns.app import run  # late import: `kdns --help` stays fast

    code: int = run(settings)
    return code


def _run_explain_command(ns: argparse.Namespace) -> int:
    import asyncio
    import json

    from kdns.explain.render import render
    from kdns.explain.run import ExplainError, question_for

    try:
        if ns.server is not None:
            given = [f for f in EXPLAIN_FLAGS if getattr(ns, f.lstrip("-").replace("-", "_"))]
            if given:
                raise UsageError(
                    f"explain: {given[0]} goes with offline use; with --server the running "
                    "kdns's own configuration and data are used"
                )
            from kdns.explain.client import fetch

            question_for(ns.name, ns.type)  # a bad name or type fails here, not remotely
            data = fetch(ns.server, ns.name, ns.type)
        else:
            settings = explain_settings(ns, os.environ)
            from kdns.app import StartupError, load_config, source_plan
            from kdns.explain.offline import offline_explainer

            qname, qtype = question_for(ns.name, ns.type)
            try:
                config = load_config(settings)  # the same Config as kdns serve's
            except StartupError as exc:
                raise ExplainError(str(exc)) from None
            kinds = source_plan(settings, config).kinds
            explainer = offline_explainer(config, settings, kinds=kinds)

            async def explain() -> dict[str, Any]:
                try:
                    return (await explainer.explain(qname, qtype)).as_json()
                finally:
                    await explainer.close()

            data = asyncio.run(explain())
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except ExplainError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if ns.output == "json":
        print(json.dumps(data, indent=2))
    else:
        print(render(data), end="")
    return 0


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
