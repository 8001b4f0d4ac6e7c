"""Forwarding through real sockets on 127.0.0.1 to the scripted fake upstream (and dnsmasq).

Expected behaviour comes from CoreDNS's forward and cache plugins (and its pkg/proxy) and
the RFCs cited per test. Queries go through `cache` then `forward` as a chain
(`Forwarding`), as the flags and kind's Corefile build them. Time inside the cache is a
fake clock; only timeouts and health-check intervals are real (and short).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from kdns.config.model import CacheConfig, ForwardConfig, ForwardPolicy, Upstream
from kdns.config.resolvconf import parse_resolv_conf, upstreams_from_resolv_conf
from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.dns.records import Question, Rcode, Reply
from kdns.net import mmsg
from kdns.observe.stats import Stats
from kdns.plugins.cache import CachePlugin
from kdns.plugins.forward import ForwardPlugin
from kdns.serve.chain import Plugin, Request, Response, link
from kdns.serve.fastpath import ReplyCache
from kdns.serve.server import Block, DnsServer
from kdns.upstream.forward import (
    Forwarder,
    LoopError,
    UpstreamError,
    _Pending,
    _UdpSocket,
    check_self_forwarding,
)
from tests.e2e.kdns_process import free_port
from tests.fakes.upstream import Answer, FakeUpstream, with_id
from tests.plugins.canned import Canned
from tests.serve.test_server import default_index

TIMEOUT = 0.3  # per-try upstream timeout in these tests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Forwarding:
    """`cache 30` in front of `forward`, over a real Forwarder; `forward()` answers a query
    as the server would (None when no upstream answered), fitted to a UDP client."""

    def __init__(
        self,
        upstreams: list[HostPort | Upstream],
        *,
        cache_size: int = 9984,
        clock: Clock | None = None,
        except_zones: tuple[str, ...] = (),
        **kw: object,
    ) -> None:
        self.stats = Stats()
        to = tuple(u if isinstance(u, Upstream) else Upstream(u) for u in upstreams)
        config = ForwardConfig(to=to, except_zones=except_zones)
        self.plugin = ForwardPlugin(config, stats=self.stats)
        self.forwarder = self.plugin.forwarder = Forwarder(to, stats=self.stats, **kw)  # type: ignore[arg-type]
        cache = CacheConfig(
            success_capacity=cache_size, denial_capacity=cache_size, success_ttl=30, denial_ttl=30
        )
        self.cache = CachePlugin(cache, stats=self.stats, clock=clock or Clock())
        self.chain = link([self.cache, self.plugin])
        self.last_error: str | None = None

    async def answer(self, data: bytes, *, question: Question, tcp: bool) -> Response:
        query = wire.decode_query(data)
        request = Request(data=data, query=query, tcp=tcp, family="1", max_size=65535, zone=".")
        assert request.question == question
        result = self.chain.serve(request)
        return result if isinstance(result, Response) else await result

    async def forward(self, data: bytes, *, question: Question, tcp: bool) -> bytes | None:
        response = await self.answer(data, question=question, tcp=tcp)
        self.last_error = response.error
        if response.error is not None:
            return None
        assert response.wire is not None
        if tcp:
            return response.wire
        parsed = wire.decode_query(data)
        limit = max(512, parsed.edns.payload if parsed.edns is not None else 0)
        return wire.truncate_for(parsed, response.wire, max_size=limit)

    async def close(self) -> None:
        await self.forwarder.close()


_OPEN: list[Forwarding] = []


def make(upstreams: list[HostPort | Upstream], **kw: object) -> Forwarding:
    """A Forwarding closed at the end of the test (`_close_forwarders`)."""
    kw.setdefault("timeout_seconds", TIMEOUT)
    kw.setdefault("health_interval_seconds", 0.05)
    kw.setdefault("health_timeout_seconds", 0.05)
    fwd = Forwarding(upstreams, **kw)  # type: ignore[arg-type]
    _OPEN.append(fwd)
    return fwd


@pytest.fixture(autouse=True)
async def _close_forwarders() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


def query(name: str, qtype: str = "A", *, qid: int = 4321, edns: bool = False) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns:
        q.add_ar(EDNS0(udp_len=1232))
    return bytes(q.pack())


async def ask(fwd: Forwarding, name: str, qtype: str = "A", **kw: object) -> DNSRecord | None:
    tcp = bool(kw.pop("tcp", False))
    data = await fwd.forward(
        query(name, qtype, **kw),  # type: ignore[arg-type]
        question=Question(name.rstrip(".") + ".", getattr(QTYPE, qtype)),
        tcp=tcp,
    )
    return None if data is None else DNSRecord.parse(data)


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def lines(reply: DNSRecord) -> list[str]:
    return sorted(f"{rr.rname} {rr.ttl} {QTYPE[rr.rtype]} {rr.rdata}".lower() for rr in reply.rr)


@pytest.fixture
async def up() -> FakeUpstream:  # type: ignore[misc]
    fake = FakeUpstream()
    fake.add(
        "www.example.com. 20 IN A 192.0.2.1",
        "long.example.com. 3600 IN A 192.0.2.2",
        "short.example.com. 1 IN A 192.0.2.3",
        "mx.example.com. 300 IN MX 10 mail.example.com.",
    )
    async with fake:
        yield fake


# --- relaying ------------------------------------------------------------------------


async def test_answer_is_relayed_with_the_client_id(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    reply = await ask(fwd, "www.example.com.", qid=4321)
    assert reply is not None
    assert reply.header.id == 4321
    assert lines(reply) == ["www.example.com. 20 a 192.0.2.1"]
    assert up.count("www.example.com.") == 1


async def test_the_response_names_the_upstream_that_answered(up: FakeUpstream) -> None:
    # For `kdns explain`: a relayed reply says who sent it; a cache hit names no upstream.
    async with FakeUpstream(handler=lambda _f, _r, _p: Answer(None)) as dead:
        fwd = make([dead.addr, up.addr], policy=ForwardPolicy.SEQUENTIAL)
        data = query("www.example.com.")
        request = Request(
            data=data, query=wire.decode_query(data), tcp=False, family="1", max_size=512, zone="."
        )
        result = fwd.chain.serve(request)
        first = result if isinstance(result, Response) else await result
        assert (first.plugin, first.upstream) == ("forward", str(up.addr))
        result = fwd.chain.serve(request)
        again = result if isinstance(result, Response) else await result
        assert (again.plugin, again.upstream) == ("cache", None)
        await fwd.close()


async def test_each_upstream_query_gets_a_fresh_random_id(up: FakeUpstream) -> None:
    # RFC 5452 §4.3: the ID sent upstream is random, not the client's.
    fwd = make([up.addr])
    for name in ("a.example.com.", "b.example.com.", "c.example.com."):
        await ask(fwd, name, qid=7)
    ids = {q.qid for q in up.queries}
    assert len(ids) > 1  # three equal random IDs: probability 2^-32


async def test_truncated_udp_reply_is_retried_over_tcp() -> None:
    async with FakeUpstream(truncate_udp=True) as up:
        up.add("big.example.com. 60 IN A 192.0.2.9")
        fwd = make([up.addr])
        reply = await ask(fwd, "big.example.com.")
        assert reply is not None
        assert reply.header.tc == 0
        assert lines(reply) == ["big.example.com. 30 a 192.0.2.9"]  # capped at 30
        assert (up.count(proto="udp"), up.count(proto="tcp")) == (1, 1)


async def test_a_client_over_tcp_is_forwarded_over_tcp(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    reply = await ask(fwd, "www.example.com.", tcp=True)
    assert reply is not None
    assert reply.rr
    assert (up.count(proto="udp"), up.count(proto="tcp")) == (0, 1)


async def test_reply_too_big_for_a_udp_client_comes_back_truncated() -> None:
    # RFC 7766 §5 / RFC 1035 §4.2.1: over 512 bytes without EDNS -> TC, the client uses TCP.
    async with FakeUpstream(truncate_udp=True) as up:
        up.add(*(f"many.example.com. 60 IN TXT {'x' * 200}{i}" for i in range(4)))
        fwd = make([up.addr])
        small = await ask(fwd, "many.example.com.", "TXT")
        assert small is not None
        assert small.header.tc == 1
        assert not small.rr
        full = await ask(fwd, "many.example.com.", "TXT", tcp=True)
        assert full is not None
        assert len(full.rr) == 4


async def test_no_upstream_answering_gives_none() -> None:
    async with FakeUpstream(handler=lambda _f, _r, _p: Answer(None)) as dead:
        fwd = make([dead.addr])
        assert await ask(fwd, "www.example.com.") is None
        await fwd.close()


async def test_replies_with_a_wrong_id_or_question_are_ignored(up: FakeUpstream) -> None:
    # RFC 5452 §9.1: only a reply matching ID, name, type and class is accepted.
    def spoofing(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        good = bytes(fake.resolve(request).pack())
        wrong_id = with_id(good, (request.header.id + 1) % 65536)
        other = DNSRecord.question("evil.example.com.", "A")
        other.header.id = request.header.id
        forged = other.reply()
        forged.add_answer(RR("evil.example.com.", QTYPE.A, rdata=A("6.6.6.6"), ttl=60))
        return Answer(good, before=[wrong_id, bytes(forged.pack())], delay=0.05)

    up.handler = spoofing
    fwd = make([up.addr])
    reply = await ask(fwd, "www.example.com.")
    assert reply is not None
    assert lines(reply) == ["www.example.com. 20 a 192.0.2.1"]


async def test_only_spoofed_replies_time_out(up: FakeUpstream) -> None:
    def only_spoof(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        good = bytes(fake.resolve(request).pack())
        return Answer(None, before=[with_id(good, (request.header.id + 1) % 65536)])

    up.handler = only_spoof
    fwd = make([up.addr])
    assert await ask(fwd, "www.example.com.") is None
    await fwd.close()


async def test_a_tcp_reply_with_a_wrong_id_is_never_relayed(up: FakeUpstream) -> None:
    # RFC 5452 §9.1 over TCP: the connection carries only our query, so a reply with
    # another ID fails that upstream and the next one is asked.
    def wrong_id(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        good = bytes(fake.resolve(request).pack())
        return Answer(with_id(good, (request.header.id + 1) % 65536))

    async with FakeUpstream(handler=wrong_id) as liar:
        liar.add("www.example.com. 20 IN A 6.6.6.6")
        fwd = make([liar.addr, up.addr], policy=ForwardPolicy.SEQUENTIAL)
        reply = await ask(fwd, "www.example.com.", tcp=True, qid=77)
        assert reply is not None
        assert reply.header.id == 77
        assert lines(reply) == ["www.example.com. 20 a 192.0.2.1"]
        assert (liar.count(proto="tcp"), up.count(proto="tcp")) == (1, 1)
        await fwd.close()


async def test_past_max_concurrent_the_query_is_refused(up: FakeUpstream) -> None:
    arrived = asyncio.Event()

    def slow(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        arrived.set()
        return Answer(fake.resolve(request), delay=0.2)

    up.handler = slow
    fwd = make([up.addr], max_concurrent=1)
    first = asyncio.ensure_future(ask(fwd, "www.example.com."))
    await asyncio.wait_for(arrived.wait(), 2)
    refused = await ask(fwd, "long.example.com.", qid=99)
    assert refused is not None
    assert (refused.header.rcode, refused.header.id) == (RCODE.REFUSED, 99)
    assert fwd.stats.max_concurrent_rejects == 1
    reply = await first
    assert reply is not None
    assert reply.header.rcode == RCODE.NOERROR


async def test_durations_are_observed_per_upstream_and_rcode(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    await ask(fwd, "www.example.com.")
    await ask(fwd, "nowhere.example.com.")
    keys = set(fwd.stats.proxy_durations)
    assert keys == {(str(up.addr), "NOERROR"), (str(up.addr), "NXDOMAIN")}
    assert all(h.n == 1 for h in fwd.stats.proxy_durations.values())


# --- the cache -----------------------------------------------------------------------


async def test_cache_hit_needs_no_second_upstream_query_and_decrements_ttl(
    up: FakeUpstream,
) -> None:
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    first = await ask(fwd, "www.example.com.", qid=1)
    clock.now += 7
    second = await ask(fwd, "WWW.Example.COM.", qid=2)
    assert first is not None
    assert second is not None
    assert up.count("www.example.com.") == 1
    assert lines(first) == ["www.example.com. 20 a 192.0.2.1"]
    # RFC 1035 §4.1.3 / RFC 2181 §8: the TTL counts down while cached.
    assert lines(second) == ["www.example.com. 13 a 192.0.2.1"]
    # The client's ID and its spelling of the question (0x20).
    assert second.header.id == 2
    assert str(second.q.qname) == "WWW.Example.COM."
    assert fwd.stats.cache_hits == {"success": 1}
    assert fwd.stats.cache_misses == 1


async def test_cached_ttls_are_capped_at_30_seconds(up: FakeUpstream) -> None:
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    reply = await ask(fwd, "long.example.com.")
    assert reply is not None
    assert lines(reply) == ["long.example.com. 30 a 192.0.2.2"]
    clock.now += 29
    await ask(fwd, "long.example.com.")
    assert up.count("long.example.com.") == 1
    clock.now += 2
    await ask(fwd, "long.example.com.")
    assert up.count("long.example.com.") == 2


async def test_short_ttls_are_kept_at_least_5_seconds(up: FakeUpstream) -> None:
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    await ask(fwd, "short.example.com.")
    clock.now += 4
    again = await ask(fwd, "short.example.com.")
    assert up.count("short.example.com.") == 1
    assert again is not None
    assert lines(again) == ["short.example.com. 0 a 192.0.2.3"]
    clock.now += 2
    await ask(fwd, "short.example.com.")
    assert up.count("short.example.com.") == 2


@pytest.mark.parametrize(
    ("name", "rcode"),
    [("nowhere.example.com.", RCODE.NXDOMAIN), ("mx.example.com.", RCODE.NOERROR)],
    ids=["nxdomain", "nodata"],
)
async def test_negative_answers_are_cached_for_the_soa_minimum(
    up: FakeUpstream, name: str, rcode: int
) -> None:
    # RFC 2308 §5: min(SOA TTL 60, MINIMUM 10) = 10 s.
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    first = await ask(fwd, name)
    assert first is not None
    assert first.header.rcode == rcode
    assert not first.rr
    assert [str(rr.rname) for rr in first.auth] == ["test."]
    clock.now += 9
    again = await ask(fwd, name)
    assert again is not None
    assert again.header.rcode == rcode
    assert again.auth[0].ttl == 1  # 10 when stored, 9 s later
    assert up.count(name) == 1
    assert fwd.stats.cache_hits == {"denial": 1}
    clock.now += 2
    await ask(fwd, name)
    assert up.count(name) == 2


async def test_servfail_is_cached_5_seconds(up: FakeUpstream) -> None:
    def servfail(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return Answer(reply)

    up.handler = servfail
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    first = await ask(fwd, "www.example.com.")
    assert first is not None
    assert first.header.rcode == RCODE.SERVFAIL
    clock.now += 4
    await ask(fwd, "www.example.com.")
    assert up.count() == 1
    clock.now += 2
    await ask(fwd, "www.example.com.")
    assert up.count() == 2


async def test_the_cache_is_bounded(up: FakeUpstream) -> None:
    fwd = make([up.addr], cache_size=2)
    for name in ("www.example.com.", "long.example.com.", "short.example.com."):
        await ask(fwd, name)
    fwd.stats.flush()
    assert fwd.stats.cache_entries == {"success": 2, "denial": 0}
    assert fwd.stats.cache_evictions == {"success": 1}
    await ask(fwd, "www.example.com.")  # the least recently used went first
    assert up.count("www.example.com.") == 2


async def test_edns_plain_and_do_queries_are_cached_apart(up: FakeUpstream) -> None:
    # RFC 6891 §7: a client without EDNS never gets an OPT record; DO=1 gets its own entry.
    fwd = make([up.addr])
    await ask(fwd, "www.example.com.", edns=True)
    plain = await ask(fwd, "www.example.com.")
    assert plain is not None
    assert not plain.ar
    await ask(fwd, "www.example.com.")
    assert up.count("www.example.com.") == 2
    await ask(fwd, "www.example.com.", edns=True)
    assert up.count("www.example.com.") == 2
    do = DNSRecord.question("www.example.com.", "A")
    do.add_ar(EDNS0(udp_len=1232, flags="do"))
    await fwd.forward(bytes(do.pack()), question=Question("www.example.com.", 1), tcp=False)
    assert up.count("www.example.com.") == 3


# --- connections (CoreDNS pkg/proxy: connections reused for `expire`) ----------------


def silent(_fake: FakeUpstream, _request: DNSRecord, _proto: str) -> Answer:
    return Answer(None)


async def test_udp_queries_reuse_a_few_sockets_each_on_its_own_port(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    for n in range(20):
        await ask(fwd, f"q{n}.example.com.")
    ports = {q.port for q in up.queries}
    assert 1 < len(ports) < 20
    assert len({q.qid for q in up.queries}) > 1  # and still a fresh ID each (RFC 5452 §4.3)


async def test_queries_of_one_loop_turn_leave_together_on_one_socket(up: FakeUpstream) -> None:
    # Sent in one sendmmsg (kdns.net.mmsg.Outbox): one source port for the turn, and
    # still a fresh random ID per query (RFC 5452 §4.3).
    fwd = make([up.addr])
    names = [f"t{n}.example.com." for n in range(12)]
    replies = await asyncio.gather(*(ask(fwd, name) for name in names))
    assert all(r is not None for r in replies)
    asked = [q for q in up.queries if q.qname in names]
    assert len(asked) == 12
    assert len({q.port for q in asked}) == 1
    assert len({q.qid for q in asked}) == 12
    for name in names:  # the next turn moves on to another socket
        await ask(fwd, "next-" + name)
    assert len({q.port for q in up.queries}) > 1


async def test_more_replies_at_once_than_one_read_takes_all_reach_their_queries(
    up: FakeUpstream,
) -> None:
    # Replies are read with recvmmsg, up to 32 a call (kdns.net.mmsg.Inbox): the replies
    # to 100 queries of one turn, queued together, take several reads of one wake-up;
    # each still reaches its own query.
    names = [f"many{n}.example.com." for n in range(100)]
    up.add(*(f"{name} 60 IN A 192.0.2.{n}" for n, name in enumerate(names)))
    fwd = make([up.addr])
    replies = await asyncio.gather(*(ask(fwd, name) for name in names))
    for n, (name, reply) in enumerate(zip(names, replies, strict=True)):
        assert reply is not None
        assert lines(reply) == [f"{name} 30 a 192.0.2.{n}"]  # (TTL capped by `cache 30`)


@pytest.mark.skipif(not mmsg.available(), reason="batched sends need Linux and CPython")
async def test_a_query_the_kernel_refuses_to_send_fails_alone(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    fwd.forwarder._started()
    pool_up = fwd.forwarder._ups[0]
    results: list[bytes | UpstreamError] = []
    sock = _UdpSocket(pool_up, asyncio.get_running_loop(), one_off=False)
    try:
        good = query("ok.example.com.", qid=7)
        too_big = good + b"\x00" * 70000  # over the UDP limit: EMSGSIZE
        for qid, data in ((7, good), (8, too_big), (9, query("ok2.example.com.", qid=9))):
            key = wire.question_key(wire.decode_query(data[: len(good)] if qid == 8 else data))
            sock.send(data, _Pending(results.append, qid, 0, key, sock))
        await until(lambda: len(results) == 3)
    finally:
        sock.close()
    errors = [r for r in results if isinstance(r, UpstreamError)]
    assert len(errors) == 1
    assert "UDP send" in str(errors[0])
    assert sum(isinstance(r, bytes) for r in results) == 2


async def test_expire_0_opens_a_socket_per_query(up: FakeUpstream) -> None:
    fwd = make([up.addr], expire_seconds=0)
    for n in range(5):
        await ask(fwd, f"q{n}.example.com.")
    # A new random source port each time (two equal by chance: ~1 in 28000 per pair).
    assert len({q.port for q in up.queries}) >= 4


async def test_udp_sockets_are_replaced_after_expire(up: FakeUpstream) -> None:
    fwd = make([up.addr], expire_seconds=0.05)
    for n in range(8):
        await ask(fwd, f"a{n}.example.com.")
    first = {q.port for q in up.queries}
    await asyncio.sleep(0.1)
    for n in range(8):
        await ask(fwd, f"b{n}.example.com.")
    later = {q.port for q in up.queries if q.qname.startswith("b")}
    assert later - first  # new sockets, new source ports


async def test_tcp_queries_are_pipelined_on_one_connection(up: FakeUpstream) -> None:
    # RFC 7766 §6.2.1.1: several queries in flight on one connection, matched by ID.
    def slow(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        return Answer(fake.resolve(request), delay=0.05)

    up.handler = slow
    fwd = make([up.addr])
    names = [f"p{n}.example.com." for n in range(5)]
    replies = await asyncio.gather(*(ask(fwd, n, tcp=True, qid=100 + i)
                                     for i, n in enumerate(names)))  # fmt: skip
    assert [r.header.id for r in replies if r is not None] == [100, 101, 102, 103, 104]
    assert [str(r.q.qname) for r in replies if r is not None] == names
    assert up.connections == 1
    assert up.count(proto="tcp") == 5


async def test_an_idle_tcp_connection_is_closed_after_expire(up: FakeUpstream) -> None:
    fwd = make([up.addr], expire_seconds=0.1)
    await ask(fwd, "a.example.com.", tcp=True)
    await ask(fwd, "b.example.com.", tcp=True)
    assert up.connections == 1
    await asyncio.sleep(0.3)
    await ask(fwd, "c.example.com.", tcp=True)
    assert up.connections == 2


async def test_a_reused_connection_the_upstream_closed_is_retried_once_on_a_new_one(
    up: FakeUpstream,
) -> None:
    hung_up = False

    def hang_up_once(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        nonlocal hung_up
        if str(request.q.qname) == "second.example.com." and not hung_up:
            hung_up = True
            return Answer(None, hangup=True)
        return Answer(fake.resolve(request))

    up.handler = hang_up_once
    fwd = make([up.addr])
    await ask(fwd, "first.example.com.", tcp=True)
    reply = await ask(fwd, "second.example.com.", tcp=True)
    assert reply is not None
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert up.connections == 2
    assert up.count("second.example.com.") == 2
    assert not fwd.stats.proxy_healthcheck_failures  # not a failure of the upstream


async def test_force_tcp_asks_over_tcp_and_prefer_udp_over_udp(up: FakeUpstream) -> None:
    tcp = make([up.addr], force_tcp=True)
    await ask(tcp, "a.example.com.")
    udp = make([up.addr], prefer_udp=True)
    await ask(udp, "b.example.com.", tcp=True)
    assert [(q.qname, q.proto) for q in up.queries] == [
        ("a.example.com.", "tcp"),
        ("b.example.com.", "udp"),
    ]


async def test_a_closed_port_fails_at_once_and_the_next_upstream_answers(
    up: FakeUpstream,
) -> None:
    # Nothing listens on `closed`: the ICMP port-unreachable fails the try (no timeout).
    closed = HostPort("127.0.0.1", free_port())
    alone = make([closed], max_fails=0)
    assert await ask(alone, "www.example.com.") is None
    assert alone.last_error is not None
    assert "refused" in alone.last_error.lower()
    assert str(closed) in alone.last_error
    fwd = make([closed, up.addr], policy=ForwardPolicy.SEQUENTIAL)
    reply = await ask(fwd, "www.example.com.")
    assert reply is not None
    assert lines(reply) == ["www.example.com. 20 a 192.0.2.1"]


async def test_the_servfail_says_which_upstream_failed_and_why() -> None:
    async with FakeUpstream(handler=silent) as dead:
        fwd = make([dead.addr], max_fails=0)
        assert await ask(fwd, "www.example.com.") is None
        assert fwd.last_error == f"no upstream answered: {dead.addr}: UDP: no reply in 0.3s"


async def test_a_lost_query_is_tried_again_on_the_same_upstream(up: FakeUpstream) -> None:
    # CoreDNS walks the list again: up to 2 tries per upstream (max_connect_attempts).
    def drop_first(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        return Answer(None if fake.count() == 1 else fake.resolve(request))

    up.handler = drop_first
    fwd = make([up.addr], max_fails=0)
    reply = await ask(fwd, "www.example.com.")
    assert reply is not None
    assert lines(reply) == ["www.example.com. 20 a 192.0.2.1"]
    assert up.count("www.example.com.") == 2


# --- policies ------------------------------------------------------------------------


async def two_upstreams() -> tuple[FakeUpstream, FakeUpstream]:
    first, second = FakeUpstream(), FakeUpstream()
    await first.start()
    await second.start()
    return first, second


@pytest.mark.parametrize(
    ("policy", "first_gets", "second_gets"),
    [
        (ForwardPolicy.SEQUENTIAL, 8, 0),  # always the first while it answers
        (ForwardPolicy.ROUND_ROBIN, 4, 4),  # each in turn
    ],
)
async def test_ordered_policies(policy: ForwardPolicy, first_gets: int, second_gets: int) -> None:
    first, second = await two_upstreams()
    try:
        fwd = make([first.addr, second.addr], policy=policy)
        for n in range(8):
            await ask(fwd, f"q{n}.example.com.")
        assert (first.count(), second.count()) == (first_gets, second_gets)
    finally:
        await first.close()
        await second.close()


async def test_the_random_policy_uses_every_upstream() -> None:
    first, second = await two_upstreams()
    try:
        fwd = make([first.addr, second.addr])  # random, CoreDNS's default
        for n in range(40):
            await ask(fwd, f"q{n}.example.com.")
        # Each query goes to one of them; all 40 to one: probability 2^-39.
        assert first.count() + second.count() == 40
        assert first.count()
        assert second.count()
    finally:
        await first.close()
        await second.close()


# --- health (CoreDNS: a failed query starts checks of that upstream) -----------------


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


async def test_a_dead_upstream_is_down_after_more_than_max_fails_failed_checks(
    up: FakeUpstream,
) -> None:
    async with FakeUpstream(handler=silent) as dead:
        fwd = make([dead.addr, up.addr], policy=ForwardPolicy.SEQUENTIAL)
        reply = await ask(fwd, "a.example.com.")  # fails over, and starts the checks
        assert reply is not None
        assert reply.header.rcode == RCODE.NXDOMAIN
        failures = fwd.stats.proxy_healthcheck_failures
        # `. IN NS` checks fail; more than max_fails (2) in a row: down.
        await wait_for(lambda: failures.get(str(dead.addr), 0) >= 3, "3 failed checks")
        assert {(q.qname, q.qtype) for q in dead.queries} == {
            ("a.example.com.", "A"),
            (".", "NS"),
        }
        await ask(fwd, "b.example.com.")
        assert dead.count("b.example.com.") == 0  # skipped while down
        # The first check it answers (any rcode) brings it back, first in line again.
        dead.handler = None
        await wait_for(lambda: fwd.forwarder._ups[0].fails == 0, "a check to succeed")
        await ask(fwd, "c.example.com.")
        assert dead.count("c.example.com.") == 1


async def test_health_checks_ask_the_configured_domain_without_rd(up: FakeUpstream) -> None:
    async with FakeUpstream(handler=silent) as dead:
        fwd = make(
            [dead.addr, up.addr],
            policy=ForwardPolicy.SEQUENTIAL,
            health_domain="example.org.",
            health_rd=False,
        )
        await ask(fwd, "a.example.com.")
        await wait_for(lambda: dead.count("example.org.") > 0, "a health check")
        check = next(q for q in dead.queries if q.qname == "example.org.")
        assert (check.qtype, check.rd) == ("NS", False)


async def test_max_fails_0_never_checks_nor_skips_an_upstream(up: FakeUpstream) -> None:
    async with FakeUpstream(handler=silent) as dead:
        fwd = make([dead.addr, up.addr], policy=ForwardPolicy.SEQUENTIAL, max_fails=0)
        for name in ("a.example.com.", "b.example.com.", "c.example.com."):
            assert await ask(fwd, name) is not None
            assert dead.count(name) == 1  # tried first every time
        assert dead.count(".") == 0
        assert not fwd.stats.proxy_healthcheck_failures


async def test_when_every_upstream_is_down_one_is_tried_anyway() -> None:
    async with FakeUpstream(handler=silent) as one, FakeUpstream(handler=silent) as two:
        fwd = make([one.addr, two.addr])
        await ask(fwd, "a.example.com.")
        failures = fwd.stats.proxy_healthcheck_failures
        await wait_for(
            lambda: min(failures.get(str(one.addr), 0), failures.get(str(two.addr), 0)) >= 3,
            "both upstreams down",
        )
        broken = fwd.stats.healthcheck_broken
        await ask(fwd, "b.example.com.")
        assert one.count("b.example.com.") + two.count("b.example.com.") == 1
        assert fwd.stats.healthcheck_broken == broken + 1


# --- except --------------------------------------------------------------------------


async def test_except_names_go_to_the_next_plugin(up: FakeUpstream) -> None:
    nxdomain = Response(Reply(rcode=Rcode.NXDOMAIN, authoritative=True), plugin="canned")
    fwd = make([up.addr], except_zones=("example.com.",))
    # `forward . ... { except example.com }` with the root as FROM: names below
    # example.com (and example.com itself, which is not FROM) are not forwarded.
    fwd.plugin.next = Canned(nxdomain)
    for name in ("www.example.com.", "example.com."):
        response = await fwd.answer(query(name), question=Question(name, 1), tcp=False)
        assert response.plugin == "canned"
    response = await fwd.answer(
        query("www.example.org."), question=Question("www.example.org.", 1), tcp=False
    )
    assert response.plugin == "forward"
    assert up.count() == 1


# --- loop protection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        (HostPort("127.0.0.1", 5353), HostPort("127.0.0.1", 5353)),
        (HostPort("::1", 5353), HostPort("::1", 5353)),
    ],
)
def test_forwarding_to_our_own_listener_refuses_to_start(
    listen: HostPort, upstream: HostPort
) -> None:
    with pytest.raises(LoopError, match="own listener"):
        check_self_forwarding([upstream], listen)


def test_other_ports_and_addresses_are_not_loops() -> None:
    check_self_forwarding([HostPort("127.0.0.1", 53)], HostPort("127.0.0.1", 5353))
    check_self_forwarding([HostPort("127.0.0.2", 5353)], HostPort("127.0.0.1", 5353))
    check_self_forwarding([HostPort("192.0.2.1", 5353)], HostPort("0.0.0.0", 5353))
    # A wildcard listener: another resolver may hold 127.0.0.1:5353; the loop probe decides.
    check_self_forwarding([HostPort("127.0.0.1", 5353)], HostPort("0.0.0.0", 5353))


# --- resolv.conf ---------------------------------------------------------------------


def test_resolv_conf_nameservers_become_upstreams(tmp_path: Path) -> None:
    text = "search svc.cluster.local\n# c\nnameserver 10.0.0.10\nnameserver fd00::a ; x\n"
    text += "nameserver bogus\nnameserver 10.0.0.10\noptions ndots:5\n"
    text += "".join(f"nameserver 10.1.0.{i}\n" for i in range(20))
    assert parse_resolv_conf(text)[:2] == [HostPort("10.0.0.10", 53), HostPort("fd00::a", 53)]
    assert len(parse_resolv_conf(text)) == 15  # CoreDNS: at most 15
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.53\n")
    assert upstreams_from_resolv_conf(path) == [HostPort("127.0.0.53", 53)]
    assert upstreams_from_resolv_conf(tmp_path / "missing") == []


# --- a real upstream: Debian's dnsmasq ------------------------------------------------

DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists()
                                      else None)  # fmt: skip


@pytest.fixture
def dnsmasq() -> Iterator[HostPort]:
    """A real dnsmasq on 127.0.0.1. It binds the port over UDP and TCP, and a port the kernel
    just handed out for one protocol can be taken for the other: if dnsmasq exits at start,
    it is started again on another port (three tries), and its own error is in the failure."""
    if DNSMASQ is None:
        pytest.skip("dnsmasq is not installed")
    errors: list[str] = []
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
             "--pid-file=", "--user=root", "--address=/dnsmasq.test/192.0.2.7"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            if wait_listening(proc, port):
                yield HostPort("127.0.0.1", port)
                return
            errors.append(f"port {port}: {proc_error(proc)}")
        finally:
            proc.terminate()
            proc.wait(5)
            assert proc.stderr is not None
            proc.stderr.close()
    pytest.fail("dnsmasq did not start: " + "; ".join(errors))


def proc_error(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        return "running but not answering after 15s"
    assert proc.stderr is not None
    return f"exited {proc.returncode}: {proc.stderr.read().strip()[-300:]}"


def wait_listening(proc: subprocess.Popen[str], port: int, deadline_seconds: float = 15.0) -> bool:
    """Wait until a DNS server answers on 127.0.0.1:`port` over UDP (a loaded CI box can
    take seconds to start dnsmasq; asking through the forwarder meanwhile would mark the
    upstream down and make the test about health checks instead). False if `proc` exits
    or the deadline passes."""
    probe = DNSRecord.question("probe.dnsmasq.test.").pack()
    end = time.monotonic() + deadline_seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.2)
        while time.monotonic() < end and proc.poll() is None:
            try:
                udp.sendto(probe, ("127.0.0.1", port))
                udp.recvfrom(4096)
                return True
            except OSError:  # refused (not bound yet) or timed out
                time.sleep(0.05)
    return False


async def test_forwarding_to_a_real_dnsmasq(dnsmasq: HostPort) -> None:
    fwd = make([dnsmasq], timeout_seconds=0.5)
    reply = await ask(fwd, "www.dnsmasq.test.", qid=555)
    assert reply is not None
    assert reply.header.id == 555
    assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.7"]
    assert reply.rr[0].ttl <= 30
    again = await ask(fwd, "www.dnsmasq.test.", qid=556, tcp=True)
    assert again is not None
    assert again.header.id == 556
    assert fwd.stats.cache_hits == {"success": 1}
    await fwd.close()


# --- the fast path: forward cache replies enter it at their first cache hit --------------


async def test_a_relayed_reply_enters_the_fast_path_at_its_first_cache_hit(
    up: FakeUpstream,
) -> None:
    # A name asked once (unique, random) costs no fast-path entry; the second query is a
    # cache hit, which the fast path keeps; the third never reaches the chain.
    clock = Clock()
    fwd = make([up.addr], clock=clock)
    plugins: list[Plugin] = [fwd.cache, fwd.plugin]
    block = Block(zones=(".",), chain=link(plugins), plugins=plugins, recursion=True)
    cache = ReplyCache(clock=clock)
    server = DnsServer([block], index=default_index(), stats=fwd.stats, cache=cache)
    data = query("www.example.com.")
    first = server.handle(data, False, "1")
    assert isinstance(first, asyncio.Future)
    relayed = await first
    assert relayed is not None
    assert len(server.cache) == 0
    second = server.handle(data, False, "1")
    assert isinstance(second, bytes)  # the cache plugin's hit
    assert len(server.cache) == 1
    assert fwd.stats.cache_hits == {"success": 1}
    third = server.handle(data, False, "1")
    assert third == second  # (the same second: the same TTLs)
    assert fwd.stats.cache_hits == {"success": 1}  # not the plugin: the fast path
    server.flush()
    assert fwd.stats.cache_hits == {"success": 2}
    assert up.count("www.example.com.") == 1
    # Expired (TTL 20): asked upstream again, and the fresh reply renews the entry the
    # fast path kept for this name at once (no second trip through the chain).
    clock.now += 21
    renewed = server.handle(data, False, "1")
    assert isinstance(renewed, asyncio.Future)
    assert await renewed is not None
    assert up.count("www.example.com.") == 2
    hits = dict(fwd.stats.cache_hits)
    assert isinstance(server.handle(data, False, "1"), bytes)
    assert fwd.stats.cache_hits == hits  # the fast path answered, not the cache plugin
    server.flush()
    assert fwd.stats.cache_hits == {"success": 3}
