"""The HTTP side of kdns: `/health`, `/ready` and `/metrics`, on CoreDNS's ports 8080, 8181 and
9153 (coredns-behaviour.md §1), as aiohttp servers.

Owns the endpoints and their status codes. Addresses that coincide share one server, which then
serves each of their paths; any other path is 404. Must not expose anything sensitive: bodies
are "OK", the names of what is not ready, or Prometheus text; no Server header is sent, no
access log is written (probes come every few seconds), and nothing here reads credentials.
Must not import dnslib or the `kubernetes` package.

- `/health`: 200 "OK" while the process serves, including during lameduck (CoreDNS `health`:
  "/health will still answer 200 OK"). As CoreDNS does, a self-check GETs it once a second
  over loopback and observes the round trip into the histogram behind
  coredns_health_request_duration_seconds.
- `/ready`: 200 "OK" when the ready check passes, else 503 and one line per thing not ready
  (CoreDNS `ready`: 503 listing the plugins that are not ready; not-OK during lameduck).
- `/metrics`: the Prometheus exposition of the given registry, in the format the scraper asks
  for (text 0.0.4 or OpenMetrics). Collected on the event loop, so the hot path's plain dicts
  are never read from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import aiohttp
from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from kdns.settings import HostPort
from kdns.stats import Histogram

logger = logging.getLogger(__name__)

HEALTH_PATH = "/health"
SELF_CHECK_SECONDS = 1.0  # CoreDNS health: the self-check runs every second
READY_PATH = "/ready"
METRICS_PATH = "/metrics"

ReadyResult = bool | str | tuple[bool, str] | Sequence[str]
"""What a ready check returns: True, "" or [] = ready; False = not ready (no reason given);
(ok, reason) = ready when ok, else not ready because of `reason`; a non-empty string or
sequence of strings = not ready, naming what (e.g. "kubernetes: not synced", "lameduck")."""

ReadyCheck = Callable[[], ReadyResult]


def not_ready_reasons(result: ReadyResult) -> list[str]:
    """Return what is not ready, given a ready check's result; [] means ready."""
    if isinstance(result, bool):
        return [] if result else ["not ready"]
    if isinstance(result, str):
        return [result] if result else []
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        ok, reason = result
        return [] if ok else [str(reason) or "not ready"]
    return [str(reason) for reason in result]


class HttpServers:
    """The health, ready and metrics servers; equal addresses share one server.

    Port 0 binds a free port (one per path); after `start()`, `addresses` gives the bound
    address of each path.
    """

    def __init__(
        self,
        *,
        health: HostPort,
        ready: HostPort,
        metrics: HostPort,
        is_ready: ReadyCheck,
        registry: CollectorRegistry,
        health_times: Histogram | None = None,
    ) -> None:
        """`health`, `ready`, `metrics`: where each path is served. `is_ready`: called on each
        GET /ready. `health_times`: where the self-check observes /health round trips (the
        histogram given to `kdns.metrics.build_registry(health=...)`); None = no self-check."""
        self._ready = is_ready
        self._registry = registry
        self._health = health_times
        # One server per distinct address. Port 0 asks for a free port per path, so it is never
        # shared.
        self._servers: list[tuple[HostPort, list[str]]] = []
        shared: dict[HostPort, list[str]] = {}
        for addr, path in (
            (health, HEALTH_PATH),
            (ready, READY_PATH),
            (metrics, METRICS_PATH),
        ):
            if addr.port and addr in shared:
                shared[addr].append(path)
                continue
            paths = [path]
            shared[addr] = paths
            self._servers.append((addr, paths))
        self._runners: list[web.AppRunner] = []
        self._bound: dict[str, HostPort] = {}
        self._self_check: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> Mapping[str, HostPort]:
        """Path -> the address it is served on (the bound port when 0 was asked); empty
        before `start()`."""
        return dict(self._bound)

    async def start(self) -> None:
        """Bind and serve every address; on a failure, close what was started and raise."""
        try:
            for addr, paths in self._servers:
                await self._start_one(addr, paths)
        except BaseException:
            await self.stop()
            raise
        if self._health is not None:
            self._self_check = asyncio.create_task(
                self._run_self_check(self._health), name="kdns-health-self-check"
            )

    async def stop(self) -> None:
        """Close every server (idempotent)."""
        task, self._self_check = self._self_check, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        self._bound.clear()

    async def _start_one(self, addr: HostPort, paths: Sequence[str]) -> None:
        app = web.Application()
        handlers = {
            HEALTH_PATH: self._handle_health,
            READY_PATH: self._handle_ready,
            METRICS_PATH: self._handle_metrics,
        }
        for path in paths:
            app.router.add_get(path, handlers[path])
        app.on_response_prepare.append(_strip_server_header)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        # host "" = all addresses: aiohttp binds every family when host is None.
        site = web.TCPSite(runner, host=addr.host or None, port=addr.port)
        await site.start()
        port = _bound_port(runner, addr.port)
        bound = HostPort(addr.host, port)
        for path in paths:
            self._bound[path] = bound
        logger.info("http: serving %s on %s", ", ".join(paths), bound)

    async def _run_self_check(self, health: Histogram) -> None:
        """GET our own /health every second and observe how long it took (never returns)."""
        bound = self._bound[HEALTH_PATH]
        url = f"http://{_loopback_host(bound.host)}:{bound.port}{HEALTH_PATH}"
        timeout = aiohttp.ClientTimeout(total=SELF_CHECK_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status == 200:
                            health.observe(time.perf_counter() - started)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    logger.warning("http: health self-check of %s failed: %r", url, exc)
                await asyncio.sleep(SELF_CHECK_SECONDS)

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _handle_ready(self, request: web.Request) -> web.Response:
        try:
            reasons = not_ready_reasons(self._ready())
        except Exception as exc:  # a broken check must read as not ready, not as a 500
            logger.warning("http: ready check raised %r; answering 503", exc)
            reasons = ["ready check failed"]
        if not reasons:
            return web.Response(text="OK")
        return web.Response(status=503, text="\n".join(reasons) + "\n")

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._registry)
        response = web.Response(body=body)
        # Set the header whole: it carries parameters (version, charset) aiohttp would split.
        response.headers["Content-Type"] = content_type
        return response


async def _strip_server_header(request: web.Request, response: web.StreamResponse) -> None:
    # Issue 6: expose nothing that helps an attacker, such as library versions.
    response.headers.pop("Server", None)


def _loopback_host(host: str) -> str:
    """Return where the self-check reaches a server bound on `host` (wildcards via loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    """Return the port a site bound (asked, unless that was 0)."""
    if asked:
        return asked
    for sockname in runner.addresses:
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            return int(sockname[1])
    return asked
