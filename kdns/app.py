"""The only wiring: data source -> index -> handler -> UDP/TCP servers, plus HTTP and signals.

Start-up order: load or connect the data source, bind the DNS sockets (a Kubernetes source
answers SERVFAIL for misses until synced), start HTTP, then wait for SIGTERM/SIGINT:
lameduck (/ready 503 at once, DNS keeps answering for --lameduck seconds), then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection

from kdns.cluster.index import Index
from kdns.cluster.model import Event, Kind
from kdns.config.settings import HostPort, PodMode, Settings
from kdns.dns.answer import AnswerConfig
from kdns.handler import Handler
from kdns.observe.http import HttpServers
from kdns.observe.metrics import HEALTH_BUCKETS, build_registry, server_label
from kdns.observe.stats import Histogram, Stats, snapshot
from kdns.serve.rrl import RateLimiter
from kdns.serve.transport import TcpLimits, TcpServer, UdpServer, bind_tcp, bind_udp

log = logging.getLogger("kdns")


class StartupError(Exception):
    """Start-up cannot go on; the message is one line saying what and how to fix it."""


@dataclass(slots=True)
class AppState:
    """What /ready and the metrics read about the running process."""

    index: Index
    stats: Stats
    lameduck: bool = False
    source_name: str = "manifests"

    def ready(self) -> tuple[bool, str]:
        if self.lameduck:
            return False, "lameduck: shutting down"
        if not self.index.synced:
            return False, f"{self.source_name}: not synced"
        return True, "OK"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass(slots=True)
class Workers:
    """This process's place among `--workers` processes sharing the DNS port.

    Worker 0 serves HTTP and reads the others' stats snapshots from `readers`; every other
    worker ships its snapshot once a second through `writer`. Each worker runs its own data
    source and index (a watch per worker, like CoreDNS replicas): nothing is shared, so
    nothing needs locking, a crash stays in one worker, and the only cost is n times the
    API watch traffic."""

    number: int = 0
    readers: list[Connection] = field(default_factory=list)
    writer: Connection | None = None
    children: list[int] = field(default_factory=list)


def run(settings: Settings) -> int:
    """Run kdns until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(settings.log_level)
    workers = _fork_workers(settings.workers) if settings.workers > 1 else Workers()
    try:
        import uvloop

        runner: Callable[[Awaitable[int]], int] = uvloop.run  # type: ignore[assignment]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run  # type: ignore[assignment]
    try:
        return runner(serve(settings, workers=workers))
    except StartupError as exc:
        print(f"kdns: {exc}", file=sys.stderr)
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


def self_addresses(settings: Settings) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """Addresses for `ns.dns.<zone>` when no kube-system/kube-dns Service names them."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in os.environ.get("POD_IPS", os.environ.get("POD_IP", "")).split(","):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(text.strip()))
    if not found:
        host = settings.dns_addr.host
        with contextlib.suppress(ValueError):
            addr = ipaddress.ip_address(host)
            if not addr.is_unspecified:
                found.append(addr)
    if not found:
        found.append(ipaddress.IPv4Address("127.0.0.1"))
    return tuple(found)


def _required_kinds(settings: Settings) -> tuple[Kind, ...]:
    if settings.manifests:
        return (Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE, Kind.POD)
    kinds = [Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE]
    if settings.pods is PodMode.VERIFIED:
        kinds.append(Kind.POD)
    return tuple(kinds)


async def serve(settings: Settings, *, workers: Workers | None = None) -> int:
    workers = workers or Workers()
    worker = workers.number
    loop = asyncio.get_running_loop()
    stats = Stats()
    index = Index(required=_required_kinds(settings))
    state = AppState(index=index, stats=stats)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def apply(event: Event) -> object:
        return index.apply(event)

    background: list[Awaitable[None]] = []
    if settings.manifests:
        background.append(await _start_manifests(settings, apply, quiet=worker > 0))
    else:
        state.source_name = "kubernetes"
        background.append(_start_kube(settings, index, stats))

    zones = None
    if settings.zone_files:
        from kdns.zones.zonefile import ZoneError, ZoneSet, run_reload

        try:
            zones = ZoneSet.load(settings.zone_files)
        except ZoneError as exc:
            raise StartupError(str(exc)) from None
        background.append(run_reload(zones))

    upstream = None
    upstreams = settings.upstreams
    if upstreams is None:
        from kdns.upstream.forward import upstreams_from_resolv_conf

        upstreams = tuple(upstreams_from_resolv_conf("/etc/resolv.conf"))
        if not upstreams:
            log.warning("no nameserver in /etc/resolv.conf: names outside the zones get REFUSED")
    if upstreams:
        from kdns.upstream.forward import Forwarder, LoopError, check_static_loop

        try:
            check_static_loop(upstreams, listen=settings.dns_addr)
        except LoopError as exc:
            raise StartupError(str(exc)) from None
        upstream = Forwarder(
            upstreams,
            stats=stats,
            max_concurrent=settings.max_concurrent,
            cache_size=settings.cache_size,
            cache_max_ttl=settings.cache_max_ttl,
        )
        await upstream.start()

    config = AnswerConfig(
        zone=settings.zone,
        ttl=settings.ttl,
        pods=settings.pods,
        self_addresses=self_addresses(settings),
        cluster_networks=(*settings.service_cidrs, *settings.pod_cidrs),
    )
    handler = Handler(
        index=index, config=config, stats=stats, upstream=upstream, static_zones=zones
    )
    reuse = settings.workers > 1
    try:
        udp_sock = bind_udp(settings.dns_addr.host, settings.dns_addr.port, reuse_port=reuse)
        tcp_sock = bind_tcp(settings.dns_addr.host, udp_sock.getsockname()[1], reuse_port=reuse)
    except OSError as exc:
        raise StartupError(
            f"--dns-addr {settings.dns_addr}: cannot listen ({exc.strerror}); pick a free "
            "port, or run with CAP_NET_BIND_SERVICE for ports below 1024"
        ) from None
    rrl = None
    if settings.rrl_responses_per_second > 0:
        rrl = RateLimiter(settings.rrl_responses_per_second, slip=settings.rrl_slip)
        stats.flushers.append(lambda: _fold_rrl(rrl, stats))
    udp = UdpServer(udp_sock, handler, observe_batch=handler.observe_batch, rrl=rrl)
    limits = TcpLimits(  # a started message must also complete within the idle timeout
        idle_seconds=settings.tcp_idle_seconds,
        message_seconds=settings.tcp_idle_seconds,
        max_connections=settings.tcp_max_connections,
    )
    tcp = TcpServer(tcp_sock, handler, limits=limits)
    udp.start()
    await tcp.start()
    dns_port = udp.port
    log.info(
        "listening for DNS on %s (udp+tcp), zone %s, worker %d, pid %d",
        HostPort(settings.dns_addr.host, dns_port),
        settings.zone,
        worker,
        os.getpid(),
    )

    if upstream is not None and upstreams:
        from kdns.upstream.forward import LoopError, detect_loop

        try:
            await detect_loop(
                upstream,
                listen=HostPort(settings.dns_addr.host, dns_port),
                handler=handler,
                zone=settings.zone,
            )
        except LoopError as exc:
            raise StartupError(str(exc)) from None

    http: HttpServers | None = None
    peers: dict[int, Stats] = {}
    if worker == 0:
        for i, reader in enumerate(workers.readers, start=1):
            loop.add_reader(reader.fileno(), _receive_stats, reader, peers, i)
        http = await _start_http(settings, state, dns_port=dns_port, peers=peers)
    elif workers.writer is not None:
        background.append(_ship_stats(workers.writer, stats, stop))

    tasks = [asyncio.ensure_future(b) for b in background]
    for task in tasks:
        task.add_done_callback(_log_task_end)
    await stop.wait()
    for pid in workers.children:  # the workers lameduck alongside
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    state.lameduck = True
    log.info(
        "SIGTERM: lameduck for %.1f s (/ready is 503, DNS still answers)", settings.lameduck_seconds
    )
    if settings.lameduck_seconds > 0:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(settings.lameduck_seconds)
    log.info("shutting down")
    udp.close()
    await tcp.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if upstream is not None:
        await upstream.close()
    if http is not None:
        await http.stop()
    return 0


def _log_task_end(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task stopped: %s", exc, exc_info=exc)


async def _start_manifests(
    settings: Settings, apply: Callable[[Event], object], *, quiet: bool = False
) -> Awaitable[None]:
    from kdns.sources.manifests import ManifestError, events, load_manifests, run_manifests

    try:
        data = load_manifests(
            settings.manifests,
            service_cidrs=settings.service_cidrs,
            pod_cidrs=settings.pod_cidrs,
        )
    except ManifestError as exc:
        raise StartupError(str(exc)) from None
    for event in events(data):
        apply(event)
    for line in [] if quiet else data.summary_lines():
        log.info("%s", line)
    return run_manifests(
        settings.manifests,
        apply=apply,
        service_cidrs=settings.service_cidrs,
        pod_cidrs=settings.pod_cidrs,
        initial=data,
    )


def _start_kube(settings: Settings, index: Index, stats: Stats) -> Awaitable[None]:
    """Load credentials now (a bad kubeconfig stops start-up); the API itself may be away:
    the reflectors retry with backoff while misses are SERVFAIL and /ready is 503."""
    from kdns.sources.kube.auth import CredentialsError, load_credentials
    from kdns.sources.kube.source import run_kube_source

    try:
        credentials = load_credentials(
            kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster
        )
    except CredentialsError as exc:
        raise StartupError(str(exc)) from None
    log.info("data source: Kubernetes API at %s", credentials.host)
    return run_kube_source(
        credentials=credentials,
        apply=index.apply,
        pods_verified=settings.pods is PodMode.VERIFIED,
        stats=stats,
    )


def _fold_rrl(rrl: RateLimiter | None, stats: Stats) -> None:
    if rrl is not None:
        stats.rrl = {"sent": rrl.sent, "slipped": rrl.slipped, "dropped": rrl.dropped}


def _receive_stats(reader: Connection, peers: dict[int, Stats], worker: int) -> None:
    try:
        snap = reader.recv()
    except (EOFError, OSError):
        asyncio.get_running_loop().remove_reader(reader.fileno())
        return
    if isinstance(snap, Stats):
        peers[worker] = snap


async def _ship_stats(writer: Connection, stats: Stats, stop: asyncio.Event) -> None:
    """A worker's counts reach /metrics through worker 0, once a second."""
    while True:
        await asyncio.sleep(1.0)
        stats.flush()
        try:
            writer.send(snapshot(stats))
        except (BrokenPipeError, OSError):
            log.warning("worker 0 is gone; stopping this worker")
            stop.set()
            return


async def _start_http(
    settings: Settings, state: AppState, *, dns_port: int, peers: dict[int, Stats]
) -> HttpServers:
    health_times = Histogram(HEALTH_BUCKETS)
    registry = build_registry(
        stats=state.stats,
        server=server_label(HostPort(settings.dns_addr.host, dns_port)),
        objects=state.index.counts,
        ready=lambda: state.ready()[0],
        health=health_times,
        peers=lambda: list(peers.values()),
    )
    http = HttpServers(
        health=settings.health_addr,
        ready=settings.ready_addr,
        metrics=settings.metrics_addr,
        is_ready=state.ready,
        registry=registry,
        health_times=health_times,
    )
    try:
        await http.start()
    except OSError as exc:
        raise StartupError(
            f"HTTP listener: {exc.strerror}; pick free ports with --health-addr, "
            "--ready-addr and --metrics-addr"
        ) from None
    return http
