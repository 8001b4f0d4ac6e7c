"""A tiny scripted DNS server on 127.0.0.1 (UDP and TCP on one free port) for forwarding tests.

Like dnspython's tests/nanonameserver.py: by default it answers from zone-file lines given
with `add()` (NXDOMAIN/NODATA with an SOA otherwise); a `handler` can script anything else:
truncate, drop, delay, answer with a wrong ID or question first (spoofs), or relay. Every
query is recorded in `queries`, with the client's source port and (over TCP) the number of
its connection. With `tls` the stream side is DNS over TLS (RFC 7858) instead of plain TCP.
Test-only: dnslib is used freely here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord

from kdns.config.settings import HostPort

DEFAULT_SOA = "test. 60 IN SOA ns.test. hostmaster.test. 1 7200 1800 86400 10"


@dataclass(frozen=True)
class Received:
    proto: str  # "udp" | "tcp" | "tls"
    qname: str  # lower-case, absolute
    qtype: str  # mnemonic
    qid: int
    port: int = 0  # the client's source port
    conn: int = 0  # over TCP/TLS: which connection (1, 2, ...), in the order accepted
    rd: bool = True


@dataclass
class Answer:
    """What to do with one query: send `before` first (UDP only), wait `delay`, then send
    `reply` (None = stay silent); over TCP/TLS `hangup` closes the connection instead."""

    reply: DNSRecord | bytes | None
    delay: float = 0.0
    before: list[bytes] = field(default_factory=list)
    hangup: bool = False


Handler = Callable[["FakeUpstream", DNSRecord, str], "Answer | Awaitable[Answer]"]


def with_id(reply: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + reply[2:]


class FakeUpstream:
    """`async with FakeUpstream() as up:` then query `up.addr`."""

    def __init__(
        self,
        *,
        handler: Handler | None = None,
        truncate_udp: bool = False,
        soa: str = DEFAULT_SOA,
        tls: ssl.SSLContext | None = None,
        close_after_reply: bool = False,
    ) -> None:
        self.handler = handler
        self.truncate_udp = truncate_udp
        self.tls = tls
        self.close_after_reply = close_after_reply  # TCP/TLS: hang up after each reply
        self.connections = 0
        self.soa = soa
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[Received] = []
        self.addr = HostPort("127.0.0.1", 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, *lines: str) -> None:
        """Zone-file lines to answer from, e.g. `www.example. 300 IN A 192.0.2.1`."""
        for line in lines:
            for rr in RR.fromZone(line):
                key = (str(rr.rname).lower(), QTYPE[rr.rtype])
                self.records.setdefault(key, []).append(line)

    def count(self, qname: str | None = None, *, proto: str | None = None) -> int:
        return sum(
            1
            for q in self.queries
            if (qname is None or q.qname == qname.lower()) and (proto is None or q.proto == proto)
        )

    # - answers -

    def resolve(self, request: DNSRecord) -> DNSRecord:
        """The default answer from `records` (RFC 2308 negative answers carry the SOA)."""
        reply = request.reply()
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        lines = self.records.get((qname, qtype))
        if lines:
            for line in lines:
                reply.add_answer(*RR.fromZone(line))
            return reply
        if not any(name == qname for name, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(*RR.fromZone(self.soa))
        return reply

    async def _decide(self, request: DNSRecord, proto: str) -> Answer:
        if self.handler is None:
            return Answer(self.resolve(request))
        result = self.handler(self, request, proto)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Answer)
        return result

    async def _respond(
        self,
        data: bytes,
        proto: str,
        send: Callable[[bytes], None],
        port: int = 0,
        conn: int = 0,
        close: Callable[[], None] | None = None,
    ) -> None:
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return
        self.queries.append(
            Received(
                proto,
                str(request.q.qname).lower(),
                QTYPE[request.q.qtype],
                request.header.id,
                port,
                conn,
                bool(request.header.rd),
            )
        )
        answer = await self._decide(request, proto)
        if proto == "udp":
            for spoof in answer.before:
                send(spoof)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.hangup and close is not None:
            close()
            return
        reply = answer.reply
        if reply is None:
            return
        if isinstance(reply, DNSRecord):
            if proto == "udp" and self.truncate_udp:
                reply = request.reply()
                reply.header.tc = 1
            reply = reply.pack()
        send(reply)

    # - sockets -

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> HostPort:
        loop = asyncio.get_running_loop()
        fake = self

        class _Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                assert fake._udp is not None
                transport = fake._udp
                fake._spawn(
                    fake._respond(data, "udp", lambda b: transport.sendto(b, addr), addr[1])
                )

        proto = "tls" if self.tls is not None else "tcp"

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            conn = self.connections
            port = writer.get_extra_info("peername")[1]

            def send(reply: bytes) -> None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                if self.close_after_reply:
                    writer.close()

            try:
                while not writer.is_closing():
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                    # Queries on one connection are answered concurrently (RFC 7766 §6.2.1.1).
                    self._spawn(self._respond(data, proto, send, port, conn, writer.close))
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        for _ in range(20):  # a free port for UDP that is also free for TCP
            transport, _proto = await loop.create_datagram_endpoint(
                _Udp, local_addr=("127.0.0.1", 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(on_tcp, "127.0.0.1", port, ssl=self.tls)
            except OSError:
                transport.close()
                continue
            self._udp = transport
            self.addr = HostPort("127.0.0.1", port)
            return self.addr
        raise RuntimeError("no free port for the fake upstream")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
