"""The UDP and TCP transports on 127.0.0.1:0 with a stub handler, and the rate limiter.

The transport knows nothing of DNS beyond framing, so the stub's messages are plain bytes:
`S...` is answered at once, `N...` is dropped, `A<key>` is answered when the test resolves
the future for <key>, `B...` gets a big reply. Every wait is bounded by `WAIT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.net import mmsg
from kdns.net.mmsg import Peer
from kdns.serve.chain import Staged
from kdns.serve.rrl import RateLimiter, slip_reply, subnet_key
from kdns.serve.transport import (
    Client,
    ExactReplies,
    HandleResult,
    TcpLimits,
    TcpServer,
    UdpServer,
    _TcpConnection,
    bind_tcp,
    bind_udp,
)

WAIT = 5.0  # seconds: the bound on every wait for something that should happen
BIG = 60_000  # bytes in a `B` reply


class Stub:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool]] = []
        self.futures: dict[bytes, asyncio.Future[bytes | None]] = {}
        self.clients: list[mmsg.SockAddr | None] = []

    def handle(self, data: bytes, tcp: bool, family: str, client: Client = None) -> HandleResult:
        self.calls.append((data, tcp))
        self.clients.append(client.address() if isinstance(client, Peer) else client)
        kind = data[:1]
        if kind == b"N":
            return None
        if kind == b"A":
            future = asyncio.get_running_loop().create_future()
            self.futures[data[1:]] = future
            return future
        if kind == b"F":  # as the server returns a forwarded query: fallback set, closed
            staged = Staged(loop=asyncio.get_running_loop())
            staged.fallback = lambda exc: b"fallback: " + str(exc).encode()
            self.futures[data[1:]] = staged
            return staged
        if kind == b"B":
            return b"R" * BIG
        return b"R" + data

    async def wait_calls(self, n: int) -> None:
        await until(lambda: len(self.calls) >= n)

    async def resolve(self, key: bytes, reply: bytes | None) -> None:
        await until(lambda: key in self.futures)
        self.futures[key].set_result(reply)


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` every 10 ms for at most WAIT seconds."""
    for _ in range(int(WAIT * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still false after {WAIT} s")


# ---- UDP ---------------------------------------------------------------------------------


# Both ways of reading a UDP socket: one datagram per call, and recvmmsg/sendmmsg batches.
READING = [
    pytest.param(False, id="recvfrom"),
    pytest.param(
        True,
        id="recvmmsg",
        marks=pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg here"),
    ),
]


@pytest.fixture(params=READING)
def batched(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@contextlib.asynccontextmanager
async def udp_server(
    handler: Stub,
    *,
    rrl: RateLimiter | None = None,
    batches: list[int] | None = None,
    batched: bool = False,
    host: str = "127.0.0.1",
    exact: ExactReplies | None = None,
) -> AsyncIterator[tuple[UdpServer, socket.socket]]:
    observe = (lambda n, _s: batches.append(n)) if batches is not None else None
    server = UdpServer(
        bind_udp(host, 0), handler, observe_batch=observe, rrl=rrl, batched=batched, exact=exact
    )
    assert server.batched == (batched and rrl is None)
    server.start()
    client = another_client(server, host)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def another_client(server: UdpServer, host: str = "127.0.0.1") -> socket.socket:
    """A non-blocking UDP socket connected to `server` (the caller closes it)."""
    client = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    client.connect((host, server.port))
    return client


async def recv(client: socket.socket, seconds: float = WAIT) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(client, 65535), seconds)


async def nothing_arrives(client: socket.socket, seconds: float = 0.3) -> bool:
    try:
        await recv(client, seconds)
    except TimeoutError:
        return True
    return False


async def test_udp_drains_queued_datagrams_in_bounded_batches(batched: bool) -> None:
    stub, batches = Stub(), list[int]()
    async with udp_server(stub, batches=batches, batched=batched) as (_, client):
        for i in range(100):  # queued before the loop runs the reader
            client.send(b"S%03d" % i)
        got = {await recv(client) for _ in range(100)}
    assert got == {b"RS%03d" % i for i in range(100)}
    assert sum(batches) == 100
    assert max(batches) == 64  # several datagrams per wake-up, then yield to the loop


async def test_udp_async_result_is_sent_when_it_completes(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (_, client):
        client.send(b"Ak1")
        await stub.wait_calls(1)
        assert await nothing_arrives(client)
        await stub.resolve(b"k1", b"late")
        assert await recv(client) == b"late"


async def test_udp_none_is_dropped_and_a_failed_result_sends_nothing(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (_, client):
        client.send(b"N1")
        client.send(b"Ak")
        await stub.wait_calls(2)
        stub.futures[b"k"].set_exception(RuntimeError("upstream exploded"))
        client.send(b"S2")
        assert await recv(client) == b"RS2"  # the first reply: N1 and Ak sent nothing
        assert await nothing_arrives(client)


async def test_udp_close_cancels_pending_results(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (_, client):
        client.send(b"Ak")
        await stub.wait_calls(1)
    assert stub.futures[b"k"].cancelled()


async def test_udp_replies_go_to_each_sender_with_its_own_bytes(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (server, first):
        second = another_client(server)
        with second:
            for i in range(40):  # interleaved and dropped ones: the replies are compacted
                first.send(b"S1-%02d" % i)
                second.send(b"N2-%02d" % i if i % 3 else b"S2-%02d" % i)
            got1 = {await recv(first) for _ in range(40)}
            got2 = {await recv(second) for _ in range(14)}
            assert await nothing_arrives(second)
            addresses = {first.getsockname(), second.getsockname()}
    assert got1 == {b"RS1-%02d" % i for i in range(40)}
    assert got2 == {b"RS2-%02d" % i for i in range(0, 40, 3)}
    assert set(stub.clients) == addresses  # each datagram's own sender, decoded


async def test_udp_a_reply_bigger_than_a_batch_slot_is_sent_alone(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (_, client):
        client.send(b"B")
        client.send(b"S1")
        got = sorted([await recv(client), await recv(client)], key=len)
    assert got == [b"RS1", b"R" * BIG]


async def test_udp_async_result_goes_to_the_sender_after_the_slot_is_reused(
    batched: bool,
) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (server, early):
        early.send(b"Ak")
        await stub.wait_calls(1)
        late = another_client(server)
        with late:
            late.send(b"S-late")  # read into the same receive slot as "Ak"
            assert await recv(late) == b"RS-late"
            await stub.resolve(b"k", b"for early")
            assert await recv(early) == b"for early"
            assert await nothing_arrives(late)


async def test_udp_async_results_completing_together_each_go_to_their_sender(
    batched: bool,
) -> None:
    # Batched: replies that complete in one loop turn leave in one sendmmsg, each to the
    # raw address it came from (not the receive slot, which later batches reuse).
    stub = Stub()
    async with udp_server(stub, batched=batched) as (server, first):
        others = []
        for _ in range(3):
            other = another_client(server)
            others.append(other)
        try:
            clients = [first, *others]
            for n, client in enumerate(clients):
                client.send(b"A%d" % n)
            await stub.wait_calls(4)
            for n in range(4):
                stub.futures[b"%d" % n].set_result(b"reply %d" % n)
            for n, client in enumerate(clients):
                assert await recv(client) == b"reply %d" % n
        finally:
            for other in others:
                other.close()


async def test_udp_forwarded_results_each_go_to_their_sender_when_they_complete(
    batched: bool,
) -> None:
    # A Staged future (the server's forwarded query) is delivered from its own completion
    # (Staged.sink, batched mode) or a done callback: either way to its sender, after
    # later queries have reused the receive slot, and in whatever order they complete;
    # one that fails sends what its fallback made.
    stub = Stub()
    async with udp_server(stub, batched=batched) as (server, first):
        other = another_client(server)
        with other:
            first.send(b"F1")
            other.send(b"F2")
            first.send(b"F3")
            await stub.wait_calls(3)
            staged = stub.futures[b"1"]
            assert isinstance(staged, Staged)
            assert (staged.sink is not None) == server.batched  # (no done callback there)
            other.send(b"S-between")
            assert await recv(other) == b"RS-between"
            stub.futures[b"3"].set_result(b"three")
            stub.futures[b"2"].set_exception(RuntimeError("no upstream"))
            assert await recv(first) == b"three"
            assert await recv(other) == b"fallback: no upstream"
            stub.futures[b"1"].set_result(b"one")
            assert await recv(first) == b"one"
            assert await nothing_arrives(other)
            assert not server._tasks  # (nothing kept once delivered)


async def test_udp_close_cancels_pending_forwarded_results(batched: bool) -> None:
    stub = Stub()
    async with udp_server(stub, batched=batched) as (_, client):
        client.send(b"Fk")
        await stub.wait_calls(1)
    assert stub.futures[b"k"].cancelled()


class Kept:
    def __init__(self, reply: bytes, until: float = float("inf")) -> None:
        self.reply = reply
        self.until = until
        self.v4 = 0
        self.v6 = 0


class Remembering(Stub):
    """A Stub that also offers replies by the query's bytes after the ID."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[bytes, Kept] = {}
        self.batches = 0

    @property
    def exact(self) -> dict[bytes, Kept]:
        return self.kept

    def begin_batch(self) -> float:
        self.batches += 1
        return 100.0


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg here")
async def test_udp_batches_send_remembered_replies_without_the_handler() -> None:
    stub = Remembering()
    stub.kept[b"-known"] = Kept(b"+remembered")
    stub.kept[b"Sstale"] = Kept(b"+too old", until=100.0)  # no later than the batch's time
    async with udp_server(stub, batched=True, exact=stub) as (_, client):
        for i in range(5):
            client.send(b"%02d-known" % i)  # two octets of ID, then the remembered bytes
        client.send(b"S-other")
        client.send(b"S-Sstale")
        got = {await recv(client) for _ in range(7)}
    assert got == {b"%02d+remembered" % i for i in range(5)} | {b"RS-other", b"RS-Sstale"}
    assert stub.calls == [(b"S-other", False), (b"S-Sstale", False)]  # the handler decides
    assert stub.kept[b"-known"].v4 == 5
    assert 1 <= stub.batches <= 6  # once per batch, not per datagram


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg here")
async def test_udp_batches_keep_each_reply_with_its_own_id_when_some_are_dropped() -> None:
    stub = Remembering()
    stub.kept[b"-known"] = Kept(b"+remembered")
    async with udp_server(stub, batched=True, exact=stub) as (_, client):
        for round_ in range(3):  # later batches: the messages were pointed back (restore)
            sent = []
            for i in range(30):
                if i % 4 == round_:
                    client.send(b"N-%02d" % i)  # dropped: the replies after it shift
                elif i % 3:
                    client.send(b"%02d-known" % i)
                    sent.append(b"%02d+remembered" % i)
                else:
                    client.send(b"S%02d" % i)
                    sent.append(b"RS%02d" % i)
            got = [await recv(client) for _ in sent]
            assert sorted(got) == sorted(sent)
            assert await nothing_arrives(client, 0.1)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
async def test_udp_over_ipv6_decodes_the_sender(batched: bool) -> None:
    stub = Stub()
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 here")
    async with udp_server(stub, batched=batched, host="::1") as (_, client):
        client.send(b"S6")
        assert await recv(client) == b"RS6"
        sender = client.getsockname()
    (seen,) = stub.clients
    assert seen is not None
    assert (seen[0], seen[1]) == (sender[0], sender[1])


# ---- TCP ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_server(handler: Stub, **limits: float) -> AsyncIterator[TcpServer]:
    server = TcpServer(bind_tcp("127.0.0.1", 0), handler, limits=TcpLimits(**limits))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(server: TcpServer, *, rcvbuf: int | None = None) -> Conn:
    if rcvbuf is None:
        return await asyncio.open_connection("127.0.0.1", server.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await asyncio.open_connection(sock=sock, limit=4 * BIG)


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


async def read_message(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(WAIT):
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)


async def closed(reader: asyncio.StreamReader, within: float = WAIT) -> bool:
    """True when the server closes (FIN or RST) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                if not await reader.read(65536):
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def wait_connections(server: TcpServer, n: int) -> None:
    await until(lambda: server.connections == n)


async def test_tcp_framing_across_split_reads() -> None:
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        for byte in frame(b"Shello"):  # one byte per segment, the length split too
            writer.write(bytes((byte,)))
            await writer.drain()
            await asyncio.sleep(0.01)
        assert await read_message(reader) == b"RShello"
        assert stub.calls == [(b"Shello", True)]
        writer.close()


async def test_tcp_pipelined_queries_in_one_write_are_all_answered() -> None:
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        writer.write(b"".join(frame(b"S%d" % i) for i in range(20)))
        replies = [await read_message(reader) for _ in range(20)]
        assert replies == [b"RS%d" % i for i in range(20)]  # sync answers keep their order
        writer.close()


async def test_tcp_replies_go_out_as_they_complete() -> None:
    # RFC 7766 §7: answers to pipelined queries may be sent out of order.
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"A1") + frame(b"A2") + frame(b"S3"))
        assert await read_message(reader) == b"RS3"
        await stub.resolve(b"2", b"second")
        assert await read_message(reader) == b"second"
        await stub.resolve(b"1", b"first")
        assert await read_message(reader) == b"first"
        writer.close()


async def test_tcp_in_flight_queries_are_capped_per_connection() -> None:
    stub = Stub()
    async with tcp_server(stub, max_pending=4) as server:
        reader, writer = await connect(server)
        writer.write(b"".join(frame(b"A%d" % i) for i in range(10)))
        await stub.wait_calls(4)
        await asyncio.sleep(0.2)
        assert len(stub.calls) == 4  # the other six wait, unparsed, for a free slot
        for i in range(10):
            await stub.resolve(b"%d" % i, b"r%d" % i)
            assert await read_message(reader) == b"r%d" % i
        assert len(stub.calls) == 10
        writer.close()


async def test_tcp_idle_connection_is_closed() -> None:
    stub = Stub()
    async with tcp_server(stub, idle_seconds=0.3) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"S1"))
        assert await read_message(reader) == b"RS1"
        assert await closed(reader)  # RFC 7766 §6.2.3
        await wait_connections(server, 0)
        writer.close()


async def test_tcp_connection_with_a_query_in_flight_is_not_idle() -> None:
    stub = Stub()
    async with tcp_server(stub, idle_seconds=0.2) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"Aslow"))
        assert not await closed(reader, within=0.8)
        await stub.resolve(b"slow", b"done")
        assert await read_message(reader) == b"done"
        writer.close()


async def test_tcp_dribbling_client_is_closed_after_message_seconds() -> None:
    stub = Stub()
    async with tcp_server(stub, idle_seconds=30, message_seconds=0.5) as server:
        reader, writer = await connect(server)
        writer.write(struct.pack("!H", 200))  # promises 200 bytes, sends one every 50 ms

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        task = asyncio.create_task(dribble())
        # Meanwhile another client is answered.
        r2, w2 = await connect(server)
        w2.write(frame(b"Sother"))
        assert await read_message(r2) == b"RSother"
        assert await closed(reader)  # long before the 5 s it would take to finish
        task.cancel()
        writer.close()
        w2.close()
    assert [c for c, _ in stub.calls] == [b"Sother"]


async def test_tcp_cap_closes_the_least_recently_active_idle_connection() -> None:
    stub = Stub()
    async with tcp_server(stub, max_connections=3) as server:
        busy_r, busy_w = await connect(server)
        busy_w.write(frame(b"Abusy"))  # the least recently active, but waiting for an answer
        await stub.wait_calls(1)
        idle1_r, idle1_w = await connect(server)
        idle2_r, idle2_w = await connect(server)
        await wait_connections(server, 3)
        new_r, new_w = await connect(server)
        new_w.write(frame(b"Snew"))
        assert await read_message(new_r) == b"RSnew"  # a new client is not refused
        assert await closed(idle1_r)
        assert not await closed(idle2_r, within=0.2)
        await stub.resolve(b"busy", b"answered")
        assert await read_message(busy_r) == b"answered"
        assert server.evicted == 1
        for w in (busy_w, idle1_w, idle2_w, new_w):
            w.close()


async def test_tcp_cap_with_every_connection_busy_closes_the_least_recently_active() -> None:
    stub = Stub()
    async with tcp_server(stub, max_connections=2) as server:
        conns = []
        for i in range(2):
            r, w = await connect(server)
            w.write(frame(b"A%d" % i))
            await stub.wait_calls(i + 1)
            conns.append((r, w))
        new_r, new_w = await connect(server)
        new_w.write(frame(b"Snew"))
        assert await read_message(new_r) == b"RSnew"
        assert await closed(conns[0][0])
        await stub.resolve(b"1", b"one")
        assert await read_message(conns[1][0]) == b"one"
        for _, w in (*conns, (new_r, new_w)):
            w.close()


async def test_tcp_half_close_answers_pending_then_closes() -> None:
    # RFC 7766 §6.2.4 / RFC 1035 §4.2.2: the client may close its side after its queries.
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"A1") + frame(b"S2"))
        writer.write_eof()
        assert await read_message(reader) == b"RS2"
        await stub.resolve(b"1", b"one")
        assert await read_message(reader) == b"one"
        assert await closed(reader)
        writer.close()


async def test_tcp_half_close_with_nothing_pending_closes() -> None:
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"S1") + b"\x00\x09par")  # and half a message
        writer.write_eof()
        assert await read_message(reader) == b"RS1"
        assert await closed(reader)
        writer.close()


async def test_tcp_client_that_does_not_read_stops_being_read() -> None:
    # Bounded memory: the unsent replies stay under max_write_buffer (plus kernel buffers)
    # because kdns stops reading, and so stops answering, a client that does not read.
    stub = Stub()
    queries = 400  # 400 x 60 kB = 24 MB of replies, far above any socket buffer
    async with tcp_server(stub, max_write_buffer=64 * 1024) as server:
        reader, writer = await connect(server, rcvbuf=64 * 1024)
        writer.write(b"".join(frame(b"B%d" % i) for i in range(queries)))
        await asyncio.sleep(0.5)
        handled = len(stub.calls)
        assert 0 < handled < queries // 2
        got = 0
        async with asyncio.timeout(4 * WAIT):
            for _ in range(queries):
                assert len(await read_message(reader)) == BIG
                got += 1
        assert got == len(stub.calls) == queries
        writer.close()


async def test_tcp_close_aborts_connections_and_cancels_tasks() -> None:
    stub = Stub()
    async with tcp_server(stub) as server:
        reader, writer = await connect(server)
        writer.write(frame(b"Ak"))
        await stub.wait_calls(1)
    assert await closed(reader)
    assert stub.futures[b"k"].cancelled()
    writer.close()


# ---- response-rate limiting ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dns_reply(*, opt: bool = False, answers: int = 3) -> bytes:
    """A reply to a `x.` A query: header, question, `answers` A records, maybe a bare OPT."""
    question = b"\x01x\x00\x00\x01\x00\x01"
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01"
    opt_rr = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    head = struct.pack("!6H", 0xBEEF, 0x8580, 1, answers, 0, 1 if opt else 0)
    return head + question + rr * answers + (opt_rr if opt else b"")


def test_subnet_key_groups_by_24_and_56() -> None:
    assert subnet_key("192.0.2.1") == subnet_key("192.0.2.254")
    assert subnet_key("192.0.2.1") != subnet_key("192.0.3.1")
    assert subnet_key("2001:db8:0:ab00::1") == subnet_key("2001:db8:0:abff::2")  # same /56
    assert subnet_key("2001:db8:0:ab00::1") != subnet_key("2001:db8:0:ac00::1")
    assert subnet_key("::ffff:192.0.2.7") == subnet_key("192.0.2.1")
    assert subnet_key("fe80::1%lo") == subnet_key("fe80::2")


def test_slip_reply_is_header_and_question_with_tc() -> None:
    for opt in (False, True):
        out = slip_reply(dns_reply(opt=opt))
        assert out is not None
        qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", out)
        assert (qid, qd, an, ns, ar) == (0xBEEF, 1, 0, 0, int(opt))
        assert flags == 0x8580 | 0x0200  # TC set, everything else kept
        assert out[12:19] == b"\x01x\x00\x00\x01\x00\x01"
        assert len(out) == 19 + (11 if opt else 0)
    assert slip_reply(b"short") is None


def test_rate_limiter_buckets_refill_and_slip() -> None:
    clock = Clock()
    rrl = RateLimiter(2, slip=2, clock=clock)  # 2/s, burst 2
    reply = dns_reply()
    out = [rrl.limit("192.0.2.1", reply) for _ in range(6)]
    assert out[:2] == [reply, reply]
    assert [o is None for o in out[2:]] == [True, False, True, False]  # every 2nd slips
    assert out[3] is not None
    assert out[3][2] & 0x02
    assert rrl.limit("198.51.100.1", reply) == reply  # another subnet has its own bucket
    clock.now += 0.5  # one token back
    assert rrl.limit("192.0.2.9", reply) == reply
    assert rrl.limit("192.0.2.9", reply) is None
    assert (rrl.sent, rrl.slipped, rrl.dropped) == (4, 2, 3)


@pytest.mark.parametrize(("slip", "slipped"), [(0, 0), (1, 4), (3, 1)])
def test_rate_limiter_slip_settings(slip: int, slipped: int) -> None:
    rrl = RateLimiter(1, slip=slip, burst=1, clock=Clock())
    results = [rrl.limit("10.0.0.1", dns_reply()) for _ in range(5)]
    assert sum(r is not None for r in results[1:]) == slipped


def test_rate_limiter_keeps_a_bounded_number_of_subnets() -> None:
    clock = Clock()
    rrl = RateLimiter(10, max_subnets=100, clock=clock)
    for i in range(1000):
        rrl.limit(f"10.{i // 256}.{i % 256}.1", b"")
        assert len(rrl) <= 100


async def test_udp_with_rrl_limits_replies_to_one_subnet() -> None:
    stub = Stub()
    reply = dns_reply(answers=10)
    stub.handle = lambda data, tcp, family, client=None: reply  # type: ignore[method-assign]
    rrl = RateLimiter(3, slip=2, clock=Clock())  # a frozen clock: no refill
    async with udp_server(stub, rrl=rrl) as (_, client):
        for _ in range(9):
            client.send(b"q")
        got = [await recv(client) for _ in range(6)]  # 3 whole, then 3 of 6 slipped
        assert await nothing_arrives(client)
    assert got[:3] == [reply] * 3
    assert all(g[2] & 0x02 and len(g) == 19 for g in got[3:])
    assert (rrl.sent, rrl.slipped, rrl.dropped) == (3, 3, 3)


# ---- framing, property-based ---------------------------------------------------------------


class FakeTransport:
    """Just enough of asyncio.Transport for `_TcpConnection` (no sockets)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.writes: list[int] = []  # the size of each write
        self.closing = False

    def get_extra_info(self, name: str) -> object:
        return None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes.append(len(data))

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    abort = close


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50),
)
def test_framing_delivers_every_message_whatever_the_segmentation(
    messages: list[bytes], cuts: list[int]
) -> None:
    # RFC 7766 §8: a 2-byte length then the message, split across reads in any way.
    stub = Stub()
    server = TcpServer(socket.socket(), stub)  # never started: only the framing is used
    try:
        conn = _TcpConnection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        stream = b"".join(frame(b"S" + m) for m in messages)
        pos, i = 0, 0
        while pos < len(stream):  # bounded: pos grows by at least 1 per step
            step = cuts[i % len(cuts)]
            conn.data_received(stream[pos : pos + step])
            pos, i = pos + step, i + 1
        assert [c for c, _ in stub.calls] == [b"S" + m for m in messages]
        assert bytes(transport.written) == b"".join(frame(b"RS" + m) for m in messages)
        assert conn.expired(time.monotonic() + 1e6) == "idle"  # no partial message left
    finally:
        server.sock.close()


def test_replies_to_a_pipelined_batch_go_out_in_few_writes() -> None:
    stub = Stub()
    server = TcpServer(socket.socket(), stub)  # never started: only the framing is used
    try:
        conn = _TcpConnection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"".join(frame(b"S%d" % i) for i in range(10)))
        assert transport.writes == [sum(len(frame(b"RS%d" % i)) for i in range(10))]
        big = b"S" + bytes(4000)  # 40 KB of replies: written at least every 16 KiB
        conn.data_received(frame(big) * 10)
        assert bytes(transport.written).endswith(frame(b"R" + big) * 10)
        assert len(transport.writes) >= 1 + 2
        assert max(transport.writes[1:]) <= 16 * 1024 + len(frame(b"R" + big))
    finally:
        server.sock.close()


async def test_udp_a_handler_that_raises_loses_only_that_query(batched: bool) -> None:
    stub = Stub()
    plain = stub.handle

    def handle(data: bytes, tcp: bool, family: str, client: Client = None) -> HandleResult:
        if data.startswith(b"X"):
            raise RuntimeError("a bug")
        return plain(data, tcp, family, client)

    stub.handle = handle  # type: ignore[method-assign]
    async with udp_server(stub, batched=batched) as (_, client):
        for i in range(3):
            client.send(b"N%d" % i)  # dropped: the replies after it are shifted
            client.send(b"X%d" % i)
            client.send(b"S%d" % i)
        got = {await recv(client) for _ in range(3)}
        assert await nothing_arrives(client)
    assert got == {b"RS0", b"RS1", b"RS2"}


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg here")
@given(st.binary(max_size=2000))
def test_replies_are_sent_from_where_cpython_keeps_their_bytes(reply: bytes) -> None:
    assert mmsg.BYTES_DATA is not None
    assert ctypes.string_at(id(reply) + mmsg.BYTES_DATA, len(reply)) == reply
