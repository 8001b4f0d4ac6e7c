"""/health, /ready and /metrics on real loopback sockets (CoreDNS `health`, `ready`
and `prometheus` behaviour, docs/operations.md#probes)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import kdns.observe.http as kdns_http
from kdns.config.settings import HostPort
from kdns.observe.http import HttpServers, ReadyResult, not_ready_reasons
from kdns.observe.metrics import HEALTH_BUCKETS, build_registry
from kdns.observe.stats import Histogram, Stats

ANY = HostPort("127.0.0.1", 0)
TIMEOUT = aiohttp.ClientTimeout(total=5)


class Flag:
    """A ready check the test flips."""

    def __init__(self) -> None:
        self.result: ReadyResult = (False, "kubernetes: not synced")

    def __call__(self) -> ReadyResult:
        return self.result


def make_servers(
    is_ready: Callable[[], ReadyResult],
    *,
    stats: Stats | None = None,
    health: HostPort = ANY,
    ready: HostPort = ANY,
    metrics: HostPort = ANY,
    health_times: Histogram | None = None,
) -> HttpServers:
    registry = build_registry(
        stats=stats or Stats(),
        server="dns://127.0.0.1:53",
        objects=lambda: {"services": 1},
        ready=lambda: not not_ready_reasons(is_ready()),
        health=health_times,
        process=False,
    )
    return HttpServers(
        health=health,
        ready=ready,
        metrics=metrics,
        is_ready=is_ready,
        registry=registry,
        health_times=health_times,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        yield s


def url(servers: HttpServers, path: str, *, via: str | None = None) -> str:
    addr = servers.addresses[via or path]
    return f"http://127.0.0.1:{addr.port}{path}"


async def get(session: aiohttp.ClientSession, address: str) -> tuple[int, str, str]:
    async with session.get(address) as response:
        return response.status, await response.text(), response.headers.get("Content-Type", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_is_200_ok(session: aiohttp.ClientSession) -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        assert await get(session, url(servers, "/health")) == (
            200,
            "OK",
            "text/plain; charset=utf-8",
        )
    finally:
        await servers.stop()


async def test_ready_is_503_naming_the_cause_then_200_when_the_check_flips(
    session: aiohttp.ClientSession,
) -> None:
    flag = Flag()
    servers = make_servers(flag)
    await servers.start()
    try:
        status, body, _ = await get(session, url(servers, "/ready"))
        assert (status, body.strip()) == (503, "kubernetes: not synced")
        flag.result = (True, "OK")
        status, body, _ = await get(session, url(servers, "/ready"))
        assert (status, body) == (200, "OK")
        # Lameduck (CoreDNS `ready` is not-OK then), while /health stays 200.
        flag.result = (False, "lameduck: shutting down")
        status, body, _ = await get(session, url(servers, "/ready"))
        assert (status, body.strip()) == (503, "lameduck: shutting down")
        status, _, _ = await get(session, url(servers, "/health"))
        assert status == 200
    finally:
        await servers.stop()


async def test_ready_is_503_until_every_listener_is_bound(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The servers bind one after the other (health, ready, metrics): a probe that got 200
    # from /ready may go straight to /metrics, so /ready waits for the last one.
    metrics_port = free_port()
    release = asyncio.Event()
    real_start = kdns_http._Listener.start

    async def slow_metrics(listener: kdns_http._Listener, host: str | None, port: int) -> None:
        if port == metrics_port:
            await release.wait()
        await real_start(listener, host, port)

    monkeypatch.setattr(kdns_http._Listener, "start", slow_metrics)
    ready_port = free_port()
    servers = make_servers(
        lambda: True,
        ready=HostPort("127.0.0.1", ready_port),
        metrics=HostPort("127.0.0.1", metrics_port),
    )
    starting = asyncio.create_task(servers.start())
    try:
        for _ in range(500):  # (until the ready server listens)
            try:
                status, body, _ = await get(session, f"http://127.0.0.1:{ready_port}/ready")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        assert (status, body.strip()) == (503, "starting: HTTP listeners not all bound yet")
        release.set()
        await starting
        assert await get(session, url(servers, "/ready")) == (
            200,
            "OK",
            "text/plain; charset=utf-8",
        )
        status, _, _ = await get(session, url(servers, "/metrics"))
        assert status == 200
    finally:
        release.set()
        await starting
        await servers.stop()


async def test_ready_check_that_raises_reads_as_503(session: aiohttp.ClientSession) -> None:
    def broken() -> ReadyResult:
        raise RuntimeError("boom")

    servers = make_servers(broken)
    await servers.start()
    try:
        status, _, _ = await get(session, url(servers, "/ready"))
        assert status == 503
    finally:
        await servers.stop()


async def test_metrics_is_prometheus_text_with_coredns_counters(
    session: aiohttp.ClientSession,
) -> None:
    stats = Stats()
    stats.count_request("cluster.local.", "udp", "1", "A", 40)
    servers = make_servers(Flag(), stats=stats)
    await servers.start()
    try:
        status, body, content_type = await get(session, url(servers, "/metrics"))
        assert status == 200
        # Prometheus text exposition format 0.0.4.
        assert content_type.startswith("text/plain")
        assert "version=0.0.4" in content_type
        samples = {s.name: s for f in text_string_to_metric_families(body) for s in f.samples}
        assert samples["coredns_dns_requests_total"].value == 1
        assert samples["coredns_dns_requests_total"].labels["type"] == "A"
        assert samples["kdns_ready"].value == 0
    finally:
        await servers.stop()


async def test_unknown_paths_and_paths_of_other_servers_are_404(
    session: aiohttp.ClientSession,
) -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        assert servers.addresses["/health"] != servers.addresses["/metrics"]
        status, _, _ = await get(session, url(servers, "/nope", via="/health"))
        assert status == 404
        # /metrics lives on its own port, not on the health port.
        status, _, _ = await get(session, url(servers, "/metrics", via="/health"))
        assert status == 404
    finally:
        await servers.stop()


async def test_coinciding_addresses_share_one_server(session: aiohttp.ClientSession) -> None:
    addr = HostPort("127.0.0.1", free_port())
    servers = make_servers(Flag(), health=addr, ready=addr, metrics=addr)
    await servers.start()
    try:
        assert set(servers.addresses.values()) == {addr}
        for path, want in (("/health", 200), ("/ready", 503), ("/metrics", 200)):
            status, _, _ = await get(session, f"http://127.0.0.1:{addr.port}{path}")
            assert status == want, path
    finally:
        await servers.stop()


async def test_responses_carry_no_server_header_or_secrets(
    session: aiohttp.ClientSession,
) -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        for path in ("/health", "/ready", "/metrics"):
            async with session.get(url(servers, path)) as response:
                body = await response.text()
                assert "Server" not in response.headers
                assert "token" not in body.lower()
                assert "kubeconfig" not in body.lower()
    finally:
        await servers.stop()


async def test_stop_closes_the_ports(session: aiohttp.ClientSession) -> None:
    servers = make_servers(Flag())
    await servers.start()
    address = url(servers, "/health")
    await servers.stop()
    await servers.stop()  # idempotent
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(session, address)


async def test_start_fails_cleanly_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        servers = make_servers(Flag(), metrics=HostPort("127.0.0.1", port))
        with pytest.raises(OSError, match=r"(?i)in use"):
            await servers.start()
        assert servers.addresses == {}


async def test_health_self_check_observes_round_trips() -> None:
    health_times = Histogram(HEALTH_BUCKETS)
    servers = make_servers(Flag(), health_times=health_times)
    await servers.start()
    try:
        # The first self-check runs at start; wait for it, bounded (500 x 10 ms).
        for _ in range(500):
            if health_times.n:
                break
            await asyncio.sleep(0.01)
        assert health_times.n >= 1
        assert health_times.total > 0
    finally:
        await servers.stop()


@pytest.mark.parametrize(
    ("result", "reasons"),
    [
        (True, []),
        (False, ["not ready"]),
        ("", []),
        ("lameduck", ["lameduck"]),
        ((True, "OK"), []),
        ((False, "kubernetes: not synced"), ["kubernetes: not synced"]),
        ([], []),
        (["kubernetes", "lameduck"], ["kubernetes", "lameduck"]),
    ],
)
def test_not_ready_reasons(result: ReadyResult, reasons: list[str]) -> None:
    assert not_ready_reasons(result) == reasons


# ---- the HTTP/1.1 server itself (RFC 9110/9112), over raw streams ----------------------


async def raw(servers: HttpServers, request: bytes, *, path: str = "/health") -> bytes:
    """Send `request` bytes and read until the server closes (bounded: 5 s)."""
    addr = servers.addresses[path]
    reader, writer = await asyncio.open_connection("127.0.0.1", addr.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_head_has_the_headers_of_get_and_no_body() -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        reply = await raw(servers, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nContent-Length: 2" in head  # RFC 9110 §9.3.2: as GET would send
        assert body == b""
    finally:
        await servers.stop()


async def test_other_methods_are_405_with_allow() -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        reply = await raw(servers, b"DELETE /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 405 ")
        assert b"\r\nAllow: GET, HEAD\r\n" in reply  # RFC 9110 §15.5.6: 405 lists Allow
    finally:
        await servers.stop()


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        # HTTP/1.1 connections persist by default (RFC 9112 §9.3); the last asks to close.
        two = b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
        reply = await raw(servers, two)
        assert reply.count(b"HTTP/1.1 200 OK\r\n") == 2
        assert reply.endswith(b"OK")
    finally:
        await servers.stop()


async def test_http10_closes_after_one_response() -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        reply = await raw(servers, b"GET /health HTTP/1.0\r\n\r\nGET /health HTTP/1.0\r\n\r\n")
        assert reply.count(b"HTTP/1.1 200 OK\r\n") == 1
    finally:
        await servers.stop()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/2.0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad : x\r\n\r\n",
    ],
)
async def test_malformed_requests_are_400_and_closed(request_bytes: bytes) -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        assert (await raw(servers, request_bytes)).startswith(b"HTTP/1.1 400 ")
    finally:
        await servers.stop()


async def test_an_oversized_head_is_431_and_closed() -> None:
    servers = make_servers(Flag())
    await servers.start()
    try:
        big = b"GET /health HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await raw(servers, big)).startswith(b"HTTP/1.1 431 ")
    finally:
        await servers.stop()


async def test_a_silent_client_is_dropped_after_the_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kdns_http, "READ_TIMEOUT_SECONDS", 0.2)
    servers = make_servers(Flag())
    await servers.start()
    try:
        # Half a request line, then nothing: the server closes without answering.
        assert await raw(servers, b"GET /hea") == b""
    finally:
        await servers.stop()


# ---- /debug/explain ----------------------------------------------------------------------


def debug_servers(
    debug: HostPort, seen: list[dict[str, str]], *, metrics: HostPort = ANY
) -> HttpServers:
    async def explain(params: Mapping[str, str]) -> tuple[int, str, bytes]:
        seen.append(dict(params))
        return 200, "application/json", b'{"ok": true}'

    return HttpServers(
        health=None,
        ready=None,
        metrics=metrics,
        is_ready=lambda: True,
        registry=build_registry(
            stats=Stats(), server="dns://127.0.0.1:53", objects=dict, ready=lambda: True
        ),
        debug=debug,
        explain=explain,
    )


async def test_debug_explain_gets_the_query_parameters(session: aiohttp.ClientSession) -> None:
    seen: list[dict[str, str]] = []
    servers = debug_servers(ANY, seen)
    await servers.start()
    try:
        base = url(servers, "/debug/explain")
        status, body, ctype = await get(session, base + "?name=web.shop.svc.cluster.local&type=A")
        assert (status, body, ctype) == (200, '{"ok": true}', "application/json")
        assert seen == [{"name": "web.shop.svc.cluster.local", "type": "A"}]
        status, _, _ = await get(session, base + "?name=a&" + "&".join(["x=1"] * 20))
        assert status == 400  # more fields than any explain needs
        assert len(seen) == 1
        # Not on the metrics listener: a separate server, as --debug-addr says.
        status, _, _ = await get(
            session, url(servers, "/metrics").replace("/metrics", "/debug/explain")
        )
        assert status == 404
    finally:
        await servers.stop()


async def test_a_debug_address_in_use_is_skipped_with_a_warning(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        servers = debug_servers(HostPort("127.0.0.1", port), [])
        await servers.start()  # does not raise: the other servers still start
        try:
            assert "/debug/explain" not in servers.addresses
            status, _, _ = await get(session, url(servers, "/metrics"))
            assert status == 200
            assert any(
                "/debug/explain not served" in r.getMessage() and "--debug-addr" in r.getMessage()
                for r in caplog.records
            )
        finally:
            await servers.stop()


async def test_debug_on_the_metrics_address_shares_its_server(
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    both = HostPort("127.0.0.1", port)
    servers = debug_servers(both, [], metrics=both)
    await servers.start()
    try:
        assert servers.addresses["/debug/explain"] == servers.addresses["/metrics"]
        status, _, _ = await get(session, f"http://127.0.0.1:{port}/debug/explain?name=x")
        assert status == 200
    finally:
        await servers.stop()
