"""From a `Config` to runnable chains: one `Block` per server block, grouped by listener.

Plugins are instantiated in execution order (`PLUGIN_ORDER`, as CoreDNS's plugin.cfg) and
linked. Plugins that take no part in answering (reload, health, ready, prometheus) are
handled by the app, not chained. Everything a block needs from outside (the index, the
stats, the loop callback) is passed in, so a reload builds a complete new set beside the
running one and swaps it in only when the whole build succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kdns.cluster.model import IPAddress
from kdns.config.model import (
    AnyConfig,
    AutopathConfig,
    BufsizeConfig,
    CacheConfig,
    Config,
    ErrorsConfig,
    FileConfig,
    ForwardConfig,
    HostsConfig,
    KubernetesConfig,
    LoadbalanceConfig,
    LogConfig,
    RewriteConfig,
    ServerBlock,
    TemplateConfig,
)
from kdns.config.settings import HostPort
from kdns.dns.view import ClusterView
from kdns.observe.stats import Stats
from kdns.plugins.any import AnyPlugin
from kdns.plugins.autopath import AutopathPlugin
from kdns.plugins.bufsize import BufsizePlugin
from kdns.plugins.cache import CacheGauge, CachePlugin
from kdns.plugins.errors import ErrorsPlugin
from kdns.plugins.file import FilePlugin
from kdns.plugins.forward import ForwardPlugin
from kdns.plugins.hosts import HostsPlugin
from kdns.plugins.kubernetes import KubernetesPlugin
from kdns.plugins.loadbalance import LoadbalancePlugin, rotations
from kdns.plugins.log import LogPlugin
from kdns.plugins.loop import LoopPlugin
from kdns.plugins.rewrite import RewritePlugin
from kdns.plugins.template import TemplatePlugin
from kdns.serve.chain import Generation, Plugin, link
from kdns.serve.fastpath import ReplyCache
from kdns.serve.server import Block, DnsServer, IndexSource
from kdns.zones.zonefile import Protected, ZoneError, ZoneSet


class BuildError(Exception):
    """A configuration that parsed but cannot run (a zone file that does not load, ...).
    The message is one line: what, where, and the fix."""


@dataclass(slots=True)
class Built:
    """The runnable form of a Config."""

    config: Config
    listeners: dict[HostPort, list[Block]] = field(default_factory=dict)
    plugins: list[Plugin] = field(default_factory=list)
    loops: list[tuple[LoopPlugin, HostPort]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    """What the plugins get from the running process."""

    view: ClusterView
    stats: Stats
    gauge: CacheGauge
    generation: Generation
    self_addresses: tuple[IPAddress, ...] = ()
    on_loop: Callable[[str], None] = lambda _why: None
    # What zone files may not shadow: the cluster zones and the cluster's networks.
    protected: Sequence[Protected] = ()


def build(config: Config, context: Context) -> Built:
    built = Built(config)
    try:
        for block in config.blocks:
            runnable, loop = _block(block, context)
            built.plugins.extend(runnable.plugins)
            for addr in block.listen():
                built.listeners.setdefault(addr, []).append(runnable)
                if loop is not None:
                    built.loops.append((loop, addr))
                    loop = None  # one probe per block, on its first address
    except BaseException:
        for plugin in built.plugins:
            _close_now(plugin)
        raise
    return built


def standalone(
    config: Config,
    *,
    index: IndexSource,
    view: ClusterView,
    stats: Stats,
    cache: ReplyCache | None = None,
) -> DnsServer:
    """The DNS server of a one-listener Config, without sockets (benchmarks, fuzzing,
    `kdns explain`): call its `handle()` with query bytes."""
    generation = Generation()
    context = Context(view=view, stats=stats, gauge=CacheGauge(stats), generation=generation)
    built = build(config, context)
    if len(built.listeners) != 1:
        raise BuildError(f"standalone: {len(built.listeners)} listeners; give one")
    (blocks,) = built.listeners.values()
    return DnsServer(blocks, index=index, stats=stats, generation=generation, cache=cache)


def _block(block: ServerBlock, context: Context) -> tuple[Block, LoopPlugin | None]:
    plugins: list[Plugin] = []
    loop: LoopPlugin | None = None
    rotate = None
    for name in block.chain_names():
        config = block.plugins.get(name)
        plugin: Plugin | None = None
        if isinstance(config, BufsizeConfig):
            plugin = BufsizePlugin(config)
        elif isinstance(config, ErrorsConfig):
            plugin = ErrorsPlugin(config)
        elif isinstance(config, LogConfig):
            plugin = LogPlugin(config)
        elif isinstance(config, AnyConfig):
            plugin = AnyPlugin(config)
        elif isinstance(config, LoadbalanceConfig):
            plugin = LoadbalancePlugin(config)
            rotate = rotations
        elif isinstance(config, RewriteConfig):
            plugin = RewritePlugin(config)
        elif isinstance(config, CacheConfig):
            plugin = CachePlugin(config, stats=context.stats, gauge=context.gauge)
        elif isinstance(config, TemplateConfig):
            plugin = TemplatePlugin(config)
        elif isinstance(config, HostsConfig):
            plugin = HostsPlugin(config, generation=context.generation)
        elif isinstance(config, KubernetesConfig):
            plugin = KubernetesPlugin(config, context.view, self_addresses=context.self_addresses)
        elif isinstance(config, FileConfig):
            plugin = _file(config, context)
        elif name == "loop":
            plugin = loop = LoopPlugin(block.zones[0], on_loop=context.on_loop)
        elif isinstance(config, ForwardConfig):
            plugin = _forward(config, context)
        elif isinstance(config, AutopathConfig):
            plugin = AutopathPlugin(config, stats=context.stats)
        if plugin is not None:
            plugins.append(plugin)
    _connect_autopath(plugins)
    first = link(plugins)
    return (
        Block(
            zones=block.zones,
            chain=first,
            plugins=plugins,
            recursion="forward" in block.plugins,
            rotations=rotate,
        ),
        loop,
    )


def _connect_autopath(plugins: Sequence[Plugin]) -> None:
    """`autopath @kubernetes` asks the kubernetes plugin of its block for each client's
    search path (the Corefile reader made sure there is one, with pods verified)."""
    kubernetes = next((p for p in plugins if isinstance(p, KubernetesPlugin)), None)
    for plugin in plugins:
        if isinstance(plugin, AutopathPlugin) and plugin.config.plugin == "kubernetes":
            if kubernetes is None:
                raise BuildError(
                    f"{plugin.config.origin}: autopath: @kubernetes needs the kubernetes "
                    "plugin in this server block"
                )
            plugin.search_path = kubernetes.search_path
            plugin.set_cluster_zones(kubernetes.cluster_zones)


def _file(config: FileConfig, context: Context) -> FilePlugin:
    try:
        zones = ZoneSet.load(config.paths, protected=context.protected)
    except ZoneError as exc:
        raise BuildError(f"{config.origin}: file: {exc}") from None
    return FilePlugin(config, zones, generation=context.generation)


def _forward(config: ForwardConfig, context: Context) -> ForwardPlugin:
    try:
        return ForwardPlugin(config, stats=context.stats)
    except ValueError as exc:  # `tls` files that do not load
        raise BuildError(f"{config.origin}: {exc}") from None


def _close_now(plugin: Plugin) -> None:
    pending = plugin.close()
    if pending is not None and hasattr(pending, "close"):
        pending.close()  # a coroutine never started: nothing to wait for


__all__ = ["BuildError", "Built", "Context", "build", "standalone"]
