"""The client side of forwarding: exchanges with upstream resolvers (for `forward`).

Owns the UDP, TCP and TLS exchanges with upstreams, the order they are tried in (policy),
failover, in-band health checks and `max_concurrent`. It relays upstream replies as bytes;
every byte-level step goes through `kdns.dns.wire` (`question_key`/`answers` for the
RFC 5452 checks, `with_id`, `build_query` for health probes). Caching is the `cache`
plugin's (`kdns.plugins.cache`), loop detection the `loop` plugin's
(`kdns.plugins.loop`); the static self-forwarding check stays here.

As CoreDNS's forward (defaults and meaning of every option are CoreDNS's):
- Policy `random` by default (`round_robin`, `sequential`). A query walks the list; an
  upstream that does not answer sends it to the next one, and the list is walked again from
  the start, up to 2 tries per upstream and 5 s in all. Upstreams that are down are skipped;
  when every one is down, one picked at random is tried anyway
  (coredns_forward_healthcheck_broken_total).
- A failed try starts a health check of that upstream (unless `max_fails 0`): `. IN NS`
  (or `health_check ... domain`), at once and then every `health_check` interval while it
  fails, over the upstream's own transport; it is down while more than `max_fails` checks
  in a row have failed, and up again at the first reply of any rcode.
- The upstream query uses the client's protocol, unless `force_tcp` (always TCP) or
  `prefer_udp` (always UDP first). A `tls://` upstream is always asked over TLS (RFC 7858)
  with its certificate verified against `tls`'s CA (else the system's) and the name from
  `tls://IP%NAME`, `tls_servername`, or else the IP address.
- kdns's choice: a UDP reply with TC set is asked again over TCP at the same upstream
  (RFC 7766 §6.2.1), so the cache gets the whole answer (CoreDNS does this only with
  `prefer_udp`).

How it is fast, and still safe (RFC 5452):
- Connections are reused for `expire` (default 10 s). Each UDP upstream has a few
  connected sockets, each on its own random source port from the kernel, read by an
  `add_reader` callback; a socket that has been in use for `expire` is replaced, so source
  ports keep changing. The queries of one loop turn go out on one of them together, with
  one sendmmsg (`kdns.net.mmsg.Outbox`); the next turn takes the next socket. Every
  query gets a fresh random ID (from `os.urandom`, drawn in batches), and a reply counts
  only if its ID, opcode and question match a query in flight on that socket: anything
  else is ignored and the wait goes on (§9.1). An ICMP error on a socket fails its
  queries at once (the upstream's port is closed).
- TCP and TLS connections carry several queries at once (RFC 7766 §6.2.1.1 pipelining),
  replies matched by ID and question; a reply that matches nothing in flight means the
  connection is broken: it is closed and its queries fail over. Idle connections close
  after `expire`; a reused connection the upstream had closed is retried once on a new one.
- Timeouts cost no timer per query: every try waits the same `read_timeout`, so tries are
  queued in deadline order and one timer at the head expires them.

Must not: answer cluster names, parse or build DNS bytes itself, import dnslib or the
answer logic, or send anywhere but the configured upstreams.
"""

from __future__ import annotations

import asyncio
import asyncio.protocols  # (mypyc: `_Stream`'s base is defined here)
import contextlib
import ipaddress
import logging
import os
import random
import socket
import ssl
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from mypy_extensions import mypyc_attr

from kdns.config.model import ForwardConfig, ForwardPolicy, TlsFiles, Upstream
from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.dns.records import Rcode, Reply, RType
from kdns.net import mmsg
from kdns.observe.stats import Stats

logger = logging.getLogger(__name__)

_U16: Final = struct.Struct("!H")  # RFC 1035 §4.2.2: the TCP length prefix
_MAX_UPSTREAMS: Final = 15  # CoreDNS forward: at most 15 upstreams
_UDP_MIN: Final = 512  # RFC 1035 §4.2.1
_UDP_SOCKETS: Final = 4  # connected sockets (source ports) per UDP upstream
_DEADLINE: Final = 5.0  # CoreDNS forward: a query stops trying after 5 s
_TRIES_PER_UPSTREAM: Final = 2  # CoreDNS: max_connect_attempts defaults to 2 per upstream
_RECV_SIZE: Final = 65535
_RCODES: Final = {rcode: wire.rcode_name(rcode) for rcode in range(16)}

R = TypeVar("R")


def _udp_limit(query: wire.Query) -> int:
    """The client's UDP size: 512, or its EDNS payload when larger (RFC 6891 §6.2.5)."""
    return max(_UDP_MIN, query.edns.payload if query.edns is not None else 0)


def _error_reply(query: wire.Query, rcode: Rcode) -> bytes:
    """An empty REFUSED/SERVFAIL reply to `query`, RA set (we offer recursion)."""
    reply = Reply(rcode=rcode, authoritative=False)
    return wire.encode_reply(query, reply, max_size=_udp_limit(query), ra=True)


def tls_context(files: TlsFiles | None) -> ssl.SSLContext:
    """The client TLS context of `forward`'s `tls [CERT KEY] [CA]`: the server certificate
    is always verified (against CA, else the system's CAs), TLS 1.2 at least (as CoreDNS).
    Raises ValueError naming the file when one cannot be loaded."""
    ca = files.ca if files is not None else None
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"forward: tls CA {ca} cannot be loaded: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if files is not None and files.cert is not None:
        try:
            context.load_cert_chain(str(files.cert), str(files.key) if files.key else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"forward: tls certificate {files.cert} and key {files.key} cannot be loaded: {exc}"
            ) from None
    return context


class UpstreamError(Exception):
    """Why one try (or a whole query) got no reply. Returned, not raised, on the hot path.
    `reused`: it happened on a reused connection the upstream had closed (try a new one)."""

    def __init__(self, why: str, *, reused: bool = False) -> None:
        super().__init__(why)
        self.reused = reused


class _Ids:
    """Unpredictable 16-bit query IDs (RFC 5452 §4.3), read from os.urandom in batches."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def pick(self, taken: dict[int, _Pending]) -> int:
        """A random ID that is not in flight on the same socket or connection."""
        while True:
            pos = self._pos
            if pos >= len(self._buf):
                self._buf, pos = os.urandom(4096), 0
            self._pos = pos + 2
            qid = self._buf[pos] << 8 | self._buf[pos + 1]
            if qid not in taken:
                return qid


class _Pending:
    """One try in flight: who to tell (`on_result`, called once, with the reply bytes or
    an UpstreamError), what the reply must match, and where it waits."""

    __slots__ = (
        "deadline",
        "done",
        "key",
        "on_result",
        "opcode",
        "owner",
        "qid",
        "reused",
        "timeouts",
    )

    def __init__(
        self,
        on_result: Callable[[bytes | UpstreamError], None],
        qid: int,
        opcode: int,
        key: bytes,
        owner: _UdpSocket | _Stream | _Unsent,
    ) -> None:
        self.on_result = on_result
        self.done = False
        self.qid = qid
        self.opcode = opcode
        self.key = key
        self.owner = owner
        self.deadline = 0.0
        self.reused = False
        self.timeouts: _Timeouts | None = None


class _Timeouts:
    """The tries in flight, in deadline order: every try waits the same `seconds`, so the
    order they start in is their deadline order. One timer, at the earliest deadline,
    serves them all, and an answered try leaves at once (nothing outlives its query)."""

    __slots__ = ("_firing", "_inflight", "_loop", "_timer", "seconds")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self.seconds = seconds
        self._inflight: dict[_Pending, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._firing = False

    def add(self, pending: _Pending) -> None:
        pending.deadline = self._loop.time() + self.seconds
        pending.timeouts = self
        self._inflight[pending] = None
        if self._timer is None and not self._firing:
            self._timer = self._loop.call_at(pending.deadline, self._fire)

    def remove(self, pending: _Pending) -> None:
        self._inflight.pop(pending, None)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        expired = []
        for pending in self._inflight:
            if pending.deadline > now:
                break
            expired.append(pending)
        # Expiring a try may start another (failover): its add() leaves the timer to us, as
        # the earliest deadline is the head's.
        self._firing = True
        try:
            for pending in expired:
                pending.owner.expire(pending, f"no reply in {self.seconds:g}s")
                self._inflight.pop(pending, None)
        finally:
            self._firing = False
        if self._inflight:
            head = next(iter(self._inflight))
            self._timer = self._loop.call_at(head.deadline, self._fire)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inflight.clear()


def _settle(pending: _Pending, result: bytes | UpstreamError) -> None:
    if not pending.done:
        pending.done = True
        if pending.timeouts is not None:
            pending.timeouts.remove(pending)
        pending.on_result(result)


def _into(future: asyncio.Future[bytes | UpstreamError]) -> Callable[[bytes | UpstreamError], None]:
    """An `on_result` that resolves `future` (for the tries that are awaited)."""

    def resolve(result: bytes | UpstreamError) -> None:
        if not future.done():
            future.set_result(result)

    return resolve


# --- UDP -------------------------------------------------------------------------------


class _UdpSocket:
    """One connected UDP socket (one source port) and the queries in flight on it."""

    __slots__ = (
        "_inbox",
        "_loop",
        "_outbox",
        "born",
        "closed",
        "fd",
        "label",
        "pending",
        "queued",
        "retired",
        "sock",
        "waiting",
    )

    def __init__(
        self,
        up: _Upstream,
        loop: asyncio.AbstractEventLoop,
        *,
        one_off: bool,
        inbox: mmsg.Inbox | None = None,
    ) -> None:
        sock = socket.socket(up.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # connect(): the kernel picks a random ephemeral port and drops datagrams from
            # any other address; ICMP errors are reported on this socket.
            sock.connect((up.addr.host, up.addr.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        self.label = up.label
        self._loop = loop
        self.pending: dict[int, _Pending] = {}
        self.born = loop.time()
        self.retired = one_off  # takes no new queries; closes once nothing is in flight
        self.closed = False
        # Queries of this loop turn, sent together by `_flush` (one sendmmsg, see
        # kdns.net.mmsg.Outbox); without batching each is sent at once.
        self._outbox = mmsg.Outbox(self.fd) if mmsg.available() else None
        self.queued: list[bytes] = []
        self.waiting: list[_Pending] = []
        # Replies read with one recvmmsg per wake-up (shared by the forwarder's sockets);
        # without it, one recv per reply.
        self._inbox = inbox
        loop.add_reader(self.fd, self._readable if inbox is None else self._readable_batched)

    def send(self, data: bytes, pending: _Pending) -> None:
        if self._outbox is None:
            try:
                self.sock.send(data)
            except OSError as exc:
                _settle(pending, UpstreamError(f"UDP send: {exc.strerror or exc}"))
                self._maybe_close()
                return
            self.pending[pending.qid] = pending
            return
        if not self.queued:
            self._loop.call_soon(self._flush)
        self.queued.append(data)
        self.waiting.append(pending)
        self.pending[pending.qid] = pending

    def _flush(self) -> None:
        queued, waiting = self.queued, self.waiting
        self.queued, self.waiting = [], []
        outbox = self._outbox
        if outbox is None or self.closed:
            return
        # A query that did not leave fails now (and fails over).
        for j, err in enumerate(outbox.send_all(queued)):
            if err:
                failed = waiting[j]
                if self.pending.get(failed.qid) is failed:
                    del self.pending[failed.qid]
                _settle(failed, UpstreamError(f"UDP send: {os.strerror(err)}"))
        self._maybe_close()

    def _readable(self) -> None:
        recv = self.sock.recv
        while True:
            try:
                data = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._failed(exc)
                break
            self._reply(data)
        self._maybe_close()

    def _readable_batched(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        while not self.closed:
            try:
                got = inbox.receive(self.fd)
            except OSError as exc:
                self._failed(exc)
                break
            for data in got:
                self._reply(data)
            if len(got) < inbox.slots:
                break  # drained (a full batch may have left more)
        self._maybe_close()

    def _failed(self, exc: OSError) -> None:
        # An ICMP error (port unreachable...): the upstream does not listen; every query on
        # this socket fails now instead of at its timeout.
        self.fail_all(f"UDP: {exc.strerror or exc}")
        self.retired = True

    def _reply(self, data: bytes) -> None:
        if len(data) < 12:
            return
        qid = data[0] << 8 | data[1]
        waiting = self.pending.get(qid)
        if waiting is None or not wire.answers(data, qid, waiting.opcode, waiting.key):
            # RFC 5452 §9.1: a late reply, a reply to another question, a spoof or garbage:
            # ignored, the wait goes on.
            logger.debug("ignored a UDP reply from %s that matches no query", self.label)
            return
        del self.pending[qid]
        _settle(waiting, data)

    def expire(self, pending: _Pending, why: str) -> None:
        if self.pending.get(pending.qid) is pending:
            del self.pending[pending.qid]
        _settle(pending, UpstreamError(f"UDP: {why}"))
        self._maybe_close()

    def forget(self, pending: _Pending) -> None:
        """The waiter went away (cancelled): stop expecting its reply."""
        if self.pending.get(pending.qid) is pending:
            del self.pending[pending.qid]
        self._maybe_close()

    def fail_all(self, why: str) -> None:
        doomed = list(self.pending.values())
        self.pending.clear()
        for pending in doomed:
            _settle(pending, UpstreamError(why))

    def _maybe_close(self) -> None:
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.fail_all("UDP: the forwarder closed")
        with contextlib.suppress(Exception):
            mmsg.remove_reader(self._loop, self.fd)
        self.sock.close()


class _UdpPool:
    """The UDP sockets of one upstream, used in turn; each is replaced after `expire`."""

    __slots__ = ("_inbox", "_loop", "_turn", "expire", "sockets", "up")

    def __init__(
        self,
        up: _Upstream,
        loop: asyncio.AbstractEventLoop,
        expire: float,
        inbox: mmsg.Inbox | None = None,
    ) -> None:
        self.up = up
        self._loop = loop
        self._inbox = inbox
        self.expire = expire
        self.sockets: list[_UdpSocket | None] = [None] * _UDP_SOCKETS
        self._turn = 0

    def pick(self) -> _UdpSocket:
        """A socket to send on (raises OSError when none can be opened): the one this loop
        turn's queries wait on, so they leave together, else the next in turn."""
        if self.expire <= 0:
            return _UdpSocket(self.up, self._loop, one_off=True, inbox=self._inbox)
        sock = self.sockets[self._turn]
        if sock is not None and sock.queued and not sock.retired:
            return sock
        turn = self._turn = (self._turn + 1) % _UDP_SOCKETS
        sock = self.sockets[turn]
        if sock is None or sock.retired or self._loop.time() - sock.born > self.expire:
            if sock is not None and not sock.retired:
                sock.retired = True  # finishes what is in flight, then closes
                sock._maybe_close()
            sock = self.sockets[turn] = _UdpSocket(
                self.up, self._loop, one_off=False, inbox=self._inbox
            )
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()
        self.sockets = [None] * _UDP_SOCKETS


# --- TCP and TLS -------------------------------------------------------------------------


@mypyc_attr(native_class=False)  # (a compiled class cannot derive from asyncio.Protocol)
class _Stream(asyncio.Protocol):
    """One TCP or TLS connection to an upstream with pipelined queries (RFC 7766 §6.2.1.1):
    2-octet length framing, replies matched by ID and question in any order."""

    def __init__(
        self, label: str, loop: asyncio.AbstractEventLoop, expire: float, *, tls: bool
    ) -> None:
        self.label = label
        self._proto = "TLS" if tls else "TCP"
        self._loop = loop
        self.expire_after = expire
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.pending: dict[int, _Pending] = {}
        self.used = loop.time()
        self.answered = 0  # replies received so far: the connection has been reused
        self.usable = True  # takes new queries
        self.closed = False
        self._idle: asyncio.TimerHandle | None = None

    # - asyncio.Protocol -

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 2:
            length = buf[0] << 8 | buf[1]
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            if not self._dispatch(message):
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.usable = False
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        why = f"the connection closed ({exc})" if exc else "the upstream closed the connection"
        doomed = list(self.pending.values())
        self.pending.clear()
        for pending in doomed:
            _settle(pending, UpstreamError(f"{self._proto}: {why}", reused=pending.reused))

    # - queries -

    def send(self, data: bytes, pending: _Pending) -> None:
        assert self.transport is not None
        pending.reused = self.answered > 0
        self.pending[pending.qid] = pending
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.transport.write(_U16.pack(len(data)) + data)  # RFC 1035 §4.2.2 framing

    def _dispatch(self, message: bytes) -> bool:
        if len(message) >= 12:
            qid = message[0] << 8 | message[1]
            waiting = self.pending.get(qid)
            if waiting is not None and wire.answers(message, qid, waiting.opcode, waiting.key):
                del self.pending[qid]
                self.answered += 1
                self.used = self._loop.time()
                _settle(waiting, message)
                self._after_reply()
                return True
        # The connection carries only our queries (RFC 7766 §7): a reply that matches none
        # of them means the stream is out of step. Fail what is in flight over to the next
        # upstream, and never use this connection again (RFC 5452 §9.1).
        logger.debug("%s from %s: a reply matches no query in flight", self._proto, self.label)
        self._break(f"{self._proto}: the reply matches no query in flight (RFC 5452 §9.1)")
        return False

    def _after_reply(self) -> None:
        if self.pending:
            return
        if not self.usable or self.expire_after <= 0:
            self.close()
        elif self._idle is None:
            self._idle = self._loop.call_later(self.expire_after, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if not self.pending and self._loop.time() - self.used >= self.expire_after * 0.99:
            self.usable = False
            self.close()

    def expire(self, pending: _Pending, why: str) -> None:
        # A silent connection may be wedged: no new queries on it.
        self.usable = False
        if self.pending.get(pending.qid) is pending:
            del self.pending[pending.qid]
        _settle(pending, UpstreamError(f"{self._proto}: {why}"))
        if not self.pending:
            self.close()

    def forget(self, pending: _Pending) -> None:
        if self.pending.get(pending.qid) is pending:
            del self.pending[pending.qid]
        self._after_reply()

    def _break(self, why: str) -> None:
        self.usable = False
        doomed = list(self.pending.values())
        self.pending.clear()
        for pending in doomed:
            _settle(pending, UpstreamError(why))
        self.close()

    def close(self) -> None:
        self.usable = False
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


# --- upstreams ---------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Upstream:
    upstream: Upstream
    family: socket.AddressFamily
    fails: int = 0  # failed health checks in a row
    probe: asyncio.Task[None] | None = None
    udp: _UdpPool | None = None
    stream: _Stream | None = None
    connecting: asyncio.Future[_Stream | UpstreamError] | None = None
    # The `to` label of the metrics: the address, as CoreDNS (no scheme).
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = str(self.upstream.addr)

    @property
    def addr(self) -> HostPort:
        return self.upstream.addr


@mypyc_attr(allow_interpreted_subclasses=True)  # (`kdns explain` offline subclasses it)
@dataclass(slots=True)
class Forwarder:
    """Asks upstreams for the `forward` plugin: `forward(query, parsed, tcp=, done=)`
    returns a Future of `done(reply or UpstreamError, upstream label or None)`."""

    upstreams: Sequence[Upstream]
    stats: Stats = field(default_factory=Stats)
    max_concurrent: int = 0  # 0 = no limit (CoreDNS's default)
    timeout_seconds: float = 2.0  # CoreDNS forward read_timeout
    max_fails: int = 2  # CoreDNS forward max_fails
    health_interval_seconds: float = 0.5  # CoreDNS forward health_check
    health_timeout_seconds: float = 1.0  # CoreDNS's health check read timeout
    health_domain: str = "."
    health_rd: bool = True
    policy: ForwardPolicy = ForwardPolicy.RANDOM
    force_tcp: bool = False
    prefer_udp: bool = False
    expire_seconds: float = 10.0
    ssl_context: ssl.SSLContext | None = None  # for tls:// upstreams; None = system CAs
    server_name: str | None = None  # `tls_servername`
    _ups: list[_Upstream] = field(default_factory=list, init=False)
    _ids: _Ids = field(default_factory=_Ids, init=False)
    _rng: random.Random = field(default_factory=random.Random, init=False)
    _robin: int = field(default=0, init=False)
    _inflight: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _timeouts: _Timeouts | None = field(default=None, init=False)
    # Upstream replies read with recvmmsg (one buffer for every UDP socket here).
    _inbox: mmsg.Inbox | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if len(self.upstreams) > _MAX_UPSTREAMS:
            raise ValueError(f"at most {_MAX_UPSTREAMS} upstreams, got {len(self.upstreams)}")
        self._ups = [_Upstream(u, _family(u.addr.host)) for u in self.upstreams]
        if self.ssl_context is None and any(u.tls for u in self.upstreams):
            self.ssl_context = tls_context(None)

    @classmethod
    def from_config(cls, config: ForwardConfig, *, stats: Stats) -> Forwarder:
        """Raises ValueError (one line, naming the file) when `tls` files cannot be loaded."""
        tls = any(u.tls for u in config.to)
        return cls(
            config.to,
            stats=stats,
            max_concurrent=config.max_concurrent,
            timeout_seconds=config.read_timeout,
            max_fails=config.max_fails,
            health_interval_seconds=config.health_check,
            health_domain=config.health_check_domain,
            health_rd=config.health_check_rd,
            policy=config.policy,
            force_tcp=config.force_tcp,
            prefer_udp=config.prefer_udp,
            expire_seconds=config.expire,
            ssl_context=tls_context(config.tls) if tls else None,
            server_name=config.tls_servername,
        )

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
            if up.udp is not None:
                up.udp.close()
                up.udp = None
            if up.stream is not None:
                up.stream.close()
                up.stream = None
        if self._timeouts is not None:
            self._timeouts.close()

    # - the exchange -

    def forward(
        self,
        query: bytes,
        parsed: wire.Query,
        *,
        tcp: bool,
        done: Callable[[bytes | UpstreamError, str | None], R],
        future: asyncio.Future[R] | None = None,
    ) -> asyncio.Future[R]:
        """Ask the upstreams for `query` (decoded as `parsed`); the future (`future`, or a
        new one) resolves to `done(reply, upstream)`: the upstream's reply with the client's
        ID and the label of the upstream that sent it, or why no upstream answered (the
        caller answers SERVFAIL). REFUSED when `max_concurrent` upstream queries are
        already in flight. The reply is whole: the server fits it to the client's size
        limit (an upstream may have answered over TCP).

        No task or coroutine per query: the exchange is driven by socket callbacks."""
        loop = self._loop
        if loop is None:
            loop = self._started()
        if future is None:
            future = loop.create_future()
        if self.max_concurrent and self._inflight >= self.max_concurrent:
            self.stats.count_max_concurrent_reject()
            future.set_result(done(_error_reply(parsed, Rcode.REFUSED), None))
            return future
        if self.force_tcp:
            stream = True
        elif self.prefer_udp:
            stream = False
        else:
            stream = tcp
        self._inflight += 1
        _Exchange(self, loop, query, parsed, stream, done, future).next()
        return future

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this forwarder runs on (the running one, at the first call): for the
        futures its callers hand to `forward`, without asking asyncio (a system call)."""
        loop = self._loop
        return loop if loop is not None else self._started()

    def _started(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        self._timeouts = _Timeouts(loop, self.timeout_seconds)
        if mmsg.available():
            self._inbox = mmsg.Inbox()
        return loop

    def _list(self) -> list[_Upstream]:
        """The upstreams in the order this query tries them (CoreDNS's policies)."""
        ups = self._ups
        if self.policy == ForwardPolicy.SEQUENTIAL or len(ups) < 2:
            return ups
        if self.policy == ForwardPolicy.ROUND_ROBIN:
            self._robin += 1
            turn = self._robin % len(ups)
            return [ups[turn], *ups[:turn], *ups[turn + 1 :]]
        shuffled = list(ups)
        self._rng.shuffle(shuffled)
        return shuffled

    def _send_udp(self, up: _Upstream, query: bytes, pending: _Pending) -> None:
        """Send one try over UDP; its outcome goes to `pending.on_result`."""
        assert self._loop is not None
        assert self._timeouts is not None
        pool = up.udp
        if pool is None:
            pool = up.udp = _UdpPool(up, self._loop, self.expire_seconds, self._inbox)
        try:
            sock = pool.pick()
        except OSError as exc:
            _settle(pending, UpstreamError(f"UDP socket: {exc.strerror or exc}"))
            return
        pending.owner = sock
        pending.qid = qid = self._ids.pick(sock.pending)
        sock.send(qid.to_bytes(2, "big") + query[2:], pending)
        if not pending.done:
            self._timeouts.add(pending)

    async def _stream_exchange(
        self, up: _Upstream, query: bytes, parsed: wire.Query, key: bytes
    ) -> bytes | UpstreamError:
        """One try over TCP (or TLS for a tls:// upstream) on a reused or new connection."""
        assert self._loop is not None
        assert self._timeouts is not None
        for _ in range(2):  # a reused connection the upstream closed: once more, on a new one
            stream = await self._connection(up)
            if isinstance(stream, UpstreamError):
                return stream
            future: asyncio.Future[bytes | UpstreamError] = self._loop.create_future()
            pending = _Pending(_into(future), 0, parsed.opcode, key, stream)
            pending.qid = self._ids.pick(stream.pending)
            stream.send(pending.qid.to_bytes(2, "big") + query[2:], pending)
            self._timeouts.add(pending)
            try:
                result = await future
            except asyncio.CancelledError:
                stream.forget(pending)
                raise
            if isinstance(result, UpstreamError) and result.reused:
                continue
            return result
        return UpstreamError("the upstream closed the connection twice")

    async def _connection(self, up: _Upstream) -> _Stream | UpstreamError:
        stream = up.stream
        if stream is not None and stream.usable and not stream.closed:
            assert self._loop is not None
            if self.expire_seconds > 0 and self._loop.time() - stream.used < self.expire_seconds:
                return stream
            stream.usable = False
            if not stream.pending:
                stream.close()
        if up.connecting is None:
            up.connecting = asyncio.ensure_future(self._connect(up))
        connecting = up.connecting
        return await asyncio.shield(connecting)

    async def _connect(self, up: _Upstream) -> _Stream | UpstreamError:
        try:
            stream = await self._open(up, self.timeout_seconds)
            if isinstance(stream, _Stream):
                up.stream = stream
            return stream
        finally:
            up.connecting = None

    async def _open(self, up: _Upstream, seconds: float) -> _Stream | UpstreamError:
        """A new TCP or TLS connection to `up`, within `seconds`."""
        loop = asyncio.get_running_loop()
        tls = up.upstream.tls
        context = self.ssl_context if tls else None
        name = (up.upstream.server_name or self.server_name or up.addr.host) if tls else None
        proto = "TLS" if tls else "TCP"
        stream = _Stream(up.label, loop, self.expire_seconds, tls=tls)
        try:
            async with asyncio.timeout(seconds):
                await loop.create_connection(
                    lambda: stream,
                    up.addr.host,
                    up.addr.port,
                    ssl=context,
                    server_hostname=name,
                )
        except TimeoutError:
            return UpstreamError(f"{proto}: no connection in {seconds:g}s")
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or exc.reason or str(exc)
            return UpstreamError(f"TLS: the certificate of {name} is not trusted: {why}")
        except (OSError, ssl.SSLError) as exc:
            return UpstreamError(f"{proto}: {getattr(exc, 'strerror', None) or exc}")
        return stream

    # - health -

    def _healthcheck(self, up: _Upstream) -> None:
        """Start checking `up` (unless a check already runs): CoreDNS's in-band health."""
        if up.probe is None and not self._closed:
            up.probe = asyncio.get_running_loop().create_task(
                self._probe(up), name=f"kdns-health-{up.label}"
            )

    async def _probe(self, up: _Upstream) -> None:
        """`. IN NS` now and every interval until it is answered; each failure counts."""
        try:
            while True:
                error = await self._check(up)
                if error is None:
                    if up.fails > self.max_fails:
                        logger.warning("upstream %s is up again", up.upstream)
                    up.fails = 0
                    return
                up.fails += 1
                self.stats.count_healthcheck_failure(up.label)
                logger.debug("health check of %s failed: %s", up.upstream, error)
                if up.fails == self.max_fails + 1:
                    logger.warning(
                        "upstream %s is down: %s health checks in a row failed (last: %s); "
                        "checking it every %gs",
                        up.upstream,
                        up.fails,
                        error,
                        self.health_interval_seconds,
                    )
                await asyncio.sleep(self.health_interval_seconds)
        finally:
            up.probe = None

    async def _check(self, up: _Upstream) -> UpstreamError | None:
        """One health check over the upstream's transport, on a socket of its own."""
        loop = asyncio.get_running_loop()
        data = wire.build_query(
            self.health_domain, RType.NS, qid=self._ids.pick({}), rd=self.health_rd,
            edns_payload=None,
        )  # fmt: skip
        parsed = wire.decode_query(data)
        key = wire.question_key(parsed)
        timeout = self.health_timeout_seconds
        owner: _UdpSocket | _Stream
        if up.upstream.tls or self.force_tcp:
            opened = await self._open(up, timeout)
            if isinstance(opened, UpstreamError):
                return opened
            owner = opened
        else:
            try:
                owner = _UdpSocket(up, loop, one_off=True)
            except OSError as exc:
                return UpstreamError(f"UDP socket: {exc.strerror or exc}")
        future: asyncio.Future[bytes | UpstreamError] = loop.create_future()
        pending = _Pending(_into(future), parsed.id, parsed.opcode, key, owner)
        owner.send(data, pending)
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(future)
        except TimeoutError:
            result = UpstreamError(f"no reply in {timeout:g}s")
        finally:
            owner.forget(pending)
            owner.close()
        return result if isinstance(result, UpstreamError) else None


class _Exchange:
    """One query's walk over the upstreams (CoreDNS's ServeDNS loop), driven by the
    callbacks of its tries: the list in policy order, down upstreams skipped (a random one
    when all are), up to 2 tries per upstream within 5 s, TC answered again over TCP."""

    __slots__ = (
        "_deadline",
        "_done",
        "_down",
        "_future",
        "_fwd",
        "_index",
        "_key",
        "_last",
        "_loop",
        "_parsed",
        "_query",
        "_started",
        "_stream",
        "_tries",
        "_up",
        "_ups",
    )

    def __init__(
        self,
        fwd: Forwarder,
        loop: asyncio.AbstractEventLoop,
        query: bytes,
        parsed: wire.Query,
        stream: bool,
        done: Callable[[bytes | UpstreamError, str | None], Any],
        future: asyncio.Future[Any],
    ) -> None:
        self._fwd = fwd
        self._loop = loop
        self._query = query
        self._parsed = parsed
        self._stream = stream
        self._done = done
        self._future = future
        self._key = wire.question_key(parsed)
        self._ups = fwd._list()
        self._index = 0
        self._down = 0
        self._tries = 0
        self._deadline = loop.time() + _DEADLINE
        self._up: _Upstream | None = None
        self._started = 0.0
        self._last: UpstreamError | None = None

    def next(self) -> None:
        """Start the next try, or finish when tries, time or upstreams ran out."""
        fwd = self._fwd
        ups = self._ups
        count = len(ups)
        while True:
            if (
                fwd._closed
                or not count
                or self._tries >= _TRIES_PER_UPSTREAM * count
                or self._loop.time() >= self._deadline
                or self._down >= count
            ):
                self._finish(self._last or UpstreamError("no upstream to ask"))
                return
            if self._index >= count:  # the end of the list: walk it again
                self._index = self._down = 0
            up = ups[self._index]
            self._index += 1
            if fwd.max_fails and up.fails > fwd.max_fails:
                self._down += 1
                if self._down < count:
                    continue
                # Every upstream is down: health checking itself may be broken.
                fwd.stats.count_healthcheck_broken()
                up = fwd._rng.choice(fwd._ups)
            break
        self._up = up
        self._started = self._loop.time()
        if self._stream or up.upstream.tls:
            self._over_stream(up)
        else:
            pending = _Pending(self._on_udp, 0, self._parsed.opcode, self._key, _UNSENT)
            fwd._send_udp(up, self._query, pending)

    def _over_stream(self, up: _Upstream) -> None:
        task = self._loop.create_task(
            self._fwd._stream_exchange(up, self._query, self._parsed, self._key)
        )
        task.add_done_callback(self._on_stream)

    def _on_udp(self, result: bytes | UpstreamError) -> None:
        if type(result) is not bytes:
            assert isinstance(result, UpstreamError)
            self._failed(result)
        elif result[2] & 0x02 and self._up is not None:
            # TC: the whole answer over TCP, same upstream (RFC 7766 §6.2.1).
            self._over_stream(self._up)
        else:
            self._replied(result)

    def _on_stream(self, task: asyncio.Task[bytes | UpstreamError]) -> None:
        if task.cancelled():
            self._finish(UpstreamError("cancelled"))
            return
        exc = task.exception()
        if exc is not None:  # not expected: the exchange returns its errors
            self._failed(UpstreamError(f"{type(exc).__name__}: {exc}"))
            return
        result = task.result()
        if type(result) is bytes:
            self._replied(result)
        else:
            assert isinstance(result, UpstreamError)
            self._failed(result)

    def _replied(self, reply: bytes) -> None:
        """The upstream answered: the reply, with the client's ID, ends the exchange."""
        up = self._up
        assert up is not None
        fwd = self._fwd
        fwd.stats.observe_proxy(
            up.label, _RCODES[reply[3] & 0xF], self._loop.time() - self._started
        )
        self._finish(wire.with_id(reply, self._parsed.id), up.label)

    def _failed(self, error: UpstreamError) -> None:
        """This try failed: the next one, if any is left."""
        up = self._up
        assert up is not None
        fwd = self._fwd
        self._last = UpstreamError(f"{up.upstream}: {error}")
        logger.debug("upstream %s failed: %s", up.upstream, error)
        if fwd.max_fails:
            fwd._healthcheck(up)
        self._tries += 1
        self.next()

    def _finish(self, result: bytes | UpstreamError, via: str | None = None) -> None:
        # Not logged here: the SERVFAIL carries the reason to the `errors` plugin, which
        # consolidates repeats (one line per query would flood the log while it is down).
        self._fwd._inflight -= 1
        if not self._future.done():
            self._future.set_result(self._done(result, via))


class _Unsent:
    """The owner of a try before it has a socket."""

    def forget(self, pending: _Pending) -> None:
        pass

    def expire(self, pending: _Pending, why: str) -> None:
        pass


_UNSENT: Final = _Unsent()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --- loop protection (CoreDNS `loop`) ------------------------------------------------


@mypyc_attr(native_class=False)  # (a compiled class cannot derive from RuntimeError)
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
