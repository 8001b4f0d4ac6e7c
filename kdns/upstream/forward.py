"""Forwarding of names outside the served zones to upstream resolvers (CoreDNS `forward`
+ `cache` + `loop`).

Owns: the UDP/TCP exchange with upstreams, failover and in-band health, the bounded cache
of upstream answers (RFC 2308 negative caching, TTL cap and floor), `max_concurrent`, and
the startup loop check. It relays upstream replies as bytes. Every byte-level step goes
through `kdns.dns.wire`: `decode_query` for the client's query, `reply_matches` (RFC 5452),
`decode_reply` for the cache decision (rcode, TC, TTLs, the SOA of a denial), `ttl_offsets`
and `rewrite_ttls` so a cache hit costs a copy and a few TTL writes, `with_question` for
the client's ID and 0x20 spelling, `truncate_for` for UDP limits, `build_query` for probes.

Choices, against CoreDNS:
- Policy `random` (CoreDNS's default for `forward`); upstreams marked down are skipped,
  and when all are down one is tried anyway, as CoreDNS does.
- The upstream query uses the client's protocol (CoreDNS's default, no `prefer_udp`); a UDP
  reply with TC set is retried over TCP at the same upstream (RFC 7766 §6.2.1).
- Every upstream query gets a fresh random ID (`secrets.SystemRandom`) and a fresh socket,
  so a fresh source port; UDP replies whose ID or question differ are ignored and the wait
  goes on until the per-try timeout (RFC 5452 §9); over TCP the connection carries only
  our query, so such a reply fails the try at once.
- Two caches like CoreDNS's (success, denial) of `cache_size` entries each; TTLs capped at
  `cache_max_ttl` and floored at `cache_min_ttl`; SERVFAIL kept `servfail_ttl` seconds.

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

from cachetools import TLRUCache

from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.dns.records import Question, Rcode, Reply, RType
from kdns.observe.stats import Stats
from kdns.upstream.resolvconf import upstreams_from_resolv_conf as upstreams_from_resolv_conf

logger = logging.getLogger(__name__)

_U16: Final = struct.Struct("!H")  # RFC 1035 §4.2.2: the TCP length prefix
_MAX_UPSTREAMS: Final = 15  # CoreDNS forward: at most 15 upstreams
_DEFAULT_NEGATIVE_TTL: Final = 5  # CoreDNS dnsutil.MinimalDefaultTTL: denial without SOA
_UDP_MIN: Final = 512  # RFC 1035 §4.2.1


def _udp_limit(query: wire.Query) -> int:
    """The client's UDP size: 512, or its EDNS payload when larger (RFC 6891 §6.2.5)."""
    return max(_UDP_MIN, query.edns.payload if query.edns is not None else 0)


def _error_reply(query: wire.Query, rcode: Rcode) -> bytes:
    """An empty REFUSED/SERVFAIL reply to `query`, RA set (we offer recursion)."""
    reply = Reply(rcode=rcode, authoritative=False)
    return wire.encode_reply(query, reply, max_size=_udp_limit(query), ra=True)


# --- the cache -----------------------------------------------------------------------

CacheKey = tuple[str, int, int, bool, bool]  # qname, qtype, qclass, DO, CD


@dataclass(frozen=True, slots=True)
class _Entry:
    reply: bytes  # as sent to the first client, TTLs already capped
    stored: float
    ttl: int  # how long the entry lives
    ttl_offsets: tuple[int, ...]  # where the records' TTLs sit in `reply`


class _Cache(TLRUCache[CacheKey, _Entry]):
    """A TLRU cache whose entries expire at their own TTL; counts capacity evictions."""

    def __init__(
        self, maxsize: int, *, kind: str, stats: Stats, timer: Callable[[], float]
    ) -> None:
        super().__init__(maxsize, ttu=lambda _k, v, now: now + v.ttl, timer=timer)
        self.kind = kind
        self.stats = stats

    def popitem(self) -> tuple[CacheKey, _Entry]:
        item = super().popitem()
        self.stats.count_cache_eviction(self.kind)
        return item


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
    max_concurrent: int = 1000
    cache_size: int = 9984
    cache_max_ttl: int = 30
    cache_min_ttl: int = 5
    servfail_ttl: int = 5
    timeout_seconds: float = 2.0  # CoreDNS forward read timeout
    max_fails: int = 2  # CoreDNS forward max_fails
    health_interval_seconds: float = 0.5  # CoreDNS forward health_check
    health_timeout_seconds: float = 1.0  # CoreDNS health check read timeout
    random_order: bool = True  # policy random; False = sequential
    clock: Callable[[], float] = time.monotonic
    loop_detector: LoopDetector = field(default_factory=lambda: LoopDetector())
    _rng: secrets.SystemRandom = field(default_factory=secrets.SystemRandom, init=False)
    _ups: list[_Upstream] = field(default_factory=list, init=False)
    _inflight: int = field(default=0, init=False)
    _success: _Cache = field(init=False)
    _denial: _Cache = field(init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if len(self.upstreams) > _MAX_UPSTREAMS:
            raise ValueError(f"at most {_MAX_UPSTREAMS} upstreams, got {len(self.upstreams)}")
        self._ups = [_Upstream(u, _family(u.host)) for u in self.upstreams]
        size = max(1, self.cache_size)
        self._success = _Cache(size, kind="success", stats=self.stats, timer=self.clock)
        self._denial = _Cache(size, kind="denial", stats=self.stats, timer=self.clock)
        self.stats.flushers.append(self._flush_stats)

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

    async def forward(self, query: bytes, *, question: Question, tcp: bool) -> bytes | None:
        """The upstream reply to `query` with the client's ID, from cache when fresh.

        None when every tried upstream failed (the handler answers SERVFAIL). REFUSED when
        `max_concurrent` upstream queries are already in flight.
        """
        try:
            parsed = wire.decode_query(query)
        except wire.QueryError as exc:
            logger.debug("not forwarding a query for %s: %s", question.qname, exc)
            return None
        lname = parsed.question.lname
        if lname == self.loop_detector.qname:
            # Our own loop probe came back through an upstream (CoreDNS `loop`): count it,
            # never cache it, and stop the loop once it is proven.
            if self.loop_detector.seen(lname):
                return _error_reply(parsed, Rcode.SERVFAIL)
            return await self._exchange_any(query, parsed, tcp=tcp)
        edns = parsed.edns
        key: CacheKey = (lname, parsed.question.qtype, parsed.qclass, bool(edns and edns.do),
                         parsed.cd)  # fmt: skip
        cached = self._from_cache(key, parsed)
        if cached is not None:
            return self._fit(parsed, cached, tcp=tcp)
        self.stats.count_cache_miss()
        if self._inflight >= self.max_concurrent:
            self.stats.count_max_concurrent_reject()
            return _error_reply(parsed, Rcode.REFUSED)
        self._inflight += 1
        try:
            reply = await self._exchange_any(query, parsed, tcp=tcp)
        finally:
            self._inflight -= 1
        if reply is None:
            return None
        return self._fit(parsed, wire.with_id(self._to_cache(key, reply), parsed.id), tcp=tcp)

    @staticmethod
    def _fit(query: wire.Query, reply: bytes, *, tcp: bool) -> bytes:
        """Over UDP, a reply bigger than the client allows becomes an empty TC=1 reply so the
        client retries over TCP (RFC 7766 §5): the upstream answered over TCP after
        truncating, or the cached answer came from a TCP exchange."""
        return reply if tcp else wire.truncate_for(query, reply, max_size=_udp_limit(query))

    # - cache -

    def _from_cache(self, key: CacheKey, query: wire.Query) -> bytes | None:
        for cache in (self._success, self._denial):
            entry = cache.get(key)
            if entry is None:
                continue
            elapsed = int(self.clock() - entry.stored)
            try:
                # RFC 1035 §4.1.3: the TTLs count down; the client's ID and its spelling
                # of the question (0x20, RFC 4343 §4.1).
                aged = wire.rewrite_ttls(entry.reply, elapsed, offsets=entry.ttl_offsets)
                out = wire.with_question(aged, query)
            except wire.FormatError:
                return None  # cannot happen for a stored reply; then ask upstream
            self.stats.count_cache_hit(cache.kind)
            return out
        return None

    def _to_cache(self, key: CacheKey, reply: bytes) -> bytes:
        """Keep `reply` if cacheable; returns it with TTLs capped as they will be served."""
        try:
            decoded = wire.decode_reply(reply)
            offsets = wire.ttl_offsets(reply)
        except wire.FormatError as exc:
            logger.debug("not caching an unparsable upstream reply for %s: %s", key[0], exc)
            return reply
        rcode = decoded.rcode
        if decoded.truncated:
            return reply
        if rcode == Rcode.NOERROR and decoded.answer_count:
            # CoreDNS cache: the smallest TTL of every record (answer, authority, additional).
            cache, ttl = self._success, decoded.record_min_ttl or 0
            ttl = max(self.cache_min_ttl, min(ttl, self.cache_max_ttl))
        elif rcode in (Rcode.NOERROR, Rcode.NXDOMAIN):
            # RFC 2308 §5: a denial lives min(SOA TTL, SOA MINIMUM); capped like CoreDNS.
            neg = decoded.soa_negative_ttl
            ttl = neg if neg is not None else _DEFAULT_NEGATIVE_TTL
            cache, ttl = self._denial, max(self.cache_min_ttl, min(ttl, self.cache_max_ttl))
        elif rcode == Rcode.SERVFAIL:
            cache, ttl = self._denial, self.servfail_ttl  # RFC 2308 §7.1: at most 5 minutes
        else:
            return reply
        capped = wire.rewrite_ttls(reply, 0, cap=ttl, offsets=offsets)
        if ttl > 0 and cache.maxsize > 0:
            cache[key] = _Entry(capped, self.clock(), ttl, offsets)
        return capped

    def _flush_stats(self) -> None:
        self._success.expire()
        self._denial.expire()
        for cache in (self._success, self._denial):
            self.stats.set_cache_entries(cache.kind, len(cache))

    # - exchanges -

    def _order(self) -> list[_Upstream]:
        healthy = [up for up in self._ups if not up.down]
        if not healthy:
            # CoreDNS: when every upstream is down, try a random one anyway.
            return [self._rng.choice(self._ups)] if self._ups else []
        if self.random_order:
            self._rng.shuffle(healthy)
        return healthy

    async def _exchange_any(self, query: bytes, parsed: wire.Query, *, tcp: bool) -> bytes | None:
        for up in self._order():
            started = self.clock()
            try:
                reply = await self._exchange(up, query, parsed, tcp=tcp)
            except UpstreamError as exc:
                self._failed(up, exc)
                continue
            up.fails = 0
            self._observe(up, reply, self.clock() - started)
            return reply
        question = parsed.question
        logger.warning("no upstream answered %s type %s", question.qname, question.qtype)
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
        logger.info("upstream %s failed (%s in a row): %s", up.label, up.fails, exc)
        if up.fails >= self.max_fails and not up.down and not self._closed:
            up.down = True
            logger.warning("upstream %s marked down after %s failures", up.label, up.fails)
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

    async def probe(self, addr: HostPort, qname: str, qtype: int) -> bytes | None:
        """Ask one upstream directly (no cache, no failover); None when it does not answer."""
        up = next((u for u in self._ups if u.addr == addr), None) or _Upstream(
            addr, _family(addr.host)
        )
        query = wire.build_query(qname, qtype, qid=0, edns_payload=None)
        try:
            return await self._udp(up, query, wire.decode_query(query))
        except UpstreamError:
            return None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --- loop protection (CoreDNS `loop`) ------------------------------------------------


class LoopError(RuntimeError):
    """Forwarding would send queries back to kdns itself; kdns must not start."""


@dataclass(slots=True)
class LoopDetector:
    """The name of this process's loop probe, and how often kdns itself received it.

    `Forwarder.forward` calls `seen(lname)` for the probe name (every forwarded query passes
    through it, so the handler needs no hook); True means a loop is proven and the query is
    answered SERVFAIL instead of being forwarded again.
    """

    qname: str = field(
        default_factory=lambda: (
            f"{secrets.randbits(63)}.{secrets.randbits(63)}.kdns-loop-check.invalid."
        )
    )
    received: int = 0
    threshold: int = 2  # CoreDNS loop: seen more than twice -> a loop

    @property
    def looped(self) -> bool:
        return self.received > self.threshold

    def seen(self, lname: str) -> bool:
        if lname != self.qname:
            return False
        self.received += 1
        return self.looped


_ANY_HOSTS: Final = {"": (4, 6), "0.0.0.0": (4,), "::": (4, 6)}


def _is_local(host: str) -> bool:
    """True if `host` is an address of this machine: loopback, or one we can bind to."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))  # binding sends nothing; it only asks the kernel
        except OSError:
            return False
    return True


def check_self_forwarding(upstreams: Sequence[HostPort], listen: HostPort) -> None:
    """Raise LoopError if an upstream is kdns's own listening address and port."""
    for up in upstreams:
        if up.port != listen.port:
            continue
        families = _ANY_HOSTS.get(listen.host)
        if families is None:
            same = _same_ip(up.host, listen.host)
        else:
            same = (6 if ":" in up.host else 4) in families and _is_local(up.host)
        if same:
            raise LoopError(
                f"upstream {up} is kdns's own listener {listen}: every forwarded query "
                "would come back here; set --upstream to a real resolver"
            )


def check_static_loop(upstreams: Sequence[HostPort], *, listen: HostPort) -> None:
    """The app's name for `check_self_forwarding`."""
    check_self_forwarding(upstreams, listen)


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


async def detect_loop(
    forwarder: Forwarder,
    *,
    listen: HostPort | None = None,
    tries: int = 3,
    handler: object = None,
    zone: str | None = None,
) -> None:
    """At start (kdns already listening): refuse a forwarding loop, like CoreDNS `loop`.

    With `listen`, first the static check. Then, through each loopback upstream only (never
    others), a `<rand>.<rand>.kdns-loop-check.invalid. HINFO` probe: if kdns itself receives
    it more than twice (its forwarder sees it), the upstream sends our queries back to us.
    The probe name is outside every served zone, so it is always forwarded; `handler` and
    `zone` are accepted for the app's call and not needed. Raises LoopError.
    """
    del handler, zone
    detector = forwarder.loop_detector
    if listen is not None:
        check_self_forwarding(forwarder.upstreams, listen)
    for addr in forwarder.upstreams:
        try:
            if not ipaddress.ip_address(addr.host.split("%", 1)[0]).is_loopback:
                continue
        except ValueError:
            continue
        for _ in range(tries):
            reply = await forwarder.probe(addr, detector.qname, RType.HINFO)
            if detector.looped:
                break
            if reply is not None:
                break  # answered without coming back through kdns: no loop here
        if detector.looped:
            raise LoopError(
                f"forwarding loop: the probe {detector.qname} sent to upstream {addr} came "
                f"back to kdns {detector.received} times; the upstream forwards to kdns "
                "(e.g. a node stub resolver at 127.0.0.53); set --upstream explicitly"
            )
