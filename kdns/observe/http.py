"""The HTTP side of kdns: `/health`, `/ready` and `/metrics`, on CoreDNS's ports 8080, 8181 and
9153 (docs/operations.md#probes), and `/debug/explain` (on 127.0.0.1:9154 by default), as
small asyncio HTTP/1.1 servers (no aiohttp: its import costs ~9 MB RSS, against the memory
targets of docs/benchmarking.md#targets).

Owns the endpoints and their status codes. Addresses that coincide share one server, which then
serves each of their paths; any other path is 404. Must not expose anything sensitive: bodies
are "OK", the names of what is not ready, or Prometheus text; no Server header is sent, no
access log is written (probes come every few seconds), and nothing here reads credentials.
The one exception is `/debug/explain`, which shows cluster data (Services, endpoints, pods,
as DNS itself does) and is therefore served on loopback unless `--debug-addr` says otherwise;
it is optional: an address in use is skipped with a warning instead of stopping start-up.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import parse_qs

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from kdns.config.settings import HostPort
from kdns.observe.stats import Histogram

logger = logging.getLogger(__name__)

HEALTH_PATH = "/health"
SELF_CHECK_SECONDS = 1.0  # CoreDNS health: the self-check runs every second
READY_PATH = "/ready"
METRICS_PATH = "/metrics"
DEBUG_EXPLAIN_PATH = "/debug/explain"

MAX_HEAD_BYTES = 8192
"""Request line plus headers; a longer head is 431 and the connection is closed."""
READ_TIMEOUT_SECONDS = 10.0
"""A request head must arrive within this (also the keep-alive idle timeout), so a slow or
silent client cannot pin a connection."""
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_CONNECTIONS = 64
"""Per server; beyond it a new connection is closed at once (probes and a scraper need few)."""
TEXT_PLAIN = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

ReadyResult = bool | str | tuple[bool, str] | Sequence[str]
"""What a ready check returns: True, "" or [] = ready; False = not ready (no reason given);
(ok, reason) = ready when ok, else not ready because of `reason`; a non-empty string or
sequence of strings = not ready, naming what (e.g. "kubernetes: not synced", "lameduck")."""

ReadyCheck = Callable[[], ReadyResult]

Route = Callable[[Mapping[str, str]], tuple[int, str, bytes]]
"""Request headers (lower-case names) -> (status, content type, body)."""

QueryRoute = Callable[[Mapping[str, str]], Awaitable[tuple[int, str, bytes]]]
"""The query string's parameters (the first value of each) -> (status, content type, body)."""
MAX_QUERY_FIELDS = 16


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
        health: HostPort | None,
        ready: HostPort | None,
        metrics: HostPort | None,
        is_ready: ReadyCheck,
        registry: CollectorRegistry,
        health_times: Histogram | None = None,
        is_healthy: Callable[[], str | None] = lambda: None,
        debug: HostPort | None = None,
        explain: QueryRoute | None = None,
    ) -> None:
        """`health`, `ready`, `metrics`: where each path is served (None: not served, as
        when the Corefile has no such plugin). `is_ready`: called on each GET /ready.
        `is_healthy`: None while alive, else why not (/health answers 503 with it).
        `health_times`: where the self-check observes /health round trips (the histogram
        given to `build_registry(health=...)`); None = no self-check. `debug`: where
        `/debug/explain` is served by `explain` (both needed)."""
        self._ready = is_ready
        self._explain = explain
        self._healthy = is_healthy
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
            (debug if explain is not None else None, DEBUG_EXPLAIN_PATH),
        ):
            if addr is None:
                continue
            if addr.port and addr in shared:
                shared[addr].append(path)
                continue
            paths = [path]
            shared[addr] = paths
            self._servers.append((addr, paths))
        self._listeners: list[_Listener] = []
        self._bound: dict[str, HostPort] = {}
        self._self_check: asyncio.Task[None] | None = None
        # /ready says 503 until every address is bound: the servers start one after the
        # other, and a probe that saw 200 may go straight to /metrics.
        self._started = False

    @property
    def addresses(self) -> Mapping[str, HostPort]:
        """Path -> the address it is served on (the bound port when 0 was asked); empty
        before `start()`."""
        return dict(self._bound)

    async def start(self) -> None:
        """Bind and serve every address; on a failure, close what was started and raise."""
        try:
            for addr, paths in self._servers:
                if paths == [DEBUG_EXPLAIN_PATH]:
                    await self._start_optional(addr, paths)
                else:
                    await self._start_one(addr, paths)
        except BaseException:
            await self.stop()
            raise
        self._started = True
        if self._health is not None and HEALTH_PATH in self._bound:
            self._self_check = asyncio.create_task(
                self._run_self_check(self._health), name="kdns-health-self-check"
            )

    async def stop(self) -> None:
        """Close every server and its open connections (idempotent)."""
        self._started = False
        task, self._self_check = self._self_check, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            await listener.close()
        self._bound.clear()

    async def _start_optional(self, addr: HostPort, paths: Sequence[str]) -> None:
        """A debugging aid never stops start-up: a second kdns on the same host, or anything
        else on its port, costs only the endpoint."""
        try:
            await self._start_one(addr, paths)
        except OSError as exc:
            logger.warning(
                "http: %s not served: cannot listen on %s (%s); pick a free --debug-addr, or none",
                ", ".join(paths),
                addr,
                exc.strerror or exc,
            )

    async def _start_one(self, addr: HostPort, paths: Sequence[str]) -> None:
        handlers: dict[str, Route] = {
            HEALTH_PATH: self._handle_health,
            READY_PATH: self._handle_ready,
            METRICS_PATH: self._handle_metrics,
        }
        query_routes: dict[str, QueryRoute] = {}
        if self._explain is not None and DEBUG_EXPLAIN_PATH in paths:
            query_routes[DEBUG_EXPLAIN_PATH] = self._explain
        listener = _Listener(
            {path: handlers[path] for path in paths if path in handlers}, query_routes
        )
        # host "" = all addresses: asyncio binds every family when host is None.
        await listener.start(addr.host or None, addr.port)
        self._listeners.append(listener)
        bound = HostPort(addr.host, listener.port or addr.port)
        for path in paths:
            self._bound[path] = bound
        logger.info("http: serving %s on %s", ", ".join(paths), bound)

    async def _run_self_check(self, health: Histogram) -> None:
        """GET our own /health every second and observe how long it took (never returns)."""
        bound = self._bound[HEALTH_PATH]
        host = _loopback_host(bound.host)
        while True:
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(
                    _get_status(host, bound.port, HEALTH_PATH), SELF_CHECK_SECONDS
                )
                if status == 200:
                    health.observe(time.perf_counter() - started)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                logger.warning("http: health self-check of %s:%s failed: %r", host, bound.port, exc)
            await asyncio.sleep(SELF_CHECK_SECONDS)

    def _handle_health(self, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        why = self._healthy()
        if why:
            return 503, TEXT_PLAIN, (why + "\n").encode()
        return 200, TEXT_PLAIN, b"OK"

    def _handle_ready(self, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        if not self._started:
            return 503, TEXT_PLAIN, b"starting: HTTP listeners not all bound yet\n"
        try:
            reasons = not_ready_reasons(self._ready())
        except Exception as exc:  # a broken check must read as not ready, not as a 500
            logger.warning("http: ready check raised %r; answering 503", exc)
            reasons = ["ready check failed"]
        if not reasons:
            return 200, TEXT_PLAIN, b"OK"
        return 503, TEXT_PLAIN, ("\n".join(reasons) + "\n").encode()

    def _handle_metrics(self, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return 200, content_type, encoder(self._registry)


class _Listener:
    """One listening address: HTTP/1.1 GET/HEAD over asyncio streams (RFC 9112)."""

    def __init__(
        self, routes: Mapping[str, Route], query_routes: Mapping[str, QueryRoute] | None = None
    ) -> None:
        self._routes = routes
        self._query_routes = query_routes or {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, host: str | None, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        for sock in self._server.sockets:
            self.port = int(sock.getsockname()[1])
            break

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if not await self._one_request(reader, writer):
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
        except TimeoutError:
            return False  # idle keep-alive or a slow client: just close
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, TEXT_PLAIN, b"request head too large\n", keep=False)
            return False
        except asyncio.IncompleteReadError:
            return False  # closed between requests
        request = _parse_head(head)
        if request is None:
            await _respond(writer, 400, TEXT_PLAIN, b"bad request\n", keep=False)
            return False
        method, target, version, headers = request
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if "content-length" in headers or "transfer-encoding" in headers:
            keep = False  # a body we do not read: never parse it as the next request
        if method not in ("GET", "HEAD"):
            await _respond(
                writer, 405, TEXT_PLAIN, b"method not allowed\n", keep=keep, allow="GET, HEAD"
            )
            return keep
        path, _, query = target.partition("?")
        handler = self._routes.get(path)
        query_handler = self._query_routes.get(path)
        if handler is not None:
            status, content_type, body = handler(headers)
        elif query_handler is not None:
            params = _query_params(query)
            if params is None:
                status, content_type, body = 400, TEXT_PLAIN, b"bad query string\n"
            else:
                status, content_type, body = await query_handler(params)
        else:
            status, content_type, body = 404, TEXT_PLAIN, b"404: Not Found\n"
        await _respond(writer, status, content_type, body, keep=keep, head=method == "HEAD")
        return keep


def _query_params(query: str) -> dict[str, str] | None:
    """The first value of each parameter of a query string; None when it is malformed or
    has more than MAX_QUERY_FIELDS fields."""
    try:
        parsed = parse_qs(query, strict_parsing=bool(query), max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        return None
    return {key: values[0] for key, values in parsed.items()}


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    """(method, target, version, headers with lower-case names), or None if malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None  # RFC 9112 §5.1: no whitespace between the name and the colon
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    *,
    keep: bool,
    head: bool = False,
    allow: str = "",
) -> None:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep else 'close'}",
    ]
    if allow:
        lines.append(f"Allow: {allow}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(body)
    await writer.drain()


async def _get_status(host: str, port: int, path: str) -> int:
    """GET `path` once over a fresh connection; the response status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: kdns\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest, until the server closes
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"bad status line {status_line[:80]!r}")
        return int(parts[1])
    finally:
        writer.close()


def _loopback_host(host: str) -> str:
    """Return where the self-check reaches a server bound on `host` (wildcards via loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
