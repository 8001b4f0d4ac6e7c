"""The client side of forwarding: exchanges with upstream resolvers (for `forward`).

Owns the UDP/TCP exchange with upstreams, failover, in-band health and `max_concurrent`.
It relays upstream replies as bytes; every byte-level step goes through `kdns.dns.wire`
(`reply_matches` for RFC 5452 checks, `with_id`, `truncate_for`, `build_query` for health
probes). Caching is the `cache` plugin's (`kdns.plugins.cache`), loop detection the `loop`
plugin's (`kdns.plugins.loop`); the static self-forwarding check stays here.

Choices, against CoreDNS:
- Policy `random` (CoreDNS's default for `forward`); upstreams marked down are skipped,
  and when all are down one is tried anyway, as CoreDNS does.
- The upstream query uses the client's protocol (CoreDNS's default, no `prefer_udp`); a UDP
  reply with TC set is retried over TCP at the same upstream (RFC 7766 §6.2.1).
- Every upstream query gets a fresh random ID (`secrets.SystemRandom`) and a fresh socket,
  so a fresh source port; UDP replies whose ID or question differ are ignored and the wait
  goes on until the per-try timeout (RFC 5452 §9); over TCP the connection carries only
  our query, so such a reply fails the try at once.

Must not: answer cluster names, parse or build DNS bytes itself, import dnslib or the
answer logic, or send anywhere but the configured upstreams.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.dns.records import Rcode, Reply, RType
from kdns.observe.stats import Stats

logger = logging.getLogger(__name__)

_U16: Final = struct.Struct("!H")  # RFC 1035 §4.2.2: the TCP length prefix
_MAX_UPSTREAMS: Final = 15  # CoreDNS forward: at most 15 upstreams
_UDP_MIN: Final = 512  # RFC 1035 §4.2.1


def _udp_limit(query: wire.Query) -> int:
    """The client's UDP size: 512, or its EDNS payload when larger (RFC 6891 §6.2.5)."""
    return max(_UDP_MIN, query.edns.payload if query.edns is not None else 0)


def _error_reply(query: wire.Query, rcode: Rcode) -> bytes:
    """An empty REFUSED/SERVFAIL reply to `query`, RA set (we offer recursion)."""
    reply = Reply(rcode=rcode, authoritative=False)
    return wire.encode_reply(query, reply, max_size=_udp_limit(query), ra=True)


# --- upstreams -----------------------------------------------------------------------


@dataclass(slots=True)
class _Upstream:
    addr: HostPort
    family: socket.AddressFamily
    fails: int = 0
    down: bool = False
    probe: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return str(self.addr)


class UpstreamError(Exception):
    """One exchange with one upstream failed (timeout, refused, reset, garbage)."""


@dataclass(slots=True)
class Forwarder:
    """Implements `Upstream` for the handler: `forward(query, question=, tcp=)`."""

    upstreams: Sequence[HostPort]
    stats: Stats = field(default_factory=Stats)
    max_concurrent: int = 0  # 0 = no limit (CoreDNS's default)
    timeout_seconds: float = 2.0  # CoreDNS forward read timeout
    max_fails: int = 2  # CoreDNS forward max_fails
    health_interval_seconds: float = 0.5  # CoreDNS forward health_check
    health_timeout_seconds: float = 1.0  # CoreDNS health check read timeout
    random_order: bool = True  # policy random; False = sequential
    clock: Callable[[], float] = time.monotonic
    _rng: secrets.SystemRandom = field(default_factory=secrets.SystemRandom, init=False)
    _ups: list[_Upstream] = field(default_factory=list, init=False)
    _inflight: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if len(self.upstreams) > _MAX_UPSTREAMS:
            raise ValueError(f"at most {_MAX_UPSTREAMS} upstreams, got {len(self.upstreams)}")
        self._ups = [_Upstream(u, _family(u.host)) for u in self.upstreams]

    async def start(self) -> None:
        for up in self._ups:
            logger.info("forwarding to upstream %s", up.label)

    async def close(self) -> None:
        self._closed = True
        tasks = [up.probe for up in self._ups if up.probe is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for up in self._ups:
            up.probe = None

    async def forward(
        self, query: bytes, parsed: wire.Query, *, tcp: bool, via: list[str] | None = None
    ) -> bytes | None:
        """The upstream reply to `query` (decoded as `parsed`) with the client's ID.

        None when every tried upstream failed (the caller answers SERVFAIL). REFUSED when
        `max_concurrent` upstream queries are already in flight. The reply is whole: the
        server fits it to the client's size limit (an upstream may have answered over TCP).
        `via`, when given, receives the address of the upstream that answered.
        """
        if self.max_concurrent and self._inflight >= self.max_concurrent:
            self.stats.count_max_concurrent_reject()
            return _error_reply(parsed, Rcode.REFUSED)
        self._inflight += 1
        try:
            reply = await self._exchange_any(query, parsed, tcp=tcp, via=via)
        finally:
            self._inflight -= 1
        if reply is None:
            return None
        return wire.with_id(reply, parsed.id)

    # - exchanges -

    def _order(self) -> list[_Upstream]:
        healthy = [up for up in self._ups if not up.down]
        if not healthy:
            # CoreDNS: when every upstream is down, try a random one anyway.
            return [self._rng.choice(self._ups)] if self._ups else []
        if self.random_order:
            self._rng.shuffle(healthy)
        return healthy

    async def _exchange_any(
        self, query: bytes, parsed: wire.Query, *, tcp: bool, via: list[str] | None = None
    ) -> bytes | None:
        for up in self._order():
            started = self.clock()
            try:
                reply = await self._exchange(up, query, parsed, tcp=tcp)
            except UpstreamError as exc:
                self._failed(up, exc)
                continue
            up.fails = 0
            self._observe(up, reply, self.clock() - started)
            if via is not None:
                via.append(up.label)
            return reply
        # Not logged here: the SERVFAIL carries the reason to the `errors` plugin, which
        # consolidates repeats (one line per query would flood the log while it is down).
        return None

    def _observe(self, up: _Upstream, reply: bytes, seconds: float) -> None:
        self.stats.observe_proxy(up.label, wire.rcode_name(wire.header_rcode(reply)), seconds)

    async def _exchange(
        self, up: _Upstream, query: bytes, parsed: wire.Query, *, tcp: bool
    ) -> bytes:
        """One question to one upstream, UDP then TCP on TC, each with a fresh random ID."""
        if not tcp:
            reply = await self._udp(up, query, parsed)
            if not wire.truncated(reply):
                return reply
        return await self._tcp(up, query, parsed)

    def _fresh(self, query: bytes, parsed: wire.Query) -> tuple[bytes, wire.Query]:
        """The query to send, with an unpredictable ID (RFC 5452 §4.3), and what a matching
        reply must echo."""
        qid = self._rng.randrange(0x10000)
        return wire.with_id(query, qid), replace(parsed, id=qid)

    async def _udp(
        self,
        up: _Upstream,
        query: bytes,
        parsed: wire.Query,
        *,
        wait_seconds: float | None = None,
    ) -> bytes:
        timeout = self.timeout_seconds if wait_seconds is None else wait_seconds
        loop = asyncio.get_running_loop()
        sent, want = self._fresh(query, parsed)
        # A new socket per query: a fresh random source port (RFC 5452 §9.2).
        sock = socket.socket(up.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((up.addr.host, up.addr.port))
            sock.send(sent)
            async with asyncio.timeout(timeout):
                while True:
                    data = await loop.sock_recv(sock, 65535)
                    if wire.reply_matches(want, data):
                        return data
                    # RFC 5452 §9.1: a reply to another question, a spoof or garbage: keep
                    # waiting.
                    logger.debug("ignored a mismatched reply from %s for %s", up.label,
                                 parsed.question.qname)  # fmt: skip
        except TimeoutError:
            raise UpstreamError(f"no UDP reply in {timeout}s") from None
        except OSError as exc:
            raise UpstreamError(f"UDP: {exc}") from None
        finally:
            sock.close()

    async def _tcp(self, up: _Upstream, query: bytes, parsed: wire.Query) -> bytes:
        sent, want = self._fresh(query, parsed)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                reader, writer = await asyncio.open_connection(up.addr.host, up.addr.port)
                writer.write(_U16.pack(len(sent)) + sent)  # RFC 1035 §4.2.2 framing
                await writer.drain()
                (length,) = _U16.unpack(await reader.readexactly(2))
                data = await reader.readexactly(length)
        except TimeoutError:
            raise UpstreamError(f"no TCP reply in {self.timeout_seconds}s") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"TCP: {exc!r}") from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        # The connection carried only our query (RFC 7766 §7): anything else is a failure.
        if not wire.reply_matches(want, data):
            raise UpstreamError("TCP: the reply does not match the query (RFC 5452 §9.1)")
        return data

    # - health -

    def _failed(self, up: _Upstream, exc: UpstreamError) -> None:
        up.fails += 1
        logger.debug("upstream %s failed (%s in a row): %s", up.label, up.fails, exc)
        if up.fails >= self.max_fails and not up.down and not self._closed:
            up.down = True
            logger.warning(
                "upstream %s marked down after %s failures in a row (last: %s); probing it",
                up.label,
                up.fails,
                exc,
            )
            up.probe = asyncio.get_running_loop().create_task(
                self._probe_until_up(up), name=f"kdns-health-{up.label}"
            )

    async def _probe_until_up(self, up: _Upstream) -> None:
        """CoreDNS in-band health: `. IN NS` every interval while down; up once answered."""
        while True:
            await asyncio.sleep(self.health_interval_seconds)
            query = wire.build_query(".", RType.NS, qid=0, edns_payload=None)
            parsed = wire.decode_query(query)
            try:
                await self._udp(up, query, parsed, wait_seconds=self.health_timeout_seconds)
            except UpstreamError as exc:
                self.stats.count_healthcheck_failure(up.label)
                logger.debug("health check of %s failed: %s", up.label, exc)
                continue
            up.down = False
            up.fails = 0
            up.probe = None
            logger.warning("upstream %s is up again", up.label)
            return


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --- loop protection (CoreDNS `loop`) ------------------------------------------------


class LoopError(RuntimeError):
    """Forwarding would send queries back to kdns itself; kdns must not start."""


_ANY_HOSTS: Final = {"": (4, 6), "0.0.0.0": (4,), "::": (4, 6)}


def check_self_forwarding(upstreams: Sequence[HostPort], listen: HostPort) -> None:
    """Raise LoopError if an upstream is exactly kdns's own listening address and port.

    A wildcard listener (0.0.0.0, ::) is not judged here: another resolver may hold one
    address of the same port (both sockets use SO_REUSEADDR), so only the `loop` plugin's
    probe can tell whether queries come back."""
    if listen.host in _ANY_HOSTS:
        return
    for up in upstreams:
        if up.port == listen.port and _same_ip(up.host, listen.host):
            raise LoopError(
                f"upstream {up} is kdns's own listener {listen}: every forwarded query "
                "would come back here; forward to a real resolver"
            )


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b
