"""The `cache` plugin's prefetch, serve_stale and keepttl, and what it tells the fast path,
over a scripted upstream (the rest of the chain) and a fake clock.

Expected behaviour is CoreDNS's cache plugin (README, handler.go) and RFC 8767 (serving
stale data): stale answers carry TTL 0 (or RESPONSE_TTL), a refresh replaces an entry only
with a usable NOERROR or NXDOMAIN answer, at most one refresh per entry is in flight.
(Plain caching, TTL capping and the denial rules are in tests/upstream/test_forward.py.)"""

from __future__ import annotations

import asyncio
import gc

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, DNSRecord

from kdns.config.model import CacheConfig, StaleRefresh
from kdns.dns.records import Rcode, Reply
from kdns.observe.stats import Stats
from kdns.plugins import cache as cache_module
from kdns.plugins.cache import CachePlugin
from kdns.serve.chain import Plugin, Request, Response, Result
from tests.plugins.canned import make_request, resolve

NAME = "www.example.com."


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream(Plugin):
    """The rest of the chain, like `forward`: answers `address` with TTL `ttl`, or fails
    (`down`: SERVFAIL with an error, as when no upstream answers), or answers `rcode`;
    `hold` keeps replies pending until released."""

    name = "forward"

    def __init__(self) -> None:
        super().__init__()
        self.address = "192.0.2.1"
        self.ttl = 30
        self.down = False
        self.rcode = RCODE.NOERROR
        self.asked = 0
        self.hold: asyncio.Event | None = None

    def serve(self, request: Request) -> Result:
        self.asked += 1
        return self._answer(request)

    async def _answer(self, request: Request) -> Response:
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            return Response(
                Reply(rcode=Rcode.SERVFAIL, authoritative=False),
                plugin=self.name,
                error="no upstream answered: 10.0.0.1:53: UDP: no reply in 2s",
            )
        query = DNSRecord.parse(request.data)
        reply = query.reply()
        reply.header.rcode = self.rcode
        if query.ar:  # RFC 6891 §7: an OPT in the reply only when the query had one
            reply.add_ar(EDNS0(udp_len=1232))
        if self.rcode == RCODE.NOERROR:
            reply.add_answer(*RR.fromZone(f"{NAME} {self.ttl} IN A {self.address}"))
        return Response(wire=bytes(reply.pack()), plugin=self.name)


class Setup:
    def __init__(self, **config: object) -> None:
        self.clock = Clock()
        self.stats = Stats()
        self.upstream = Upstream()
        self.cache = CachePlugin(
            CacheConfig(**config),  # type: ignore[arg-type]
            stats=self.stats,
            clock=self.clock,
        )
        self.cache.next = self.upstream

    async def ask(self, *, qid: int = 1, data: bytes | None = None) -> Response:
        request = make_request(NAME, QTYPE.A, qid=qid, data=data)
        return await resolve(self.cache.serve(request))

    async def settle(self) -> None:
        """Let background refreshes finish."""
        for _ in range(5):
            await asyncio.sleep(0)

    def later(self, seconds: float) -> None:
        self.clock.now += seconds


def rrs(response: Response) -> list[tuple[str, int]]:
    assert response.wire is not None
    return [(str(rr.rdata), rr.ttl) for rr in DNSRecord.parse(response.wire).rr]


@pytest.fixture
async def stale() -> Setup:
    """`serve_stale` (1h, immediate), an entry stored with TTL 30 and now expired."""
    setup = Setup(stale=3600.0)
    await setup.ask()
    setup.later(40)
    return setup


# --- serve_stale ----------------------------------------------------------------------


async def test_an_expired_entry_is_answered_with_ttl_0_while_the_upstream_is_down(
    stale: Setup,
) -> None:
    stale.upstream.down = True
    response = await stale.ask(qid=9)
    assert rrs(response) == [("192.0.2.1", 0)]
    assert response.error is None
    assert DNSRecord.parse(response.wire or b"").header.id == 9
    await stale.settle()
    # Immediate mode: answered first, then a refresh was tried (and failed).
    assert stale.upstream.asked == 2
    assert (stale.stats.cache_served_stale, stale.stats.cache_prefetches) == (1, 1)
    again = await stale.ask()
    assert rrs(again) == [("192.0.2.1", 0)]  # the failed refresh left the entry in place


async def test_a_refresh_replaces_the_expired_entry_once_the_upstream_is_back(
    stale: Setup,
) -> None:
    stale.upstream.address = "192.0.2.2"
    first = await stale.ask()
    assert rrs(first) == [("192.0.2.1", 0)]  # stale now, refreshed in the background
    await stale.settle()
    fresh = await stale.ask()
    assert rrs(fresh) == [("192.0.2.2", 30)]
    assert stale.upstream.asked == 2
    assert stale.stats.cache_served_stale == 1


async def test_past_the_stale_duration_the_entry_is_gone(stale: Setup) -> None:
    stale.later(3600)  # 30 s TTL + 3600 s stale < 3640 s
    stale.upstream.down = True
    response = await stale.ask()
    assert response.error is not None  # a miss: the upstream's SERVFAIL
    assert stale.stats.cache_served_stale == 0


async def test_stale_answers_carry_the_response_ttl() -> None:
    setup = Setup(stale=3600.0, stale_ttl=30)  # RFC 8767 §4 recommends 30 s
    await setup.ask()
    setup.later(40)
    setup.upstream.down = True
    assert rrs(await setup.ask()) == [("192.0.2.1", 30)]


async def test_only_one_refresh_per_entry_is_in_flight(stale: Setup) -> None:
    stale.upstream.hold = asyncio.Event()
    for _ in range(3):
        assert rrs(await stale.ask()) == [("192.0.2.1", 0)]
        await stale.settle()  # the refresh is under way, held upstream
    assert stale.upstream.asked == 2  # the first miss and one refresh
    stale.upstream.hold.set()
    await stale.settle()


async def test_an_upstream_servfail_does_not_replace_a_stale_entry(stale: Setup) -> None:
    # RFC 8767 §4: only NOERROR/NXDOMAIN answers refresh stale data.
    stale.upstream.rcode = RCODE.SERVFAIL
    await stale.ask()
    await stale.settle()
    assert rrs(await stale.ask()) == [("192.0.2.1", 0)]


async def test_failure_recheck_waits_before_the_next_refresh() -> None:
    setup = Setup(stale=3600.0, stale_recheck=30.0)
    await setup.ask()
    setup.later(40)
    setup.upstream.down = True
    await setup.ask()
    await setup.settle()
    assert setup.upstream.asked == 2
    setup.later(10)
    await setup.ask()
    await setup.settle()
    assert setup.upstream.asked == 2  # within FAILURE_RECHECK: no new refresh
    setup.later(25)
    await setup.ask()
    await setup.settle()
    assert setup.upstream.asked == 3


async def test_verify_asks_the_upstream_before_answering_stale() -> None:
    setup = Setup(stale=3600.0, stale_refresh=StaleRefresh.VERIFY)
    await setup.ask()
    setup.later(40)
    setup.upstream.address = "192.0.2.2"
    assert rrs(await setup.ask()) == [("192.0.2.2", 30)]  # never stale when it answers
    assert setup.stats.cache_served_stale == 0
    setup.later(40)
    setup.upstream.down = True
    assert rrs(await setup.ask()) == [("192.0.2.2", 0)]
    assert setup.stats.cache_served_stale == 1


async def test_verify_answers_stale_after_its_timeout_and_refreshes_later() -> None:
    setup = Setup(stale=3600.0, stale_refresh=StaleRefresh.VERIFY, stale_verify_timeout=0.01)
    await setup.ask()
    setup.later(40)
    setup.upstream.address = "192.0.2.2"
    setup.upstream.hold = asyncio.Event()
    assert rrs(await setup.ask()) == [("192.0.2.1", 0)]
    setup.upstream.hold.set()
    await setup.settle()
    assert rrs(await setup.ask()) == [("192.0.2.2", 30)]


# --- prefetch -------------------------------------------------------------------------


async def test_a_popular_entry_is_refreshed_before_it_expires() -> None:
    setup = Setup(prefetch=2, prefetch_percentage=50)  # `prefetch 2 1m 50%`
    await setup.ask()  # stored, TTL 30: prefetch once 15 s or less are left
    setup.later(5)
    await setup.ask()
    await setup.settle()
    assert setup.upstream.asked == 1  # popular (hits 1 < 2) not yet, and 25 s left
    setup.later(11)
    setup.upstream.address = "192.0.2.2"
    assert rrs(await setup.ask()) == [("192.0.2.1", 14)]  # served from the old entry
    await setup.settle()
    assert (setup.upstream.asked, setup.stats.cache_prefetches) == (2, 1)
    setup.later(20)  # the old entry would have expired; the prefetched one lives on
    assert rrs(await setup.ask()) == [("192.0.2.2", 10)]
    assert setup.upstream.asked == 2


async def test_an_entry_asked_with_long_gaps_is_not_prefetched() -> None:
    setup = Setup(prefetch=2, prefetch_gap=10.0, prefetch_percentage=50)
    await setup.ask()
    setup.later(1)
    await setup.ask()  # hits 1
    setup.later(15)  # a gap longer than DURATION: the count starts over
    await setup.ask()  # hits 1 again, 14 s left
    await setup.settle()
    assert setup.stats.cache_prefetches == 0


async def test_an_upstream_servfail_does_not_hide_a_fresh_success_entry() -> None:
    setup = Setup(prefetch=1, prefetch_percentage=90)
    await setup.ask()
    setup.later(5)
    setup.upstream.rcode = RCODE.SERVFAIL
    await setup.ask()  # prefetch: the upstream answers SERVFAIL, cached for 5 s
    await setup.settle()
    assert setup.cache.denial.entries
    setup.later(1)
    assert rrs(await setup.ask()) == [("192.0.2.1", 24)]


# --- what the fast path may keep ----------------------------------------------------


async def test_fresh_replies_are_marked_for_the_fast_path_until_they_expire() -> None:
    setup = Setup(stale=3600.0)
    stored = await setup.ask()
    assert (stored.cacheable, stored.expires) == (True, 1030.0)
    setup.later(10)
    hit = await setup.ask()
    assert (hit.cacheable, hit.expires) == (True, 1030.0)
    setup.later(30)
    setup.upstream.down = True
    stale = await setup.ask()
    assert (stale.cacheable, stale.expires) == (False, None)


@pytest.mark.parametrize(
    "config",
    [{"prefetch": 10}, {"keepttl": True}],
    ids=["prefetch counts every query", "keepttl TTLs do not age"],
)
async def test_nothing_is_marked_with_prefetch_or_keepttl(config: dict[str, object]) -> None:
    setup = Setup(**config)
    assert not (await setup.ask()).cacheable
    assert not (await setup.ask()).cacheable


async def test_the_upstreams_own_servfail_error_is_not_cached_nor_marked() -> None:
    setup = Setup()
    setup.upstream.down = True
    failed = await setup.ask()
    assert (failed.cacheable, failed.error is not None) == (False, True)
    setup.upstream.down = False
    await setup.ask()
    assert setup.upstream.asked == 2


# --- the reply a client gets -----------------------------------------------------------


async def test_keepttl_serves_the_ttl_as_stored() -> None:
    setup = Setup(keepttl=True)
    await setup.ask()
    setup.later(20)
    assert rrs(await setup.ask()) == [("192.0.2.1", 30)]


def query(*, rd: bool, edns: bool = False) -> bytes:
    q = DNSRecord.question(NAME, "A")
    q.header.rd = int(rd)
    if edns:
        q.add_ar(EDNS0(udp_len=1232))
    return bytes(q.pack())


async def test_a_hit_copies_the_clients_rd_bit() -> None:
    setup = Setup()
    await setup.ask(data=query(rd=True))
    hit = await setup.ask(data=query(rd=False))
    assert DNSRecord.parse(hit.wire or b"").header.rd == 0
    assert setup.upstream.asked == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [(False, True), (True, False)],
    ids=["edns after plain", "plain after edns"],
)
async def test_edns_and_plain_queries_have_their_own_entries(first: bool, second: bool) -> None:
    # RFC 6891 §7: no OPT record in a reply to a query without one.
    setup = Setup()
    await setup.ask(data=query(rd=True, edns=first))
    reply = await setup.ask(data=query(rd=True, edns=second))
    assert bool(DNSRecord.parse(reply.wire or b"").ar) == second
    assert setup.upstream.asked == 2


async def test_the_entry_gauge_drops_expired_entries() -> None:
    setup = Setup()
    await setup.ask()
    setup.stats.flush()
    assert setup.stats.cache_entries == {"success": 1, "denial": 0}
    setup.later(31)
    setup.stats.flush()
    assert setup.stats.cache_entries == {"success": 0, "denial": 0}


async def test_prefetch_bookkeeping_stays_bounded_by_the_capacity() -> None:
    setup = Setup(prefetch=5, success_capacity=2, denial_capacity=2)
    for n in range(50):
        request = make_request(f"n{n}.example.com.", QTYPE.A)
        await resolve(setup.cache.serve(request))
        await resolve(setup.cache.serve(request))  # a hit: counted for prefetch
    # Entries come and go with the capacity; what is counted about them goes with them.
    assert len(setup.cache.success) == 2
    assert len(setup.cache._states) <= 2 * (2 + 2) + 1


async def test_entries_are_invisible_to_the_garbage_collector_after_one_young_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Keys and entries hold only atomic values (the TTL offsets packed in bytes), so the
    # collector's first pass stops tracking them; and the plugin runs that pass itself
    # every _COLLECT_EVERY stores (new tuples come from a free list that CPython does not
    # count towards its own next collection).
    passes: list[int] = []
    real_collect = gc.collect

    def collect(generation: int = 2) -> int:
        passes.append(generation)
        return real_collect(generation)

    monkeypatch.setattr(gc, "collect", collect)  # (the module the plugin calls)
    setup = Setup(success_capacity=1000)
    stores = 2 * cache_module._COLLECT_EVERY + 10
    for n in range(stores):
        await resolve(setup.cache.serve(make_request(f"n{n}.example.com.", QTYPE.A)))
    assert passes == [0, 0]  # one young pass per _COLLECT_EVERY stores, nothing older
    real_collect(0)
    entries = setup.cache.success.entries
    assert len(entries) == stores
    assert not any(gc.is_tracked(key) or gc.is_tracked(entry) for key, entry in entries.items())
    hit = await resolve(setup.cache.serve(make_request("n7.example.com.", QTYPE.A)))
    assert hit.plugin == "cache"  # (and the packed TTL offsets still count down a hit)
    assert hit.ttl_offsets is not None
    assert hit.ttl_offsets[0] == hit.wire
