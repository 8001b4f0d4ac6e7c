"""The process: configuration -> data source -> index -> chains -> listeners, then a lifetime.

A run has four phases, as uvicorn's server and kopf's operator have:

1. start: read the configuration (Corefile or flags), load or connect the data source,
   build the chains, bind the DNS sockets, start HTTP. Everything opened is registered on
   one exit stack, so a failure at any step (a port in use, a bad zone file) closes what
   was opened before and leaves nothing half-started; the error is one line.
2. serve: every background job (the source, plugin reloads, the loop probe, the Corefile
   watcher, worker stats) runs under one task group. A source that dies is restarted with
   backoff; one that cannot come back makes /health fail, so the kubelet restarts the pod.
3. lameduck: after SIGTERM/SIGINT, /ready answers 503 at once and DNS keeps answering for
   `health { lameduck }` seconds.
4. stop: the task group is cancelled and the exit stack closes sockets and plugins.

SIGHUP and SIGUSR1 reload the Corefile (as `reload` does when the file changes): the new
configuration is parsed and built beside the running one and swapped in only if all of it
works; listeners that stay keep their sockets, so no query is lost during the swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import kdns
from kdns.build import BuildError, Built, Context, build
from kdns.cluster.index import Index
from kdns.cluster.model import Event, IPAddress, Kind
from kdns.config.model import (
    Config,
    ForwardConfig,
    HealthConfig,
    KubernetesConfig,
    PrometheusConfig,
    ReadyConfig,
    ReloadConfig,
)
from kdns.config.settings import HostPort, PodMode, Settings
from kdns.native import compiled_modules
from kdns.observe.http import HttpServers, QueryRoute
from kdns.observe.metrics import HEALTH_BUCKETS, build_registry, server_label
from kdns.observe.stats import Histogram, Stats, snapshot
from kdns.plugins.cache import CacheGauge
from kdns.plugins.file import FilePlugin
from kdns.serve.chain import Generation, Plugin
from kdns.serve.rrl import RateLimiter
from kdns.serve.server import Block, DnsServer
from kdns.serve.transport import TcpLimits, TcpServer, UdpServer, bind_tcp, bind_udp
from kdns.sources.convert import SourceFilter
from kdns.upstream.forward import LoopError, check_self_forwarding
from kdns.zones.zonefile import Protected

log = logging.getLogger("kdns")

_REVERSE = ("in-addr.arpa.", "ip6.arpa.")
SOURCE_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
SOURCE_GIVE_UP = 6  # restarts in a row without a healthy minute: /health fails
SOURCE_HEALTHY_SECONDS = 60.0


class StartupError(Exception):
    """Start-up cannot go on; the message says what and how to fix it (one line each)."""


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime


@dataclass(slots=True)
class Workers:
    """This process's place among `--workers` processes sharing the DNS ports.

    Worker 0 serves HTTP and reads the others' stats snapshots from `readers`; every other
    worker ships its snapshot once a second through `writer`. Each worker runs its own data
    source and index (a watch per worker, like CoreDNS replicas): nothing is shared, so
    nothing needs locking, a crash stays in one worker, and the only cost is n times the
    API watch traffic."""

    number: int = 0
    readers: list[Connection] = field(default_factory=list)
    writer: Connection | None = None
    children: list[int] = field(default_factory=list)


# Allocations between young-generation collections (CPython's default: 700). A query
# that leaves the fast path makes a score of short-lived objects (a forwarded one: the
# query, its Request and Response, the exchange, futures), nearly all freed by reference
# counting; at 700 the collector ran every few dozen queries and cost about a tenth of a
# forwarded query's CPU (bench/micro_forward.py: 39 -> 35 us a query at 2000, no gain
# above). The middle generation is collected after 50 young passes instead of 10: the
# cache plugin runs a young pass every 256 stores (kdns.plugins.cache), and each pass
# counts towards the older generations, whose full collections (3-5 ms here) had become
# ten times as frequent. The index is frozen after bulk loads.
GC_YOUNG_THRESHOLD = 2000
GC_MIDDLE_THRESHOLD = 50


def run(settings: Settings) -> int:
    """Run kdns until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(settings.log_level)
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, gc.get_threshold()[2])
    workers = _fork_workers(settings.workers) if settings.workers > 1 else Workers()
    try:
        import uvloop

        runner: Callable[[Awaitable[int]], int] = uvloop.run  # type: ignore[assignment]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run  # type: ignore[assignment]
    try:
        return runner(App(settings, workers).run())
    except StartupError as exc:
        if workers.number == 0:  # one report, not one per worker
            for line in str(exc).splitlines():
                print(f"kdns: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for pid in workers.children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)


def _fork_workers(n: int) -> Workers:
    """Fork n-1 more processes before any event loop exists."""
    pipes = [Pipe(duplex=False) for _ in range(n - 1)]
    children: list[int] = []
    for i in range(1, n):
        pid = os.fork()
        if pid == 0:
            for j, (reader, writer) in enumerate(pipes):
                reader.close()
                if j != i - 1:
                    writer.close()
            return Workers(number=i, writer=pipes[i - 1][1])
        children.append(pid)
    for _, writer in pipes:
        writer.close()
    return Workers(number=0, readers=[r for r, _ in pipes], children=children)


def self_addresses(settings: Settings) -> tuple[IPAddress, ...]:
    """Addresses for `ns.dns.<zone>` when no kube-system/kube-dns Service names them."""
    found: list[IPAddress] = []
    for text in os.environ.get("POD_IPS", os.environ.get("POD_IP", "")).split(","):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(text.strip()))
    if not found:
        with contextlib.suppress(ValueError):
            addr = ipaddress.ip_address(settings.dns_addr.host)
            if not addr.is_unspecified:
                found.append(addr)
    if not found:
        found.append(ipaddress.IPv4Address("127.0.0.1"))
    return tuple(found)


def load_config(settings: Settings) -> Config:
    """The configuration to serve: the Corefile, or what the flags say."""
    if settings.corefile is not None:
        from kdns.config.corefile import CorefileError, load_corefile

        try:
            config: Config = load_corefile(settings.corefile, dns_port=settings.dns_addr.port)
            return config
        except CorefileError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"--corefile {settings.corefile}: {exc.strerror}") from None
    from kdns.config.flags import config_from_settings
    from kdns.zones.zonefile import ZoneError, ZoneSet

    apexes: list[str] = []
    if settings.zone_files:
        # Route the zone files' own zones to the block (read once here; the file plugin
        # loads them again, with the cluster's names protected).
        try:
            apexes = list(ZoneSet.load(settings.zone_files).zones)
        except ZoneError as exc:
            raise StartupError(f"--zone-file: {exc}") from None
    host_search: list[str] = []
    if settings.autopath:  # the node's search domains follow the pod's (autopath @kubernetes)
        from kdns.config.resolvconf import search_from_resolv_conf

        host_search = search_from_resolv_conf("/etc/resolv.conf")
    return config_from_settings(
        _with_upstreams(settings), zone_file_apexes=apexes, host_search=host_search
    )


def _with_upstreams(settings: Settings) -> Settings:
    if settings.upstreams is not None:
        return settings
    from dataclasses import replace

    from kdns.config.resolvconf import upstreams_from_resolv_conf

    found = tuple(upstreams_from_resolv_conf("/etc/resolv.conf"))
    if not found:
        log.warning("no nameserver in /etc/resolv.conf: names outside the zones get REFUSED")
    return replace(settings, upstreams=found)


T = TypeVar("T")


def _first(config: Config, name: str, kind: type[T]) -> T | None:
    for _block, plugin in config.plugin(name):
        if isinstance(plugin, kind):
            return plugin
    return None


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What feeds the index: which kinds, from where, filtered how. Derived from the flags
    and the `kubernetes` plugin; a reload that would change it needs a restart."""

    kind: str  # "manifests", "kubernetes" or "none"
    kinds: tuple[Kind, ...]
    kubeconfig: Path | None = None
    context: str | None = None
    endpoint: str | None = None
    filters: SourceFilter = field(default_factory=SourceFilter)


class PlanError(Exception):
    """The kubernetes plugins of the server blocks want different data in the one index."""


def source_plan(settings: Settings, config: Config) -> SourcePlan:
    kube = _first(config, "kubernetes", KubernetesConfig)
    if kube is None:
        return SourcePlan("none", ())
    filters = _source_filter(config)
    if settings.manifests:
        return SourcePlan(
            "manifests",
            (Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE, Kind.POD),
            filters=filters,
        )
    kinds = [Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE]
    if not filters.endpoints:
        kinds.remove(Kind.ENDPOINT_SLICE)
    if any(
        isinstance(p, KubernetesConfig) and p.pods is PodMode.VERIFIED
        for _, p in config.plugin("kubernetes")
    ):
        kinds.append(Kind.POD)
    return SourcePlan(
        "kubernetes",
        tuple(kinds),
        kubeconfig=settings.kubeconfig or kube.kubeconfig,
        context=kube.context,
        endpoint=kube.endpoint,
        filters=filters,
    )


def _source_filter(config: Config) -> SourceFilter:
    """What the source keeps, from the kubernetes plugins' options: one index serves every
    server block, so they must agree on it (raises PlanError naming both)."""
    found: SourceFilter | None = None
    first: KubernetesConfig | None = None
    for _, plugin in config.plugin("kubernetes"):
        if not isinstance(plugin, KubernetesConfig):
            continue
        wanted = SourceFilter(
            labels=plugin.labels,
            namespace_labels=plugin.namespace_labels,
            endpoints=not plugin.noendpoints,
            pod_names=plugin.endpoint_pod_names,
        )
        if found is None:
            found, first = wanted, plugin
        elif wanted != found:
            assert first is not None
            raise PlanError(
                f"{plugin.origin}: kubernetes: kdns keeps one index for every server block, "
                f"so its labels, namespace_labels, noendpoints and endpoint_pod_names must "
                f"be those of the kubernetes plugin at {first.origin}"
            )
    return found or SourceFilter()


@dataclass(slots=True)
class Listener:
    addr: HostPort
    server: DnsServer
    udp: UdpServer
    tcp: TcpServer

    async def close(self) -> None:
        self.udp.close()
        await self.tcp.close()


class App:
    """One process's kdns: see the module docstring for its phases."""

    def __init__(self, settings: Settings, workers: Workers | None = None) -> None:
        self.settings = settings
        self.workers = workers or Workers()
        self.stats = Stats()
        self.gauge = CacheGauge(self.stats)
        self.generation = Generation()
        self.index = Index(required=())
        self.config: Config | None = None
        self.plan = SourcePlan("none", ())
        self.built: Built | None = None
        self.listeners: dict[HostPort, Listener] = {}
        self.http: HttpServers | None = None
        self.health_times = Histogram(HEALTH_BUCKETS)
        self.lameduck = False
        self.source_failed: str | None = None
        self.fatal: str | None = None
        self.reload_failures = 0
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._plugin_tasks: dict[int, list[asyncio.Task[None]]] = {}
        self._rrl: RateLimiter | None = None
        self._source_job: Callable[[], Awaitable[None]] | None = None
        self._peers: dict[int, Stats] = {}
        # (failing, last_success) of the manifests poller, in manifests mode.
        self._manifests_status: Callable[[], tuple[bool, float]] | None = None

    # ---- phases ------------------------------------------------------------------------

    async def run(self) -> int:
        async with contextlib.AsyncExitStack() as stack:
            await self.start(stack)
            await self.serve()
        if self.fatal is not None:
            log.error("%s", self.fatal)
            return 1
        return 0

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        config = self.config = load_config(settings)
        try:
            self.plan = source_plan(settings, config)
        except PlanError as exc:
            raise StartupError(str(exc)) from None
        self.index = Index(required=self.plan.kinds)
        self._source_job = self._start_source(self.plan)
        self._check_static_loops(config)
        self.built = self._build(config)
        stack.push_async_callback(self._close_current_plugins)
        stack.push_async_callback(self._close_listeners)
        if settings.rrl_responses_per_second > 0:
            self._rrl = RateLimiter(settings.rrl_responses_per_second, slip=settings.rrl_slip)
            self.stats.flushers.append(self._fold_rrl)
        for addr, blocks in self.built.listeners.items():
            self.listeners[addr] = await self._listen(addr, blocks)
        compiled = compiled_modules()
        if compiled:
            log.info("running %d hot modules compiled with mypyc (kdns/native.py)", len(compiled))
        else:
            log.info("running the Python sources only: %s", kdns.PURE_REASON or "none compiled")
        for listener in self.listeners.values():
            log.info(
                "listening for DNS on %s (udp+tcp), zones %s, worker %d, pid %d",
                HostPort(listener.addr.host, listener.udp.port),
                " ".join(z for b in listener.server.blocks for z in b.zones),
                self.workers.number,
                os.getpid(),
            )
        if self.workers.number == 0:
            loop = asyncio.get_running_loop()
            for i, reader in enumerate(self.workers.readers, start=1):
                loop.add_reader(reader.fileno(), _receive_stats, reader, self._peers, i)
            self.http = await self._start_http(config)
            stack.push_async_callback(self._stop_http)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._on_reload_signal)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                if self._source_job is not None:
                    tasks.create_task(self._supervise_source(self._source_job), name="source")
                assert self.built is not None
                self._start_plugins(self.built)
                tasks.create_task(self._reloads(), name="reload")
                if self.workers.writer is not None:
                    tasks.create_task(self._ship_stats(self.workers.writer), name="stats")
                await self._stop.wait()
                if self.fatal is None:
                    await self._lameduck()
                raise _StopRequestedError
        except* _StopRequestedError:
            pass
        finally:
            self._tasks = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    async def _lameduck(self) -> None:
        for pid in self.workers.children:  # the workers lameduck alongside
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.lameduck = True
        assert self.config is not None
        health = _first(self.config, "health", HealthConfig)
        seconds = health.lameduck if health is not None else 0.0
        log.info("SIGTERM: lameduck for %.1f s (/ready is 503, DNS still answers)", seconds)
        if seconds > 0:
            await asyncio.sleep(seconds)
        log.info("shutting down")

    # ---- start-up pieces ---------------------------------------------------------------

    def _context(self, config: Config) -> Context:
        return Context(
            view=self.index,
            stats=self.stats,
            gauge=self.gauge,
            generation=self.generation,
            self_addresses=self_addresses(self.settings),
            on_loop=self._on_loop,
            protected=self._protected(config),
        )

    def _protected(self, config: Config) -> list[Protected]:
        """Names zone files may not hide: every cluster zone, and the service and pod
        networks when kdns knows them (flags, or a manifests source that allocates from
        them); with a Corefile and the API the networks are the cluster's, unknown here."""
        found: list[Protected] = []
        for _block, plugin in config.plugin("kubernetes"):
            if isinstance(plugin, KubernetesConfig):
                found.extend(z for z in plugin.zones if not z.endswith(_REVERSE))
        if self.settings.corefile is None or self.settings.manifests:
            found.extend((*self.settings.service_cidrs, *self.settings.pod_cidrs))
        return found

    def _build(self, config: Config) -> Built:
        try:
            return build(config, self._context(config))
        except BuildError as exc:
            raise StartupError(str(exc)) from None

    def _check_static_loops(self, config: Config) -> None:
        for block, plugin in config.plugin("forward"):
            if not isinstance(plugin, ForwardConfig):
                continue
            for addr in block.listen():
                try:
                    check_self_forwarding([u.addr for u in plugin.to], addr)
                except LoopError as exc:
                    raise StartupError(f"{plugin.origin}: {exc}") from None

    async def _listen(self, addr: HostPort, blocks: list[Block]) -> Listener:
        reuse = self.settings.workers > 1
        try:
            udp_sock = bind_udp(addr.host, addr.port, reuse_port=reuse)
        except OSError as exc:
            raise StartupError(_bind_error(addr, exc)) from None
        try:
            tcp_sock = bind_tcp(addr.host, udp_sock.getsockname()[1], reuse_port=reuse)
        except OSError as exc:
            udp_sock.close()
            raise StartupError(_bind_error(addr, exc)) from None
        server = DnsServer(
            blocks,
            index=self.index,
            stats=self.stats,
            generation=self.generation,
            server=server_label(HostPort(addr.host, udp_sock.getsockname()[1])),
        )
        udp = UdpServer(
            udp_sock, server, observe_batch=server.observe_batch, rrl=self._rrl, exact=server
        )
        limits = TcpLimits(  # a started message must also complete within the idle timeout
            idle_seconds=self.settings.tcp_idle_seconds,
            message_seconds=self.settings.tcp_idle_seconds,
            max_connections=self.settings.tcp_max_connections,
        )
        tcp = TcpServer(tcp_sock, server, limits=limits)
        udp.start()
        await tcp.start()
        return Listener(addr, server, udp, tcp)

    async def _close_listeners(self) -> None:
        listeners, self.listeners = self.listeners, {}
        for listener in listeners.values():
            await listener.close()

    async def _close_current_plugins(self) -> None:
        if self.built is not None:
            await self._close_plugins(self.built.plugins)

    async def _close_plugins(self, plugins: list[Plugin]) -> None:
        for plugin in plugins:
            for task in self._plugin_tasks.pop(id(plugin), []):
                task.cancel()
            pending = plugin.close()
            if pending is not None:
                await pending

    def _start_plugins(self, built: Built) -> None:
        assert self._tasks is not None
        for plugin in built.plugins:
            jobs: list[asyncio.Task[None]] = [
                self._tasks.create_task(_guarded(job, plugin.name), name=plugin.name)
                for job in plugin.background()
            ]
            self._plugin_tasks[id(plugin)] = jobs
        for loop_plugin, addr in built.loops:
            listener = self.listeners.get(addr)
            if listener is not None:
                bound = HostPort(addr.host, listener.udp.port)
                self._tasks.create_task(loop_plugin.probe(bound), name="loop-probe")

    def _on_loop(self, why: str) -> None:
        self.fatal = why
        self._stop.set()

    # ---- the data source ---------------------------------------------------------------

    def _start_source(self, plan: SourcePlan) -> Callable[[], Awaitable[None]] | None:
        """Load or connect the data source now (a bad manifest or kubeconfig stops
        start-up); return the job that keeps it current."""
        if plan.kind == "manifests":
            return self._start_manifests()
        if plan.kind == "kubernetes":
            return self._start_kube(plan)
        return None

    def _apply(self, event: Event) -> object:
        return self.index.apply(event)

    def _start_manifests(self) -> Callable[[], Awaitable[None]]:
        from kdns.sources.manifests import (
            ManifestError,
            ReloadStatus,
            events,
            load_manifests,
            run_manifests,
        )

        settings = self.settings
        filters = self.plan.filters
        try:
            data = load_manifests(
                settings.manifests,
                service_cidrs=settings.service_cidrs,
                pod_cidrs=settings.pod_cidrs,
                filters=filters,
            )
        except ManifestError as exc:
            raise StartupError(str(exc)) from None
        for event in events(data):
            self._apply(event)
        if self.workers.number == 0:
            for line in data.summary_lines():
                log.info("%s", line)
        initial: list[object] = [data]
        status = ReloadStatus()
        loaded_at = data.loaded_at  # served until the poller's first report

        def reload_status() -> tuple[bool, float]:
            return status.failing, status.last_good_load or loaded_at

        self._manifests_status = reload_status

        async def job() -> None:
            first = initial.pop() if initial else None
            await run_manifests(
                settings.manifests,
                apply=self._apply,
                service_cidrs=settings.service_cidrs,
                pod_cidrs=settings.pod_cidrs,
                initial=first,  # type: ignore[arg-type]
                filters=filters,
                status=status,
            )

        return job

    def _start_kube(self, plan: SourcePlan) -> Callable[[], Awaitable[None]]:
        """Load credentials now; the API itself may be away: the reflectors retry with
        backoff while misses are SERVFAIL and /ready is 503."""
        from kdns.sources.kube.auth import CredentialsError, load_credentials
        from kdns.sources.kube.source import run_kube_source

        try:
            credentials = load_credentials(
                kubeconfig=plan.kubeconfig,
                context=plan.context,
                in_cluster=plan.kubeconfig is None and self.settings.in_cluster,
                endpoint=plan.endpoint,
            )
        except CredentialsError as exc:
            raise StartupError(str(exc)) from None
        log.info("data source: Kubernetes API at %s", credentials.host)

        async def job() -> None:
            await run_kube_source(
                credentials=credentials,
                apply=self.index.apply,
                kinds=plan.kinds,
                filters=plan.filters,
                stats=self.stats,
            )

        return job

    async def _supervise_source(
        self,
        job: Callable[[], Awaitable[None]],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep the source running: restart it with backoff after an unexpected error; after
        SOURCE_GIVE_UP restarts without a healthy minute, /health fails (the data would
        stay frozen) while it keeps trying."""
        failures = 0
        while True:
            started = clock()
            try:
                await job()
                return
            except Exception as exc:
                if clock() - started > SOURCE_HEALTHY_SECONDS:
                    failures = 0
                    self.source_failed = None
                failures += 1
                delay = SOURCE_BACKOFF[min(failures, len(SOURCE_BACKOFF)) - 1]
                delay *= 1 + random.uniform(-0.2, 0.2)
                log.error(
                    "%s source stopped (%s: %s); restart %d in %.1f s",
                    self.plan.kind,
                    type(exc).__name__,
                    exc,
                    failures,
                    delay,
                )
                if failures >= SOURCE_GIVE_UP:
                    self.source_failed = (
                        f"{self.plan.kind} source failed {failures} times in a row: {exc}"
                    )
                await sleep(delay)

    # ---- HTTP --------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if self.lameduck:
            return False, "lameduck: shutting down"
        if not self.index.synced:
            return False, f"{self.plan.kind}: not synced"
        return True, "OK"

    def healthy(self) -> str | None:
        return self.source_failed

    async def _start_http(self, config: Config) -> HttpServers | None:
        health = _first(config, "health", HealthConfig)
        ready = _first(config, "ready", ReadyConfig)
        prometheus = _first(config, "prometheus", PrometheusConfig)
        explain = self._debug_explain()
        if health is None and ready is None and prometheus is None and explain is None:
            return None
        first = next(iter(self.listeners.values()), None)
        server = server_label(first.addr if first is not None else HostPort("", 53))
        registry = build_registry(
            stats=self.stats,
            server=server,
            objects=self.index.counts,
            ready=lambda: self.ready()[0],
            health=self.health_times,
            peers=lambda: list(self._peers.values()),
            plugins=self._plugins_enabled,
            api=self.plan.kind == "kubernetes",
            reloads=self._reload_statuses(),
            programming=lambda: self.index.programming,
        )
        http = HttpServers(
            health=health.addr if health is not None else None,
            ready=ready.addr if ready is not None else None,
            metrics=prometheus.addr if prometheus is not None else None,
            is_ready=self.ready,
            is_healthy=self.healthy,
            registry=registry,
            health_times=self.health_times,
            debug=self.settings.debug_addr,
            explain=explain,
        )
        try:
            await http.start()
        except OSError as exc:
            raise StartupError(
                f"HTTP listener: {exc.strerror}; pick free addresses for health, ready and "
                "prometheus (--health-addr, --ready-addr, --metrics-addr)"
            ) from None
        return http

    def _debug_explain(self) -> QueryRoute | None:
        """`/debug/explain` over this process's listeners and index (`kdns explain --server`)."""
        if self.settings.debug_addr is None:
            return None
        from kdns.explain.debug import DebugExplain
        from kdns.explain.run import Explainer, Target

        def targets() -> list[Target]:
            return [
                Target(server_label(HostPort(addr.host, listener.udp.port)), listener.server)
                for addr, listener in self.listeners.items()
            ]

        return DebugExplain(
            Explainer(targets, self.index, config=lambda: self.config, source="server")
        )

    def _plugins_enabled(self) -> list[tuple[str, str, str]]:
        """(server, zone, plugin) of every plugin of every server block now in service."""
        if self.config is None:
            return []
        return [
            (server_label(addr), zone, name)
            for block in self.config.blocks
            for addr in block.listen()
            for zone in block.zones
            for name in block.chain_names()
        ]

    def _reload_statuses(self) -> dict[str, Callable[[], tuple[bool, float]]]:
        """Sources that reload from files, for kdns_source_reload_failed and friends."""
        statuses: dict[str, Callable[[], tuple[bool, float]]] = {}
        if self.built is not None:
            files = [p for p in self.built.plugins if isinstance(p, FilePlugin)]
            if files:
                statuses["zonefile"] = lambda: _worst([f.zones.status() for f in files])
        if self._manifests_status is not None:
            statuses["manifests"] = self._manifests_status
        return statuses

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None

    # ---- reload ------------------------------------------------------------------------

    def _on_reload_signal(self) -> None:
        if self.settings.corefile is None:
            log.info("reload signal: no Corefile in use (flags), nothing to reload")
            return
        for pid in self.workers.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        self._reload.set()

    async def _reloads(self) -> None:
        """Reload on a signal, and when `reload` is configured, when the file changes."""
        while True:
            reload_config = (
                _first(self.config, "reload", ReloadConfig) if self.config is not None else None
            )
            wait = None
            if reload_config is not None and self.settings.corefile is not None:
                wait = reload_config.interval + random.uniform(
                    -reload_config.jitter, reload_config.jitter
                )
                wait = max(1.0, wait)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._reload.wait()
            self._reload.clear()
            if self.settings.corefile is not None:
                await self.reload()

    async def reload(self) -> bool:
        """Read the Corefile again and swap it in if it changed and works; True if swapped."""
        from kdns.config.corefile import CorefileError, load_corefile

        path = self.settings.corefile
        assert path is not None
        assert self.config is not None
        try:
            config = load_corefile(path, dns_port=self.settings.dns_addr.port)
        except (CorefileError, OSError) as exc:
            return self._reload_failed(str(exc))
        if config.digest == self.config.digest:
            return False
        try:
            plan = source_plan(self.settings, config)
        except PlanError as exc:
            return self._reload_failed(str(exc))
        if plan != self.plan:
            return self._reload_failed(
                f"{path}: the kubernetes data source changed (kubeconfig, endpoint, pods "
                "verified, labels, namespace_labels, noendpoints or endpoint_pod_names); "
                "restart kdns to apply it"
            )
        try:
            self._check_static_loops(config)
            built = build(config, self._context(config))
        except (StartupError, BuildError) as exc:
            return self._reload_failed(str(exc))
        try:
            await self._swap(config, built)
        except StartupError as exc:
            await self._close_plugins(built.plugins)
            return self._reload_failed(str(exc))
        log.info("reload: %s is in service (sha512 %s...)", path, config.digest[:16])
        return True

    def _reload_failed(self, why: str) -> bool:
        self.reload_failures += 1
        self.stats.reload_failed += 1
        for line in why.splitlines():
            log.error("reload failed, keeping the running configuration: %s", line)
        return False

    async def _swap(self, config: Config, built: Built) -> None:
        opened: dict[HostPort, Listener] = {}
        try:
            for addr, blocks in built.listeners.items():
                if addr not in self.listeners:
                    opened[addr] = await self._listen(addr, blocks)
        except StartupError:
            for listener in opened.values():
                await listener.close()
            raise
        old_built, old_listeners = self.built, self.listeners
        self.listeners = {}
        for addr, blocks in built.listeners.items():
            listener = old_listeners.get(addr) or opened[addr]
            listener.server.set_blocks(blocks)
            self.listeners[addr] = listener
        self.config, self.built = config, built
        if self._tasks is not None:
            self._start_plugins(built)
        for addr, listener in old_listeners.items():
            if addr not in self.listeners:
                await listener.close()
        if old_built is not None:
            await self._close_plugins(old_built.plugins)
        if self.workers.number == 0:
            await self._stop_http()
            self.http = await self._start_http(config)

    # ---- workers and metrics -----------------------------------------------------------

    def _fold_rrl(self) -> None:
        rrl = self._rrl
        if rrl is not None:
            self.stats.rrl = {"sent": rrl.sent, "slipped": rrl.slipped, "dropped": rrl.dropped}

    async def _ship_stats(self, writer: Connection) -> None:
        """A worker's counts reach /metrics through worker 0, once a second."""
        while True:
            await asyncio.sleep(1.0)
            self.stats.flush()
            try:
                writer.send(snapshot(self.stats))
            except (BrokenPipeError, OSError):
                log.warning("worker 0 is gone; stopping this worker")
                self._stop.set()
                return


class _StopRequestedError(Exception):
    """Raised inside the task group to end it (cancels every job)."""


async def _guarded(job: Callable[[], Awaitable[None]], name: str) -> None:
    """A plugin's background job, restarted after an unexpected error (one log line each)
    instead of taking the whole task group, and so kdns, down with it."""
    while True:
        try:
            await job()
            return
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            log.error("plugin/%s: background job failed (%s); restarting in 1 s", name, why)
            await asyncio.sleep(1.0)


def _worst(statuses: list[tuple[bool, float]]) -> tuple[bool, float]:
    """Failing if any is; the oldest last success."""
    return any(f for f, _ in statuses), min(t for _, t in statuses)


def _bind_error(addr: HostPort, exc: OSError) -> str:
    return (
        f"DNS listener {addr}: cannot listen ({exc.strerror}); pick a free port, or run "
        "with CAP_NET_BIND_SERVICE for ports below 1024"
    )


def _receive_stats(reader: Connection, peers: dict[int, Stats], worker: int) -> None:
    try:
        snap = reader.recv()
    except (EOFError, OSError):
        asyncio.get_running_loop().remove_reader(reader.fileno())
        return
    if isinstance(snap, Stats):
        peers[worker] = snap


__all__ = ["App", "StartupError", "Workers", "run"]
