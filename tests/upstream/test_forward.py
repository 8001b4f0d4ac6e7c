"""Forwarding through real sockets on 127.0.0.1 to the scripted fake upstream (and dnsmasq).

Expected behaviour comes from CoreDNS's forward and cache plugins and the RFCs cited per
test. Queries go through `cache` then `forward` as a chain (`Forwarding`), as the flags and
kind's Corefile build them. Time inside the cache is a fake clock; only timeouts are real.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from kdns.config.model import CacheConfig, ForwardConfig, Upstream
from kdns.config.resolvconf import parse_resolv_conf, upstreams_from_resolv_conf
from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.dns.records import Question
from kdns.observe.stats import Stats
from kdns.plugins.cache import CachePlugin
from kdns.plugins.forward import ForwardPlugin
from kdns.serve.chain import Request, Response, link
from kdns.upstream.forward import Forwarder, LoopError, check_self_forwarding
from tests.fakes.upstream import Answer, FakeUpstream, with_id

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
        upstreams: list[HostPort],
        *,
        cache_size: int = 9984,
        clock: Clock | None = None,
        **kw: object,
    ) -> None:
        self.stats = Stats()
        config = ForwardConfig(to=tuple(Upstream(u) for u in upstreams))
        self.plugin = ForwardPlugin(config, stats=self.stats)
        self.forwarder = self.plugin.forwarder = Forwarder(upstreams, stats=self.stats, **kw)  # type: ignore[arg-type]
        cache = CacheConfig(
            success_capacity=cache_size, denial_capacity=cache_size, success_ttl=30, denial_ttl=30
        )
        self.cache = CachePlugin(cache, stats=self.stats, clock=clock or Clock())
        self.chain = link([self.cache, self.plugin])

    async def forward(self, data: bytes, *, question: Question, tcp: bool) -> bytes | None:
        query = wire.decode_query(data)
        request = Request(data=data, query=query, tcp=tcp, family="1", max_size=65535, zone=".")
        assert request.question == question
        result = self.chain.serve(request)
        response = result if isinstance(result, Response) else await result
        if response.error is not None:
            return None
        assert response.wire is not None
        if tcp:
            return response.wire
        limit = max(512, query.edns.payload if query.edns is not None else 0)
        return wire.truncate_for(query, response.wire, max_size=limit)

    async def close(self) -> None:
        await self.forwarder.close()


def make(upstreams: list[HostPort], **kw: object) -> Forwarding:
    kw.setdefault("timeout_seconds", TIMEOUT)
    kw.setdefault("health_interval_seconds", 0.05)
    kw.setdefault("health_timeout_seconds", 0.05)
    return Forwarding(upstreams, **kw)  # type: ignore[arg-type]


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
        question=Question(name, getattr(QTYPE, qtype)),
        tcp=tcp,
    )
    return None if data is None else DNSRecord.parse(data)


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
        fwd = make([dead.addr, up.addr], random_order=False)
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


async def test_dead_upstream_fails_over_then_is_skipped_until_it_answers(
    up: FakeUpstream,
) -> None:
    async with FakeUpstream(handler=lambda _f, _r, _p: Answer(None)) as dead:
        fwd = make([dead.addr, up.addr], random_order=False)
        for name in ("a.example.com.", "b.example.com."):
            reply = await ask(fwd, name)
            assert reply is not None
            assert reply.header.rcode == RCODE.NXDOMAIN
        assert dead.count("a.example.com.") == dead.count("b.example.com.") == 1
        # max_fails 2: marked down, so the next query goes straight to the good one.
        await ask(fwd, "c.example.com.")
        assert dead.count("c.example.com.") == 0
        # The health check (`. IN NS`) fails while it stays silent; it stays skipped.
        failures = fwd.stats.proxy_healthcheck_failures
        for _ in range(40):
            if failures.get(str(dead.addr), 0):
                break
            await asyncio.sleep(0.05)
        assert failures[str(dead.addr)] >= 1
        await ask(fwd, "d.example.com.")
        assert dead.count("d.example.com.") == 0
        # Once it answers the health check it is up, and first in line again.
        dead.handler = None
        for n in range(40):
            name = f"back{n}.example.com."
            await ask(fwd, name)
            if dead.count(name):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the upstream got no query after it answered the health check")
        assert dead.count(".") >= 2
        await fwd.close()


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
        fwd = make([liar.addr, up.addr], random_order=False)
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


async def test_edns_and_plain_queries_are_cached_apart_by_do_bit(up: FakeUpstream) -> None:
    fwd = make([up.addr])
    await ask(fwd, "www.example.com.")
    await ask(fwd, "www.example.com.", edns=True)  # EDNS without DO: same entry
    assert up.count("www.example.com.") == 1
    do = DNSRecord.question("www.example.com.", "A")
    do.add_ar(EDNS0(udp_len=1232, flags="do"))
    await fwd.forward(bytes(do.pack()), question=Question("www.example.com.", 1), tcp=False)
    assert up.count("www.example.com.") == 2


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return int(udp.getsockname()[1])


@pytest.fixture
def dnsmasq() -> Iterator[HostPort]:
    if DNSMASQ is None:
        pytest.skip("dnsmasq is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--user=root", "--address=/dnsmasq.test/192.0.2.7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield HostPort("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(5)


async def test_forwarding_to_a_real_dnsmasq(dnsmasq: HostPort) -> None:
    fwd = make([dnsmasq], timeout_seconds=0.5)
    for _ in range(20):  # wait (bounded) until dnsmasq listens
        if await ask(fwd, "dnsmasq.test.", qid=1) is not None:
            break
        await asyncio.sleep(0.1)
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
