"""Asking the question for real, then explaining the reply.

An `Explainer` holds the DNS servers to ask: the running ones (the debug endpoint), or ones
built from a `Config` without sockets (`offline()`), exactly as `kdns serve` builds them. The
question goes through `DnsServer.trace`, the server's own slow path (the fast path answers
the same bytes), which also says which plugin answered and which upstream sent a relayed
reply. Offline, nothing leaves the process: every `forward` plugin gets a forwarder that
only notes the name it was given, and `errors` and `log` are left out (they write logs and
never change an answer).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_address
from typing import TypeVar

from kdns.build import Context, build
from kdns.cluster.index import Index
from kdns.config.model import PLUGIN_ORDER, Config, ForwardConfig, KubernetesConfig, Upstream
from kdns.dns import wire
from kdns.dns.records import RType
from kdns.explain.analyze import BlockInfo, ExplainView, Filter, Traced, analyze
from kdns.explain.model import AnswerInfo, Explanation, RouteInfo
from kdns.observe.metrics import server_label
from kdns.observe.stats import Stats
from kdns.plugins.cache import CacheGauge
from kdns.plugins.forward import ForwardPlugin
from kdns.plugins.kubernetes import KubernetesPlugin
from kdns.serve.chain import Generation, Plugin, Response
from kdns.serve.server import Block, DnsServer
from kdns.upstream.forward import Forwarder, UpstreamError

R = TypeVar("R")

# Plugins that take part in answering (the others are served by the app: HTTP, reload).
ANSWERING = tuple(
    n for n in PLUGIN_ORDER if n not in ("reload", "bind", "ready", "health", "prometheus")
)
# Left out offline: they only write logs.
LOG_ONLY = ("errors", "log")

_FLAG_BITS = (
    ("qr", 0x8000),
    ("aa", 0x0400),
    ("tc", 0x0200),
    ("rd", 0x0100),
    ("ra", 0x0080),
    ("ad", 0x0020),
    ("cd", 0x0010),
)


class ExplainError(Exception):
    """A question that cannot be asked (a bad name or type); one line naming it."""


def parse_type(text: str) -> int:
    """A query type by mnemonic (A, aaaa, SRV), as TYPEnn, or as a number."""
    upper = text.strip().upper()
    if upper in RType.__members__ and upper != "OPT":
        return int(RType[upper])
    number = upper.removeprefix("TYPE")
    if number.isdigit() and 0 < int(number) < 65536:
        return int(number)
    known = ", ".join(t.name for t in RType if t is not RType.OPT)
    raise ExplainError(f"TYPE {text!r} is not a record type; use one of {known}, or TYPEnn")


def question_for(name: str, qtype: str | None) -> tuple[str, int]:
    """(absolute name, type) for `kdns explain NAME [TYPE]`. An IP address is looked up in
    reverse, like `dig -x` (PTR unless a type is given)."""
    text = name.strip()
    try:
        address = ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        return address.reverse_pointer + ".", parse_type(qtype) if qtype else int(RType.PTR)
    absolute = text if text.endswith(".") else text + "."
    try:
        wire.name_to_wire(absolute)
    except ValueError as exc:
        raise ExplainError(f"NAME {name!r} is not a DNS name: {exc}") from None
    return absolute, parse_type(qtype) if qtype else int(RType.A)


class _NotAsked(Forwarder):
    """Offline: notes the names the `forward` plugin would send and sends nothing (the
    plugin then answers as when no upstream answers). A plain subclass, not a dataclass:
    Forwarder may be compiled (kdns/native.py), and its fields are set by its own
    `__init__`."""

    def __init__(self, upstreams: Sequence[Upstream], *, stats: Stats) -> None:
        super().__init__(upstreams, stats=stats)
        self.names: list[str] = []

    def forward(
        self,
        query: bytes,
        parsed: wire.Query,
        *,
        tcp: bool,
        done: Callable[[bytes | UpstreamError, str | None], R],
        future: asyncio.Future[R] | None = None,
    ) -> asyncio.Future[R]:
        self.names.append(parsed.question.qname)
        if future is None:
            future = asyncio.get_running_loop().create_future()
        future.set_result(done(UpstreamError("offline: nothing is sent"), None))
        return future


@dataclass(frozen=True, slots=True)
class Target:
    """One listener's server."""

    label: str  # CoreDNS's server label, "dns://:53"
    server: DnsServer


class Explainer:
    """Asks `targets` and explains the replies against `view`."""

    def __init__(
        self,
        targets: Callable[[], Sequence[Target]],
        view: ExplainView,
        *,
        config: Callable[[], Config | None],
        source: str,
        filters: Sequence[Filter] = (),
        not_asked: Sequence[_NotAsked] = (),
        plugins: Sequence[Plugin] = (),
    ) -> None:
        self.targets = targets
        self.view = view
        self.config = config
        self.source = source
        self.filters = filters
        self._not_asked = not_asked
        self._plugins = plugins  # built here (offline): closed by close()

    @classmethod
    def offline(
        cls,
        config: Config,
        index: Index,
        *,
        filters: Sequence[Filter] = (),
        send: bool = False,
    ) -> Explainer:
        """DNS servers built from `config` as `kdns serve` builds them, without listening
        sockets; nothing is forwarded unless `send` (then `forward` asks its upstreams)."""
        quiet = replace(
            config,
            blocks=tuple(
                replace(b, plugins={k: v for k, v in b.plugins.items() if k not in LOG_ONLY})
                for b in config.blocks
            ),
        )
        stats = Stats()
        generation = Generation()
        context = Context(view=index, stats=stats, gauge=CacheGauge(stats), generation=generation)
        built = build(quiet, context)
        not_asked: list[_NotAsked] = []
        for plugin in built.plugins:
            if isinstance(plugin, ForwardPlugin) and not send:
                stub = _NotAsked(plugin.forwarder.upstreams, stats=stats)
                plugin.forwarder = stub
                not_asked.append(stub)
        targets = [
            Target(
                server_label(addr),
                DnsServer(
                    blocks,
                    index=index,
                    stats=stats,
                    generation=generation,
                    server=server_label(addr),
                ),
            )
            for addr, blocks in sorted(built.listeners.items(), key=lambda kv: kv[0].port)
        ]
        return cls(
            lambda: targets,
            index,
            config=lambda: config,
            source="manifests",
            filters=filters,
            not_asked=not_asked,
            plugins=built.plugins,
        )

    async def close(self) -> None:
        """Release what `offline()` built (a forwarder's health probes, with `send`)."""
        for plugin in self._plugins:
            pending = plugin.close()
            if pending is not None:
                await pending

    async def explain(self, name: str, qtype: int) -> Explanation:
        """Ask `name` (absolute) `qtype` and explain the reply."""
        lname = name.lower()
        target, routed = self._choose(lname)
        for stub in self._not_asked:
            stub.names.clear()
        query = wire.build_query(name, qtype, qid=secrets.randbelow(0x10000))
        out, response = await target.server.trace(query)
        truncated = False
        if out is not None and wire.truncated(out):
            truncated = True  # as dig does: ask again over TCP, and show that
            out, response = await target.server.trace(query, tcp=True)
        not_forwarded = tuple(n for stub in self._not_asked for n in stub.names)
        traced = self._traced(out, response, truncated, not_forwarded)
        block = routed[1] if routed is not None else None
        info = self._block_info(block) if block is not None else None
        route = RouteInfo(
            listener=target.label,
            zone=routed[0] if routed is not None else None,
            block_zones=block.zones if block is not None else (),
            chain=info.chain if info is not None else (),
            plugin=traced.plugin,
        )
        return analyze(
            name,
            qtype,
            view=self.view,
            traced=traced,
            route=route,
            block=info,
            source=self.source,
            filters=self.filters,
        )

    def _choose(self, lname: str) -> tuple[Target, tuple[str, Block] | None]:
        """The listener whose block zone matches `lname` best (the first on a tie)."""
        targets = self.targets()
        if not targets:
            raise ExplainError("no DNS listener is configured")
        best: tuple[Target, tuple[str, Block] | None] = (targets[0], None)
        for target in targets:
            routed = target.server.route(lname)
            if routed is not None and (best[1] is None or len(routed[0]) > len(best[1][0])):
                best = (target, routed)
        return best

    def _traced(
        self,
        out: bytes | None,
        response: Response | None,
        truncated: bool,
        not_forwarded: tuple[str, ...],
    ) -> Traced:
        plugin = response.plugin if response is not None else ""
        upstream = response.upstream if response is not None else None
        error = response.error if response is not None else None
        if out is None:
            return Traced(AnswerInfo(obtained=False), plugin=plugin, error=error)
        if plugin == "forward" and not_forwarded:
            # Offline: the reply would have been the upstream's; nothing was asked.
            return Traced(AnswerInfo(obtained=False), plugin=plugin, not_forwarded=not_forwarded)
        decoded = wire.decode_reply(out)
        answer = AnswerInfo(
            obtained=True,
            rcode=wire.rcode_name(decoded.rcode),
            flags=tuple(name for name, bit in _FLAG_BITS if decoded.flags & bit),
            answer=tuple(map(str, decoded.answer)),
            authority=tuple(map(str, decoded.authority)),
            additional=tuple(map(str, decoded.additional)),
            truncated_udp=truncated,
        )
        return Traced(
            answer,
            records=decoded.answer,
            rcode=decoded.rcode,
            plugin=plugin,
            upstream=upstream,
            error=None if not_forwarded and error else error,
            not_forwarded=not_forwarded,
        )

    def _block_info(self, block: Block) -> BlockInfo:
        kube: KubernetesConfig | None = None
        forward: ForwardConfig | None = None
        for plugin in block.plugins:
            if isinstance(plugin, KubernetesPlugin):
                kube = plugin.config
            elif isinstance(plugin, ForwardPlugin):
                forward = plugin.config
        return BlockInfo(
            zones=block.zones,
            chain=self._chain(block),
            kubernetes=kube,
            forward_from=forward.from_zone if forward is not None else None,
            upstreams=tuple(str(u.addr) for u in forward.to) if forward is not None else (),
        )

    def _chain(self, block: Block) -> tuple[str, ...]:
        """The block's plugins as configured (offline leaves the log-only ones out of the
        build, not out of this list)."""
        config = self.config()
        chains: Mapping[tuple[str, ...], list[str]] = (
            {b.zones: b.chain_names() for b in config.blocks} if config is not None else {}
        )
        names = chains.get(block.zones)
        if names is None:
            return tuple(p.name for p in block.plugins)
        return tuple(n for n in names if n in ANSWERING)


__all__ = ["ExplainError", "Explainer", "Target", "parse_type", "question_for"]
