"""DNS over UDP and TCP: sockets in, bytes to the handler, bytes out.

UDP uses a non-blocking socket drained from an `add_reader` callback (docs/benchmarking.md: as
fast as uvloop's transport and 3.5x stock asyncio's DatagramProtocol). TCP follows
RFC 7766: 2-byte length framing, several (pipelined) queries per connection, replies
possibly out of order, an idle timeout, a per-message deadline so a client dribbling
bytes cannot hold a slot forever, and a connection cap that closes the least recently
active idle connection (no query in flight) to make room, falling back to the least
recently active one only when every connection is busy. Memory per connection is bounded:
reading pauses while `max_pending` queries are in flight or the unsent replies exceed
`max_write_buffer`, and buffered queries wait unparsed until it resumes. Knows nothing of
DNS beyond framing (the optional response-rate limiter, `kdns.serve.rrl`, owns its own bytes).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from kdns.net import mmsg
from kdns.net.mmsg import Peer, SockAddr
from kdns.serve.chain import Staged
from kdns.serve.rrl import RateLimiter

log = logging.getLogger(__name__)

HandleResult = bytes | None | Awaitable[bytes | None]
Client = SockAddr | Peer | None
"""Who asked: (host, port), a `Peer` to decode only if needed (batched UDP), or None."""


class QueryHandler(Protocol):
    def handle(self, data: bytes, tcp: bool, family: str, client: Client = None) -> HandleResult:
        """Reply bytes now, None to drop, or an awaitable of either (an upstream is asked).
        Called positionally on the hot path. A `Peer` is valid only during the call."""


BatchObserver = Callable[[int, float], None]


class Remembered(Protocol):
    """A reply kept for one exact query: the bytes after the ID, good while `until` is
    later than the batch's time, and hit counters."""

    reply: bytes
    until: float
    v4: int
    v6: int


class ExactReplies(Protocol):
    """What a handler may offer the batched UDP loop besides `handle`: replies by the
    query's bytes after the ID, valid for a whole batch once `begin_batch()` has run (data
    changes land between batches, in other callbacks of the event loop)."""

    @property
    def exact(self) -> Mapping[bytes, Remembered]: ...

    def begin_batch(self) -> float:
        """Called before each batch; returns the time to compare `until` with."""


_MAX_BATCH = 64  # datagrams per readable callback, then yield to the loop
_BUFFER_BYTES = 4 * 1024 * 1024  # SO_RCVBUF/SO_SNDBUF (docs/benchmarking.md: avoids drops)
_FLUSH_BYTES = 16 * 1024  # TCP: replies of one pipelined batch written together up to this


def _family_label(family: int) -> str:
    # CoreDNS's `family` label: "1" IPv4, "2" IPv6.
    return "2" if family == socket.AF_INET6 else "1"


def resolve_bind(host: str, port: int) -> tuple[int, tuple[str, int]]:
    """Family and address to bind: "" or "0.0.0.0" = all IPv4; "::" = all IPv6."""
    if host in ("", "0.0.0.0"):
        return socket.AF_INET, ("0.0.0.0", port)
    if ":" in host:
        return socket.AF_INET6, (host, port)
    return socket.AF_INET, (host, port)


def bind_udp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family, addr = resolve_bind(host, port)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # As Go (and so CoreDNS) does: a resolver bound to one address of the same port
        # (e.g. a node-local forwarder on 127.0.0.2:53) may coexist with our wildcard.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, _BUFFER_BYTES)
            except OSError:  # pragma: no cover - capped by net.core.*mem_max
                pass
        sock.bind(addr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family, addr = resolve_bind(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpServer:
    """Answers datagrams on one socket from a readable callback that drains the socket."""

    def __init__(
        self,
        sock: socket.socket,
        handler: QueryHandler,
        *,
        observe_batch: BatchObserver | None = None,
        max_query_bytes: int = 4096,
        rrl: RateLimiter | None = None,
        batched: bool | None = None,
        exact: ExactReplies | None = None,
    ) -> None:
        """`batched`: use recvmmsg/sendmmsg (default: where `mmsg.available()`; never with
        rate limiting, which reads one datagram at a time). `exact`: replies the batched
        loop may send itself, before asking the handler."""
        self.sock = sock
        self._handler = handler
        self._observe = observe_batch
        self._rrl = rrl
        self._family = _family_label(sock.family)
        self._max = max_query_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[bytes | None]] = set()
        self._exact = exact
        if batched is None:
            batched = mmsg.available()
        self._batch = (
            mmsg.Batch(sock, slots=_MAX_BATCH, size=max_query_bytes)
            if batched and rrl is None
            else None
        )
        # Replies that complete later (forwarded queries), sent together once per loop
        # turn by `_flush_later` (batched mode only).
        self._outbox = (
            mmsg.Outbox(sock.fileno(), slots=_MAX_BATCH, named=True)
            if self._batch is not None
            else None
        )
        self._later: list[bytes] = []
        self._later_to: list[bytes] = []

    @property
    def batched(self) -> bool:
        return self._batch is not None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Rate limiting costs nothing when off: it is a different callback.
        if self._rrl is not None:
            callback = self._on_readable_rrl
        elif self._batch is not None:
            callback = self._on_readable_batched
        else:
            callback = self._on_readable
        self._loop.add_reader(self.sock.fileno(), callback)

    def close(self) -> None:
        if self._loop is not None:
            mmsg.remove_reader(self._loop, self.sock.fileno())
            self._loop = None
        for task in list(self._tasks):
            task.cancel()
        self.sock.close()

    def _on_readable(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handle = self._handler.handle
        family = self._family
        size = self._max
        started = time.perf_counter() if self._observe is not None else 0.0
        n = 0
        while n < _MAX_BATCH:
            try:
                data, addr = recvfrom(size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP errors surfaced on the socket
                log.debug("udp recv error on %s: %s", self.sock.getsockname(), exc)
                break
            n += 1
            result = handle(data, False, family, addr)
            if result is None:
                continue
            if type(result) is bytes:
                try:
                    sendto(result, addr)
                except (BlockingIOError, InterruptedError):
                    pass  # send buffer full: UDP may drop, the client retries
                except OSError as exc:
                    log.debug("udp send to %s failed: %s", addr, exc)
                continue
            self._spawn(result, addr)  # type: ignore[arg-type]
        if self._observe is not None and n > 0:
            self._observe(n, time.perf_counter() - started)

    def _on_readable_batched(self) -> None:
        """`_on_readable` with one recvmmsg for up to `_MAX_BATCH` datagrams and one sendmmsg
        for their replies, each sent from where it is (kdns.net.mmsg)."""
        batch = self._batch
        assert batch is not None
        started = time.perf_counter() if self._observe is not None else 0.0
        try:
            n = batch.receive()
        except OSError as exc:  # e.g. ICMP errors surfaced on the socket
            log.debug("udp recv error on %s: %s", self.sock.getsockname(), exc)
            return
        if not n:
            return
        handle = self._handler.handle
        family = self._family
        v6 = family == "2"
        view, lengths, peers = batch.recv_view, batch.recv_lengths, batch.peers
        iov, names = batch.send_iov, batch.send_names
        recv_at, names_at, size = batch.recv_at, batch.names_at, batch.size
        per, length_at, name_stride = mmsg.LENGTH_STRIDE, mmsg.LENGTH_AT, mmsg.NAME_STRIDE
        data_at = mmsg.BYTES_DATA
        assert data_at is not None
        sending: list[bytes] = []  # what the messages point into, alive until sent
        hold = sending.append
        remembered = None
        now = 0.0
        if self._exact is not None:
            now = self._exact.begin_batch()
            remembered = self._exact.exact.get
        moved = n  # the first message pointed away from its own slot (see Batch.restore)
        k = 0
        for i in range(n):
            at = i * size
            end = at + lengths[i * per + length_at]
            found = None if remembered is None else remembered(view[at + 2 : end].tobytes())
            if found is not None and found.until > now:  # its ID, then the reply
                if v6:
                    found.v6 += 1
                else:
                    found.v4 += 1
                reply = found.reply
                if k != i:
                    iov[4 * k] = recv_at + at  # (the ID piece: this query's)
            else:
                try:
                    result = handle(view[at:end].tobytes(), False, family, peers[i])
                except Exception as exc:  # (the handler answers SERVFAIL itself: a last
                    # guard that keeps the rest of the batch, and the messages' layout)
                    log.error("udp: answering a query from %s failed: %r", peers[i].address(), exc)
                    continue
                if result is None:
                    continue
                if type(result) is not bytes:
                    if type(result) is Staged and result.sink is None and not result.done():
                        # (the server's forwarded query: queued for this turn's sendmmsg
                        # when it completes, no done callback; see Staged.sink)
                        self._tasks.add(result)
                        result.sink = functools.partial(self._deliver, peers[i].raw())
                    else:
                        self._spawn(result, peers[i])  # type: ignore[arg-type]
                    continue
                reply = result
                iov[4 * k + 1] = 0  # a whole reply: no ID piece
                if k < moved:
                    moved = k
            if k != i:
                names[8 * k] = names_at + i * name_stride
                if k < moved:
                    moved = k
            iov[4 * k + 2] = id(reply) + data_at
            iov[4 * k + 3] = len(reply)
            hold(reply)
            k += 1
        if k:
            batch.send(k, sending)
            if moved < k:
                batch.restore(moved, k)
        if self._observe is not None:
            self._observe(n, time.perf_counter() - started)

    def _send_one(self, reply: bytes, addr: SockAddr) -> None:
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:
            log.debug("udp send to %s failed: %s", addr, exc)

    def _on_readable_rrl(self) -> None:
        """`_on_readable` with each reply passed through the rate limiter first."""
        assert self._rrl is not None
        limit = self._rrl.limit
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handle = self._handler.handle
        family = self._family
        size = self._max
        started = time.perf_counter() if self._observe is not None else 0.0
        n = 0
        while n < _MAX_BATCH:
            try:
                data, addr = recvfrom(size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("udp recv error on %s: %s", self.sock.getsockname(), exc)
                break
            n += 1
            result = handle(data, False, family, addr)
            if result is None:
                continue
            if type(result) is bytes:
                reply = limit(addr[0], result)
                if reply is None:
                    continue
                try:
                    sendto(reply, addr)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    log.debug("udp send to %s failed: %s", addr, exc)
                continue
            self._spawn(result, addr)  # type: ignore[arg-type]
        if self._observe is not None and n > 0:
            self._observe(n, time.perf_counter() - started)

    def _spawn(self, pending: Awaitable[bytes | None], client: SockAddr | Peer) -> None:
        """Send the reply when `pending` completes, to `client` (a `Peer` is kept as its raw
        address: its slot is reused by the next batch)."""
        # The awaitable itself becomes the task (no wrapper coroutine), so a task cancelled
        # before it ran still closes it: nothing is left un-awaited at shutdown.
        task = asyncio.ensure_future(pending)
        self._tasks.add(task)
        to: SockAddr | bytes = client.raw() if isinstance(client, Peer) else client
        task.add_done_callback(functools.partial(self._finish, to))

    def _finish(self, to: SockAddr | bytes, task: asyncio.Future[bytes | None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the handler answers SERVFAIL itself; this is a last guard
            who = mmsg.decode_address(to) if isinstance(to, bytes) else to
            log.error("udp: answering a query from %s failed: %r", who, exc)
            return
        reply = task.result()
        if reply is None or self._loop is None:
            return
        if isinstance(to, bytes):  # (batched mode: a raw address, sent with the turn's rest)
            self._send_later(reply, to)
            return
        if self._rrl is not None:
            limited = self._rrl.limit(to[0], reply)
            if limited is None:
                return
            reply = limited
        self._send_one(reply, to)

    def _deliver(self, to: bytes, future: Staged, reply: bytes | None) -> None:
        """A forwarded query's reply (its Staged future's sink)."""
        self._tasks.discard(future)
        if reply is not None and self._loop is not None:
            self._send_later(reply, to)

    def _send_later(self, reply: bytes, to: bytes) -> None:
        """Queue a reply for the rest of this loop turn's, sent by `_flush_later`."""
        assert self._loop is not None
        if not self._later:
            self._loop.call_soon(self._flush_later)
        self._later.append(reply)
        self._later_to.append(to)

    def _flush_later(self) -> None:
        """Send the replies that completed during this loop turn with one sendmmsg; one
        the kernel refuses is dropped (as UDP may), the rest still go."""
        replies, names = self._later, self._later_to
        self._later, self._later_to = [], []
        outbox = self._outbox
        if outbox is None or self._loop is None:
            return
        for j, err in enumerate(outbox.send_all(replies, names)):
            if err:
                log.debug(
                    "udp send to %s failed: %s", mmsg.decode_address(names[j]), os.strerror(err)
                )


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle_seconds: float = 10.0
    """RFC 7766 §6.2.3: close idle connections; CoreDNS and Unbound use about 10 s."""

    message_seconds: float = 10.0
    """A started message must complete within this; stops byte-dribbling clients."""

    max_connections: int = 1000
    """Open connections at most; at the cap the least recently active idle one (no query
    in flight) is closed, or the least recently active of all when none is idle."""

    max_pending: int = 32
    """Queries of one connection answered concurrently (pipelining); more pause reading."""

    max_write_buffer: int = 256 * 1024
    """Unread reply bytes per connection before reading from it pauses."""


class _TcpConnection:
    """One client connection. An asyncio protocol by its methods (connection_made,
    data_received, ...), not by its base: a compiled class cannot derive from
    asyncio.Protocol, and compiled, its fields are C slots rather than a dict, which is
    most of the per-query cost at a few queries per read."""

    def __init__(self, server: TcpServer) -> None:
        self._server = server
        self._handle: Callable[[bytes, bool, str, Client], HandleResult] = server.handler.handle
        self._max_pending = server.limits.max_pending
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._pending = 0
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._processing = False
        self._message_started: float | None = None
        self.last_active = time.monotonic()
        self.family = "1"
        self.peer: SockAddr | None = None

    @property
    def busy(self) -> bool:
        """Queries in flight: closing now would lose answers the client waits for."""
        return self._pending > 0

    # -- the asyncio protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.family = _family_label(sock.family)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - TCP_NODELAY is settable on any TCP socket
                pass
        self._transport.set_write_buffer_limits(high=self._server.limits.max_write_buffer)
        self._server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        self._transport = None
        self._buffer.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._activity()  # (the client reads: it is alive)
        self._process()

    def data_received(self, data: bytes) -> None:
        self._activity()
        buf = self._buffer
        size = len(data)
        if (
            not buf
            and size >= 2
            and size == 2 + ((data[0] << 8) | data[1])
            and not self._processing
            and not self._blocked()
            and self._transport is not None
        ):
            # The common case, a read that is one whole message: no copy into the buffer.
            self._message_started = None
            result = self._handle(data[2:], True, self.family, self.peer)
            if isinstance(result, bytes):
                self._write_framed([len(result).to_bytes(2, "big"), result])
            elif result is not None:
                self._spawn(result)
                self._update_reading()
            self._maybe_finish()
            return
        if not buf:
            # A new message starts: the per-message deadline runs from its first byte, so
            # a client sending one byte at a time cannot keep pushing it back.
            self._message_started = self.last_active
        buf += data
        self._process()

    def eof_received(self) -> bool | None:
        # Half-close: answer what is pending, then close (RFC 7766 §6.2.4).
        self._eof = True
        self._maybe_finish()
        return True  # keep the write side open for the pending answers

    # -- internals --
    def _activity(self) -> None:
        self.last_active = time.monotonic()
        self._server.touch(self)

    def _blocked(self) -> bool:
        return self._writing_paused or self._pending >= self._max_pending

    def _process(self) -> None:
        """Dispatch the complete messages in the buffer while neither limit is hit. Replies
        ready at once are framed and written together (one send for a pipelined batch),
        at least every `_FLUSH_BYTES`."""
        if self._processing:
            return  # re-entered from a write callback: the outer loop carries on
        self._processing = True
        out: list[bytes] = []
        pending = 0
        try:
            buf = self._buffer
            handle = self._handle
            family, peer = self.family, self.peer
            dispatched = False
            while self._transport is not None and len(buf) >= 2 and not self._blocked():
                length = (buf[0] << 8) | buf[1]
                if len(buf) < 2 + length:
                    break
                message = bytes(buf[2 : 2 + length])
                del buf[: 2 + length]
                dispatched = True
                result = handle(message, True, family, peer)
                if result is None:
                    continue
                if isinstance(result, bytes):
                    out.append(len(result).to_bytes(2, "big"))
                    out.append(result)
                    pending += len(result) + 2
                    if pending >= _FLUSH_BYTES:
                        self._write_framed(out)
                        out = []
                        pending = 0
                    continue
                self._spawn(result)
            if not buf:
                self._message_started = None
            elif dispatched:
                self._message_started = time.monotonic()  # the next one has begun
        finally:
            self._processing = False
            if out:
                self._write_framed(out)
        self._update_reading()
        self._maybe_finish()

    def _spawn(self, result: Awaitable[bytes | None]) -> None:
        self._pending += 1
        task = asyncio.ensure_future(result)
        self._server.tasks.add(task)
        task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Future[bytes | None]) -> None:
        self._server.tasks.discard(task)
        self._pending -= 1
        reply = None
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("tcp: answering a query failed: %r", exc)
            else:
                reply = task.result()
        if reply is not None and self._transport is not None:
            self._write(reply)
            self._activity()
        if self._transport is not None:
            self._process()

    def _write(self, reply: bytes) -> None:
        self._write_framed([len(reply).to_bytes(2, "big"), reply])

    def _write_framed(self, parts: list[bytes]) -> None:
        """Write replies already framed (length, message, length, message, ...). The
        callers note the activity: a read (data_received), an answer from upstream
        (_finish), the client reading again (resume_writing)."""
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(b"".join(parts))

    def _maybe_finish(self) -> None:
        """After the client's EOF: close once every query it sent has been answered
        (queued replies are still flushed by close())."""
        t = self._transport
        if not self._eof or t is None or t.is_closing():
            return
        if self._pending == 0 and (len(self._buffer) < 2 or not self._complete_message()):
            t.close()

    def _complete_message(self) -> bool:
        buf = self._buffer
        return len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]

    def _update_reading(self) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        should_pause = self._blocked()
        if should_pause and not self._reading_paused:
            t.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            t.resume_reading()
            self._reading_paused = False

    def expired(self, now: float) -> str | None:
        """Why this connection should be closed now, if it should."""
        limits = self._server.limits
        if (
            self._message_started is not None
            and not self._complete_message()  # a whole query waiting on backpressure is fine
            and now - self._message_started > limits.message_seconds
        ):
            return "incomplete message"
        if self._pending == 0 and now - self.last_active > limits.idle_seconds:
            return "idle"
        return None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class TcpServer:
    """RFC 7766 DNS over TCP on one listening socket."""

    def __init__(
        self, sock: socket.socket, handler: QueryHandler, *, limits: TcpLimits | None = None
    ) -> None:
        self.sock = sock
        self.handler = handler
        self.limits = limits or TcpLimits()
        self.tasks: set[asyncio.Future[bytes | None]] = set()
        # Least recently active first: the one to close when the cap is reached.
        self._conns: collections.OrderedDict[_TcpConnection, None] = collections.OrderedDict()
        self._server: asyncio.AbstractServer | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.evicted = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=self.sock)
        self._reaper = asyncio.create_task(self._reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        for task in list(self.tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def _protocol(self) -> asyncio.BaseProtocol:
        # (an asyncio protocol by its methods: see `_TcpConnection`)
        return cast(asyncio.BaseProtocol, _TcpConnection(self))

    # Called by connections.
    def opened(self, conn: _TcpConnection) -> None:
        while len(self._conns) >= self.limits.max_connections:
            victim = self._victim()
            self._conns.pop(victim, None)
            self.evicted += 1
            log.info(
                "tcp: connection cap %d reached, closing the least recently active %s one",
                self.limits.max_connections,
                "busy" if victim.busy else "idle",
            )
            victim.abort()
        self._conns[conn] = None

    def _victim(self) -> _TcpConnection:
        """The connection to close at the cap: the least recently active one with no
        query in flight, else (all busy) the least recently active of all."""
        for conn in self._conns:  # least recently active first
            if not conn.busy:
                return conn
        return next(iter(self._conns))

    def closed(self, conn: _TcpConnection) -> None:
        self._conns.pop(conn, None)

    def touch(self, conn: _TcpConnection) -> None:
        if conn in self._conns:
            self._conns.move_to_end(conn)

    async def _reap(self) -> None:
        interval = max(0.05, min(self.limits.idle_seconds, self.limits.message_seconds) / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self._conns):
                reason = conn.expired(now)
                if reason is not None:
                    log.debug("tcp: closing connection: %s", reason)
                    self._conns.pop(conn, None)
                    conn.abort() if reason == "incomplete message" else conn.close()
