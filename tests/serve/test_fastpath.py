"""The reply cache: hits match the slow path; invalidation, variants, bounds, metrics."""

from __future__ import annotations

import asyncio
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster.index import Index
from kdns.cluster.model import Delete, Kind, Upsert
from kdns.config.model import KubernetesConfig, LoadbalanceConfig
from kdns.config.settings import PodMode
from kdns.dns.records import SOA, A, Rcode, Record, Reply
from kdns.dns.wire import ttl_offsets
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import KubernetesPlugin
from kdns.plugins.loadbalance import LoadbalancePlugin, rotations
from kdns.serve.chain import Plugin, Request, Response, Result, link, then
from kdns.serve.fastpath import ReplyCache
from kdns.serve.server import Block, DnsServer
from tests.builders import ep, eps, pod, replace_events, svc
from tests.dns.test_wire import header, make_query, opt_rr, wire_name
from tests.serve.test_server import (
    REVERSE,
    FakeUpstream,
    ForwardTo,
    default_index,
    make_handler,
    make_index,
    resolve,
)

SVC1 = "svc1.testns.svc.cluster.local"
SVC2 = "svc2.testns.svc.cluster.local"


def fresh(data: bytes, index: Index | None = None, *, tcp: bool = False) -> bytes:
    """The slow path's reply, from a handler whose cache is empty."""
    handler, _ = make_handler(index)
    out = handler.handle(data, tcp=tcp, family="1")
    assert isinstance(out, bytes)
    return out


def ask(handler: DnsServer, data: bytes, *, tcp: bool = False) -> bytes:
    out = handler.handle(data, tcp=tcp, family="1")
    assert isinstance(out, bytes)
    return out


def test_a_hit_equals_the_slow_path_bytes() -> None:
    handler, _ = make_handler()
    first = ask(handler, make_query(SVC1, qid=1))
    assert len(handler.cache) == 1
    again = ask(handler, make_query(SVC1, qid=2))
    assert again[:2] == b"\x00\x02"
    assert again[2:] == first[2:]
    assert again == fresh(make_query(SVC1, qid=2))


def test_a_hit_echoes_the_clients_spelling() -> None:
    handler, _ = make_handler()
    ask(handler, make_query(SVC1))
    mixed = make_query("SvC1.TESTns.svc.Cluster.local")
    out = ask(handler, mixed)
    assert out[12 : len(mixed)] == mixed[12:]  # 0x20 kept (D4)
    assert out == fresh(mixed)


def test_rd_variants() -> None:
    handler, _ = make_handler()
    ask(handler, make_query(SVC1, flags=0x0100))
    out = ask(handler, make_query(SVC1, flags=0x0000))
    assert not header(out)[1] & 0x0100
    assert out == fresh(make_query(SVC1, flags=0x0000))
    assert header(ask(handler, make_query(SVC1, flags=0x0100)))[1] & 0x0100


def test_edns_variant_is_kept_apart_and_do_shares_it() -> None:
    handler, _ = make_handler()
    plain = ask(handler, make_query(SVC1))
    with_opt = make_query(SVC1, opt=opt_rr(4096))
    out = ask(handler, with_opt)
    assert header(out)[5] == 1  # OPT echoed, not the plain entry
    assert len(handler.cache) == 2
    assert ask(handler, with_opt) == out == fresh(with_opt)
    assert header(ask(handler, make_query(SVC1)))[5] == 0
    assert ask(handler, make_query(SVC1)) == plain
    do = make_query(SVC1, opt=opt_rr(4096, do=True))
    out = ask(handler, do)
    assert out[-11:] == b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"  # DO copied
    assert len(handler.cache) == 2


def test_big_edns_reply_is_not_served_to_a_smaller_buffer() -> None:
    addresses = [f"10.2.0.{i + 1}" for i in range(40)]  # 40 x 16 bytes: over 512, under 1232
    index = make_index(
        svc("mid", headless=True),
        eps("mid-1", "mid", endpoints=[ep(a) for a in addresses]),
    )
    handler, _ = make_handler(index)
    big = "mid.testns.svc.cluster.local"
    whole = ask(handler, make_query(big, opt=opt_rr(1232)))
    assert not header(whole)[1] & 0x0200
    assert len(whole) > 512
    small = ask(handler, make_query(big, opt=opt_rr(600)))
    assert len(small) <= 600
    assert header(small)[1] & 0x0200  # TC: the cached entry was not used


def test_unusual_flags_take_the_slow_path_and_tcp_shares_the_entry() -> None:
    handler, stats = make_handler()
    ask(handler, make_query(SVC1))
    cd = make_query(SVC1, flags=0x0110)
    assert header(ask(handler, cd))[1] & 0x0010  # CD copied (RFC 4035 §3.1.6)
    before = slow_queries(stats)
    assert ask(handler, make_query(SVC1), tcp=True) == fresh(make_query(SVC1))
    assert slow_queries(stats) == before  # a hit
    assert len(handler.cache) == 1


def test_adding_a_service_turns_nxdomain_into_an_answer_on_the_next_query() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    query = make_query(SVC2)
    assert header(ask(handler, query))[1] & 0xF == 3
    assert header(ask(handler, query))[1] & 0xF == 3  # now a hit
    index.apply(Upsert(svc("svc2", ips=["10.0.0.2"])), received_at=0.0)
    out = ask(handler, query)
    assert header(out)[1] & 0xF == 0
    assert out.endswith(b"\x0a\x00\x00\x02")
    assert stats.programming["cluster_ip"].n == 1  # observed at the first answer after it


def test_a_plugin_data_change_clears_the_cache() -> None:
    """Plugins with data of their own (zone files) bump the shared generation on reload."""
    handler, _ = make_handler()
    ask(handler, make_query(SVC1))
    assert len(handler.cache) == 1
    handler.generation_source.generation += 1
    ask(handler, make_query(SVC1))
    assert len(handler.cache) == 1  # cleared, then filled again by this query
    assert handler.cache.bytes > 0


def test_cache_is_bounded_against_random_names() -> None:
    cache = ReplyCache(max_entries=50, max_negative=10)
    handler, _ = make_handler(default_index(), cache=cache)
    ask(handler, make_query(SVC1))
    for i in range(200):
        ask(handler, make_query(f"rnd{i}.testns.svc.cluster.local"))
    assert len(cache) <= 11
    assert ask(handler, make_query(SVC1)) == fresh(make_query(SVC1))
    assert handler.cache.plain  # the positive entry survived the negatives
    small = ReplyCache(max_entries=5, max_bytes=100_000)
    handler, _ = make_handler(default_index(), cache=small)
    for qtype in range(2, 22):  # distinct replies, none a template (NODATA)
        ask(handler, make_query("_http._tcp.svc1.testns.svc.cluster.local", qtype))
    assert len(small) == 5


def test_unsynced_replies_are_not_cached() -> None:
    handler, _ = make_handler(Index())
    ask(handler, make_query(SVC1))
    assert len(handler.cache) == 0


def test_hits_are_folded_into_coredns_metrics_on_flush() -> None:
    handler, stats = make_handler()
    for _ in range(5):
        ask(handler, make_query(SVC1))
    handler.handle(make_query(SVC1), tcp=False, family="2")
    handler.observe_batch(6, 0.0006)
    stats.flush()
    assert stats.requests[("cluster.local.", "udp", "1", "A")] == 5
    assert stats.requests[("cluster.local.", "udp", "2", "A")] == 1
    assert stats.responses[("cluster.local.", "NOERROR")] == 6
    assert stats.response_sizes[("cluster.local.", "udp")].n == 6
    assert stats.durations["cluster.local."].n == 6
    stats.flush()  # nothing counted twice
    assert stats.responses[("cluster.local.", "NOERROR")] == 6
    # counts of entries dropped by an invalidation are not lost
    ask(handler, make_query(SVC1))
    handler.cache.clear()
    stats.flush()
    assert stats.responses[("cluster.local.", "NOERROR")] == 7


# ---- the exact-query map: a repeated UDP query costs one lookup ---------------------------


def test_a_repeated_query_is_answered_from_its_own_bytes() -> None:
    handler, stats = make_handler()
    first = ask(handler, make_query(SVC1, qid=1))  # slow path: stored
    assert not handler.cache.exact
    ask(handler, make_query(SVC1, qid=2))  # a hit: remembered as these very bytes
    assert list(handler.cache.exact) == [make_query(SVC1, qid=3)[2:]]
    before = slow_queries(stats)
    again = ask(handler, make_query(SVC1, qid=0xBEEF))
    assert again == b"\xbe\xef" + first[2:]
    assert slow_queries(stats) == before
    mixed = make_query("SVC1.testns.svc.cluster.local", qid=4)  # other bytes: other key
    assert ask(handler, mixed) == fresh(mixed)
    assert len(handler.cache.exact) == 2
    stats.flush()
    assert stats.requests[("cluster.local.", "udp", "1", "A")] == 4  # every hit counted


def test_a_change_forgets_the_exact_queries_of_what_it_alters() -> None:
    index = clocked_index(Clock())
    handler, _ = make_handler(index)
    q1, q2, missing = (
        make_query(SVC1),
        make_query(SVC2),
        make_query("svc3.testns.svc.cluster.local"),
    )
    version = make_query("dns-version.cluster.local", 16)
    for q in (q1, q2, missing, version) * 2:
        ask(handler, q)
    assert len(handler.cache.exact) == 4
    index.apply(Upsert(svc("svc1", ips=["10.0.0.11"])))
    assert ask(handler, q1).endswith(b"\x0a\x00\x00\x0b")  # not the remembered bytes
    # svc2's reply cannot have changed: still remembered; the structural and negative
    # (lazy) ones are forgotten with their epoch.
    assert set(handler.cache.exact) == {q2[2:]}
    index.apply(Upsert(svc("svc3", ips=["10.0.0.3"])))
    assert ask(handler, missing).endswith(b"\x0a\x00\x00\x03")  # no longer NXDOMAIN


def test_an_evicted_entry_takes_its_exact_queries_with_it() -> None:
    cache = ReplyCache(max_entries=2)
    handler, _ = make_handler(default_index(), cache=cache)
    names = [make_query("_http._tcp.svc1.testns.svc.cluster.local", t) for t in (33, 16, 2)]
    for q in names[:2] * 2:
        ask(handler, q)
    assert set(cache.exact) == {q[2:] for q in names[:2]}
    ask(handler, names[2])  # evicts the first entry (FIFO)
    assert set(cache.exact) == {names[1][2:]}
    for q in names:
        assert ask(handler, q) == fresh(q)


def test_the_exact_query_map_is_bounded_against_random_spellings() -> None:
    cache = ReplyCache(max_entries=50)
    handler, _ = make_handler(default_index(), cache=cache)
    ask(handler, make_query(SVC1))
    for i in range(300):  # 0x20: every query spelled differently
        spelled = "".join(c.upper() if i >> n & 1 else c for n, c in enumerate("svc1.testns"))
        q = make_query(f"{spelled}.svc.cluster.local")
        assert ask(handler, q) == fresh(q)
        assert len(cache.exact) <= cache.max_exact
    entry = next(iter(cache.plain.values()))
    assert entry.exact is not None
    assert len(entry.exact) <= cache.max_exact  # its key list starts over with the map


def test_a_repeated_tcp_query_is_answered_from_its_own_table() -> None:
    handler, stats = make_handler()
    query = make_query(SVC1, qid=1)
    first = ask(handler, query, tcp=True)  # slow path: stored
    ask(handler, make_query(SVC1, qid=2), tcp=True)  # a hit: remembered as these bytes
    assert list(handler.cache.exact_tcp) == [query[2:]]
    assert not handler.cache.exact  # the UDP map is the UDP queries' only
    before = slow_queries(stats)
    again = ask(handler, make_query(SVC1, qid=0xBEEF), tcp=True)
    assert again == b"\xbe\xef" + first[2:] == fresh(make_query(SVC1, qid=0xBEEF), tcp=True)
    assert slow_queries(stats) == before
    assert handler.cache.exact_tcp[query[2:]].v4 == 1  # served (and counted) from the table
    handler.handle(make_query(SVC1), tcp=True, family="2")
    ask(handler, query)  # the same bytes over UDP: a UDP entry of their own
    ask(handler, query)
    assert list(handler.cache.exact) == [query[2:]]
    stats.flush()
    assert stats.requests[("cluster.local.", "tcp", "1", "A")] == 3  # every hit counted
    assert stats.requests[("cluster.local.", "tcp", "2", "A")] == 1
    assert stats.requests[("cluster.local.", "udp", "1", "A")] == 2


def test_a_change_forgets_the_tcp_queries_of_what_it_alters() -> None:
    index = clocked_index(Clock())
    handler, stats = make_handler(index)
    q1, q2, missing = (
        make_query(SVC1),
        make_query(SVC2),
        make_query("svc3.testns.svc.cluster.local"),
    )
    for q in (q1, q2, missing) * 2:
        ask(handler, q, tcp=True)
    assert len(handler.cache.exact_tcp) == 3
    index.apply(Upsert(svc("svc1", ips=["10.0.0.11"])))
    assert ask(handler, q1, tcp=True).endswith(b"\x0a\x00\x00\x0b")
    assert set(handler.cache.exact_tcp) == {q2[2:]}  # svc2's reply cannot have changed
    index.apply(Upsert(svc("svc3", ips=["10.0.0.3"])))
    assert ask(handler, missing, tcp=True).endswith(b"\x0a\x00\x00\x03")
    stats.flush()  # hits of the forgotten queries are not lost: 2 of q1, q2 and missing,
    # 1 more of q2 (before the change, as the first change left it), the 2 after it
    assert sum(n for k, n in stats.requests.items() if k[1] == "tcp") == 8


def test_an_evicted_entry_takes_its_tcp_queries_with_it() -> None:
    cache = ReplyCache(max_entries=2)
    handler, _ = make_handler(default_index(), cache=cache)
    names = [make_query("_http._tcp.svc1.testns.svc.cluster.local", t) for t in (33, 16, 2)]
    for q in names[:2] * 2:
        ask(handler, q, tcp=True)
    assert set(cache.exact_tcp) == {q[2:] for q in names[:2]}
    ask(handler, names[2], tcp=True)  # evicts the first entry (FIFO)
    assert set(cache.exact_tcp) == {names[1][2:]}
    for q in names:
        assert ask(handler, q, tcp=True) == fresh(q, tcp=True)


def test_rotating_replies_are_not_remembered() -> None:
    index = clocked_index(Clock())
    index.apply(Upsert(eps("hdls-1", "hdls", endpoints=[ep(f"10.1.0.{i}") for i in (1, 2, 3)])))
    rotating = rotating_handler(index)
    query = make_query("hdls.testns.svc.cluster.local")
    replies = {ask(rotating, query) for _ in range(6)}
    assert len(replies) == 3  # every order in turn, none frozen by the exact map
    assert not rotating.cache.exact
    replies = {ask(rotating, query, tcp=True) for _ in range(6)}
    assert len(replies) == 3  # over TCP too
    assert not rotating.cache.exact_tcp


# ---- precise invalidation: a change drops exactly what it may alter ------------------------


def slow_queries(stats: Stats) -> int:
    """Queries that took the slow path (hits are only counted at the next fold)."""
    return sum(stats.requests.values())


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def clocked_index(clock: Clock) -> Index:
    index = Index(clock=clock)
    for event in replace_events(
        [
            svc("svc1", ips=["10.0.0.1"], ports=["http/tcp/80"]),
            svc("svc2", ips=["10.0.0.2"], ports=["http/tcp/80"]),
            svc("hdls", headless=True, ports=["http/tcp/80"]),
            eps("hdls-1", "hdls", endpoints=[ep("10.1.0.1")], ports=["http/tcp/80"]),
        ]
    ):
        index.apply(event)
    return index


def test_a_change_to_one_service_keeps_other_services_cached() -> None:
    index = clocked_index(Clock())
    handler, stats = make_handler(index)
    q1 = make_query(SVC1)
    ask(handler, q1)
    before = slow_queries(stats)
    index.apply(Upsert(svc("svc2", ips=["10.0.0.22"])))
    assert ask(handler, q1) == fresh(q1, index)
    assert slow_queries(stats) == before  # still a hit: svc1's answer cannot have changed
    changed = ask(handler, make_query(SVC2))
    assert changed.endswith(b"\x0a\x00\x00\x16")  # svc2's new ClusterIP, R8


def test_a_slice_moving_between_services_refreshes_both() -> None:
    index = clocked_index(Clock())
    index.apply(Upsert(svc("other", headless=True, ports=["http/tcp/80"])))
    handler, _ = make_handler(index)
    hdls, other = (
        make_query("hdls.testns.svc.cluster.local"),
        make_query("other.testns.svc.cluster.local"),
    )
    assert header(ask(handler, hdls))[3] == 1
    assert header(ask(handler, other))[1] & 0xF == 3  # R19: no ready endpoint
    index.apply(Upsert(eps("hdls-1", "other", endpoints=[ep("10.1.0.1")], ports=["http/tcp/80"])))
    assert header(ask(handler, hdls))[1] & 0xF == 3
    assert header(ask(handler, other))[3] == 1


def test_structural_replies_are_dropped_on_any_change() -> None:
    index = clocked_index(Clock())
    handler, stats = make_handler(index)
    version = make_query("dns-version.cluster.local", 16)
    ask(handler, version)
    ask(handler, version)
    before = slow_queries(stats)
    index.apply(Upsert(svc("svc3", ips=["10.0.0.3"])))
    ask(handler, version)
    assert slow_queries(stats) == before + 1


def test_replies_from_before_a_change_are_replaced_not_added() -> None:
    clock = Clock()
    index = clocked_index(clock)
    handler, stats = make_handler(index)
    queries = [
        make_query("1.0.0.10.in-addr.arpa", 12),  # structural
        make_query("missing.testns.svc.cluster.local"),  # negative
        make_query("testns.svc.cluster.local"),  # both (NODATA, D3)
    ]
    for q in queries:
        ask(handler, q)
    size = len(handler.cache)
    for i in range(3):
        clock.now += 5
        index.apply(Upsert(svc("svc4", ips=[f"10.0.0.{40 + i}"])))
        before = slow_queries(stats)
        for q in queries:
            assert ask(handler, q) == fresh(q, index)
        assert slow_queries(stats) == before + len(queries)  # each asked anew once
        assert len(handler.cache) == size


def test_negative_replies_follow_the_soa_serial() -> None:
    clock = Clock()
    index = clocked_index(clock)
    handler, stats = make_handler(index)
    missing = make_query("missing.testns.svc.cluster.local")
    ask(handler, missing)
    before = slow_queries(stats)
    index.apply(Upsert(svc("svc3", ips=["10.0.0.3"])))  # same second: the serial stays
    assert ask(handler, missing) == fresh(missing, index)
    assert slow_queries(stats) == before
    clock.now += 5
    index.apply(Upsert(svc("svc4", ips=["10.0.0.4"])))  # the serial moves: D2's SOA changes
    assert ask(handler, missing) == fresh(missing, index)
    assert slow_queries(stats) == before + 1


def test_a_handler_far_behind_the_change_log_starts_over() -> None:
    from kdns.cluster.index import CHANGE_LOG

    index = clocked_index(Clock())
    handler, _ = make_handler(index)
    q1 = make_query(SVC1)
    ask(handler, q1)
    for i in range(CHANGE_LOG + 1):
        index.apply(Upsert(svc("churn", ips=[f"10.9.{i // 250}.{i % 250 + 1}"])))
    index.apply(Upsert(svc("svc1", ips=["10.0.0.99"])))
    assert ask(handler, q1).endswith(b"\x0a\x00\x00\x63")


# ---- EDNS variants and TCP are served from the same entries ------------------------------

COOKIE = b"\x00\x0a\x00\x08" + b"clientck"  # a client cookie (RFC 7873 §4)
PADDING = b"\x00\x0c\x00\x03" + b"\x00\x00\x00"  # padding (RFC 7830)


@pytest.mark.parametrize(
    "opt",
    [
        opt_rr(4096, do=True),
        opt_rr(1232, rdata=COOKIE),
        opt_rr(1232, do=True, rdata=COOKIE + PADDING),
        opt_rr(600),
        opt_rr(0),  # below 512: treated as 512 (RFC 6891 §6.2.5)
    ],
)
def test_edns_variants_are_hits_equal_to_the_slow_path(opt: bytes) -> None:
    for filler in (opt_rr(), opt):  # the entry filled by a bare OPT, or by the variant
        handler, stats = make_handler()
        ask(handler, make_query(SVC1, opt=filler))
        before = slow_queries(stats)
        query = make_query(SVC1, opt=opt)
        out = ask(handler, query)
        assert slow_queries(stats) == before  # a hit
        assert out == fresh(query)
        bare = make_query(SVC1, opt=opt_rr())
        assert ask(handler, bare) == fresh(bare)  # DO is not left set for the next client
        assert len(handler.cache) == 1


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("missing.testns.svc.cluster.local", 1),  # negative
        ("1.0.0.10.in-addr.arpa", 12),  # structural
        ("svc1.testns.svc.cluster.local", 65),  # NODATA for HTTPS (qtype octets 0x00 0x41)
    ],
)
@pytest.mark.parametrize(
    ("opt", "tcp"), [(None, False), (opt_rr(), False), (opt_rr(do=True), False), (None, True)]
)
def test_every_kind_of_local_reply_is_a_hit_in_every_shape(
    name: str, qtype: int, opt: bytes | None, tcp: bool
) -> None:
    index = default_index()
    handler, stats = make_handler(index)
    query = make_query(name, qtype, opt=opt)
    ask(handler, query, tcp=tcp)
    before = slow_queries(stats)
    assert ask(handler, query, tcp=tcp) == fresh(query, index, tcp=tcp)
    assert slow_queries(stats) == before


def test_do_is_echoed_and_options_are_not() -> None:
    handler, _ = make_handler()
    ask(handler, make_query(SVC1, opt=opt_rr()))
    out = ask(handler, make_query(SVC1, opt=opt_rr(4096, do=True, rdata=COOKIE)))
    # Our OPT: payload 1232, DO copied (RFC 3225 §3), no options (RDLEN 0).
    assert out[-11:] == b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"


@pytest.mark.parametrize(
    "opt",
    [
        opt_rr(version=1),  # BADVERS (RFC 6891 §6.1.3)
        opt_rr(rdata=b"\x00\x0a\x00"),  # a truncated option: FORMERR
        opt_rr(rdata=b"\x00\x0a\x00\x09" + b"12345678"),  # an option past the rdata
        b"\x01\x01\x00" + opt_rr()[1:],  # an OPT not owned by the root (RFC 6891 §6.1.2)
    ],
)
def test_edns_the_cache_cannot_vouch_for_goes_to_the_slow_path(opt: bytes) -> None:
    handler, stats = make_handler()
    ask(handler, make_query(SVC1, opt=opt_rr()))
    before = slow_queries(stats)
    query = make_query(SVC1, opt=opt)
    out = ask(handler, query)
    assert out == fresh(query)
    assert header(out)[3] == 0  # no answer: an error
    assert slow_queries(stats) == before + 1


def test_tcp_fills_the_cache_and_is_served_from_it() -> None:
    handler, stats = make_handler()
    query = make_query(SVC1)
    first = ask(handler, query, tcp=True)
    assert len(handler.cache) == 1
    before = slow_queries(stats)
    assert ask(handler, query, tcp=True) == first == fresh(query, tcp=True)
    assert ask(handler, query) == first  # over UDP too
    assert slow_queries(stats) == before


def test_a_tcp_reply_too_big_for_udp_is_not_served_over_udp() -> None:
    handler, _ = make_handler()  # "big": 100 ready endpoints, about 1.7 KB of A records
    for opt in (opt_rr(4096), None):
        query = make_query("big.testns.svc.cluster.local", opt=opt)
        whole = ask(handler, query, tcp=True)
        assert len(whole) > 1232
        assert ask(handler, query, tcp=True) == whole
        # Remembered as TCP bytes when cached (a reply over 512 bytes to a query without
        # EDNS is not: the slow path answers it every time).
        assert (query[2:] in handler.cache.exact_tcp) == (opt is not None)
        assert ask(handler, query, tcp=True) == whole
        udp = ask(handler, query)
        assert header(udp)[1] & 0x0200  # TC: the client retries over TCP (RFC 1035 §4.2.1)
        assert udp == fresh(query)


def test_hits_of_other_shapes_are_counted_with_their_labels() -> None:
    handler, stats = make_handler()
    ask(handler, make_query(SVC1, opt=opt_rr()))  # slow path
    ask(handler, make_query(SVC1, opt=opt_rr()))
    ask(handler, make_query(SVC1, opt=opt_rr(do=True)))
    ask(handler, make_query(SVC1, opt=opt_rr()), tcp=True)
    cookie = make_query(SVC1, opt=opt_rr(rdata=COOKIE))
    ask(handler, cookie)
    handler.handle(make_query(SVC1, opt=opt_rr(do=True)), False, "2")
    handler.handle(make_query(SVC1, opt=opt_rr(do=True)), True, "2")
    stats.flush()
    zone = "cluster.local."
    assert stats.requests[(zone, "udp", "1", "A")] == 4
    assert stats.requests[(zone, "tcp", "1", "A")] == 1
    assert stats.requests[(zone, "udp", "2", "A")] == 1
    assert stats.requests[(zone, "tcp", "2", "A")] == 1
    assert stats.do_requests[zone] == 3
    assert stats.responses[(zone, "NOERROR")] == 7
    sizes = stats.request_sizes[(zone, "udp")]
    assert sizes.n == 5
    assert sizes.total == 4 * (len(cookie) - len(COOKIE)) + len(cookie)


def rotating_handler(index: Index) -> DnsServer:
    """A handler whose chain rotates A records (loadbalance before kubernetes)."""
    plugins = [LoadbalancePlugin(LoadbalanceConfig()), kube_plugin(index)]
    block = Block(
        zones=("cluster.local.", *REVERSE),
        chain=link(plugins),
        plugins=plugins,
        rotations=rotations,
    )
    return DnsServer([block], index=index, stats=Stats())


def test_rotations_are_served_in_turn_to_every_shape() -> None:
    index = clocked_index(Clock())
    index.apply(Upsert(eps("hdls-1", "hdls", endpoints=[ep(f"10.1.0.{i}") for i in (1, 2, 3)])))
    handler = rotating_handler(index)
    name = "hdls.testns.svc.cluster.local"
    firsts = []
    for opt, tcp in [(opt_rr(), False), (opt_rr(do=True), False), (opt_rr(), True)] * 2:
        out = ask(handler, make_query(name, opt=opt), tcp=tcp)
        assert out[-4] == (0x80 if opt == opt_rr(do=True) else 0)  # DO echoed, or not
        firsts.append(out[12 + len(wire_name(name)) + 4 + 12 : 12 + len(wire_name(name)) + 20])
    assert firsts[:3] == [bytes((10, 1, 0, i)) for i in (1, 2, 3)]  # each address first once
    assert firsts[3:] == firsts[:3]


# ---- templates: one negative reply for every missing sibling --------------------------------


def test_unique_missing_names_are_answered_from_one_template() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))
    entries = len(handler.cache)
    before = slow_queries(stats)
    names = [f"x{i:03d}.testns.svc.cluster.local" for i in range(40)]  # same length
    names += ["X001.TestNS.svc.Cluster.Local", "a-_9.testns.svc.cluster.local"]
    for name in names:
        for opt in (None, opt_rr(do=True)):
            query = make_query(name, opt=opt)
            if opt is None:
                assert ask(handler, query) == fresh(query, index)
            else:
                ask(handler, query)  # (fills the EDNS variant's template first)
                assert ask(handler, query) == fresh(query, index)
    assert slow_queries(stats) <= before + 1  # the EDNS template's first query
    assert len(handler.cache) <= entries + 2  # no entry per name
    # Another first-label length: the compression pointers differ, so a template of its own.
    ask(handler, make_query("longer-name.testns.svc.cluster.local"))
    before = slow_queries(stats)
    query = make_query("other-label.testns.svc.cluster.local")
    assert ask(handler, query) == fresh(query, index)
    assert slow_queries(stats) == before


def test_siblings_of_a_remembered_query_check_their_own_label() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))  # the slow path: a template
    ask(handler, make_query("nop1.testns.svc.cluster.local"))  # a template hit: remembered
    (key,) = handler.cache.exact_templates
    assert (
        key
        == make_query("zzzz.testns.svc.cluster.local")[2:13]
        + wire_name("testns.svc.cluster.local")
        + b"\x00\x01\x00\x01"
    )
    before = slow_queries(stats)
    for label in ("abcd", "ABCD", "a-_9"):  # any sibling of the same length
        query = make_query(f"{label}.testns.svc.cluster.local")
        assert ask(handler, query) == fresh(query, index)
    assert slow_queries(stats) == before
    for label in ("svc1", "SVC1", "a\x00bc", "a*bc"):  # exists, or not a plain label
        query = make_query(f"{label}.testns.svc.cluster.local")
        assert ask(handler, query) == fresh(query, index)
    index.apply(Upsert(svc("abcd", ips=["10.0.0.9"])))  # now it exists
    query = make_query("abcd.testns.svc.cluster.local")
    assert ask(handler, query).endswith(b"\x0a\x00\x00\x09")
    stats.flush()
    assert stats.responses[("cluster.local.", "NXDOMAIN")] == 7  # every miss counted, hit or not


def test_siblings_with_do_or_options_are_remembered_too() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    for opt in (opt_rr(4096, do=True), opt_rr(1232, rdata=COOKIE)):
        ask(handler, make_query("nope.testns.svc.cluster.local", opt=opt))  # slow: template
        ask(handler, make_query("nop1.testns.svc.cluster.local", opt=opt))  # remembered
    assert len(handler.cache.exact_templates) == 2
    before = slow_queries(stats)
    for label in ("abcd", "a-_9"):
        for opt in (opt_rr(4096, do=True), opt_rr(1232, rdata=COOKIE)):
            query = make_query(f"{label}.testns.svc.cluster.local", opt=opt)
            out = ask(handler, query)
            assert out == fresh(query, index)
    assert slow_queries(stats) == before
    do = make_query("svc1.testns.svc.cluster.local", opt=opt_rr(4096, do=True))
    assert ask(handler, do) == fresh(do, index)  # exists: not the template's


def test_a_namespace_without_services_has_its_template_too() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    ask(handler, make_query("nope.empty.svc.cluster.local"))
    before = slow_queries(stats)
    query = make_query("also.empty.svc.cluster.local")
    out = ask(handler, query)
    assert header(out)[1] & 0xF == Rcode.NXDOMAIN
    assert out == fresh(query, index)
    assert slow_queries(stats) == before


def test_random_names_below_the_zone_and_svc_have_templates_too() -> None:
    index = default_index()
    handler, stats = make_handler(index)
    for first, sibling in [
        ("abcd.cluster.local", "wxyz.cluster.local"),
        ("nons.svc.cluster.local", "zzzz.svc.cluster.local"),  # no such namespace (D3)
    ]:
        ask(handler, make_query(first))
        before = slow_queries(stats)
        query = make_query(sibling)
        out = ask(handler, query)
        assert header(out)[1] & 0xF == Rcode.NXDOMAIN
        assert out == fresh(query, index)
        assert slow_queries(stats) == before
    # Siblings that exist, or that the SOA names, are left to the slow path.
    for first, sibling, rcode in [
        ("abcdefghij.cluster.local", "hostmaster.cluster.local", Rcode.NXDOMAIN),
        ("abcdefghijk.cluster.local", "dns-version.cluster.local", Rcode.NOERROR),
        ("nonsns.svc.cluster.local", "testns.svc.cluster.local", Rcode.NOERROR),
    ]:
        ask(handler, make_query(first))
        before = slow_queries(stats)
        query = make_query(sibling)
        out = ask(handler, query)
        assert header(out)[1] & 0xF == rcode
        assert out == fresh(query, index)
        assert slow_queries(stats) == before + 1


def pods_handler(index: Index, pods: PodMode) -> tuple[DnsServer, Stats]:
    """make_handler's chain, with the given `pods` mode."""
    config = KubernetesConfig(zones=("cluster.local.", *REVERSE), pods=pods, ttl=5)
    kube = KubernetesPlugin(config, index)
    block = Block(zones=("cluster.local.", *REVERSE), chain=link([kube]), plugins=[kube])
    stats = Stats()
    return DnsServer([block], index=index, stats=stats), stats


def deep_index() -> Index:
    """default_index, plus a named endpoint, a namespace with a pod and nothing else."""
    return make_index(
        svc("svc1", ips=["10.0.0.1"], ports=["http/tcp/80"]),
        eps("svc1-1", "svc1", endpoints=[ep("10.1.9.9", hostname="web0")], ports=["http/tcp/80"]),
        svc("big", headless=True, ports=["http/tcp/80"]),
        eps("big-1", "big", endpoints=[ep(f"10.1.0.{i}") for i in range(1, 9)]),
        svc("ext", external="example.com"),
        svc("empty", headless=True),  # no endpoints: nothing below it (R19)
        pod("p1", "podns", ips=["10.2.0.7"]),
    )


# (the name that makes the template, siblings of the same length that do not exist, and
# siblings of the same length that exist or that the test leaves to the slow path)
DEEP_SHAPES = [
    # below a ClusterIP Service: endpoint names (N6) and protocol names (D3)
    ("abcd.svc1.testns.svc.cluster.local", ["wxyz", "a-_9", "big1", "_udp"], ["web0", "_tcp"]),
    # below a headless Service: its endpoints, labelled by their addresses (R20)
    ("abcdefgh.big.testns.svc.cluster.local", ["zzzzzzzz", "10-1-0-9"], ["10-1-0-1"]),
    ("abcd.ext.testns.svc.cluster.local", ["wxyz", "_tcp"], []),  # below an ExternalName
    ("abcd.empty.testns.svc.cluster.local", ["wxyz", "_tcp"], []),
    ("abcd.nosvc.testns.svc.cluster.local", ["wxyz", "_tcp"], []),
    ("_abc._tcp.testns.svc.cluster.local", ["_xyz", "_srv"], []),  # random SRV names
    # the ndots:5 search-path misses of an external name
    ("www.example.com.testns.svc.cluster.local", ["abc", "_ab", "svc"], []),
    ("www.example.com.svc.cluster.local", ["api", "cdn"], []),
    ("www.example.com.cluster.local", ["api", "svc", "pod"], []),
    ("abcd.w.x.y.testns.svc.cluster.local", ["wxyz"], []),
    # beside a port name (_http._tcp.svc1...): only named ports of that protocol exist
    ("abcde._tcp.svc1.testns.svc.cluster.local", ["vwxyz", "_nope"], ["_http"]),
    ("_abcd._udp.svc1.testns.svc.cluster.local", ["_http"], []),
    ("_abcd._tcp.ext.testns.svc.cluster.local", ["_http"], []),
    # the pod tree (P1, insecure): any address in a namespace that exists
    ("abcdefg.testns.pod.cluster.local", ["zzzzzzz", "1-2-3-x"], ["1-2-3-4"]),
    ("abcdef.pod.cluster.local", ["nonsns"], ["testns"]),
    ("x.a.testns.pod.cluster.local", ["y"], []),
    ("ab.dns.cluster.local", ["xy"], ["ns"]),
]


@pytest.mark.parametrize(("first", "absent", "slow"), DEEP_SHAPES)
def test_deeper_misses_have_templates_and_never_hide_a_name(
    first: str, absent: list[str], slow: list[str]
) -> None:
    """Every NXDOMAIN below the zone makes a template for its siblings; a sibling that
    exists (or whose label the test leaves to the slow path) is answered by the slow path.
    Expected replies: a fresh handler's (answer(), the spec's tables)."""
    index = deep_index()
    handler, stats = make_handler(index)
    out = ask(handler, make_query(first))
    assert header(out)[1] & 0xF == Rcode.NXDOMAIN
    parent = first.split(".", 1)[1]
    for label in absent:
        before = slow_queries(stats)
        query = make_query(f"{label}.{parent}")
        assert ask(handler, query) == fresh(query, index)
        assert slow_queries(stats) == before, label  # from the template
    for label in slow:
        before = slow_queries(stats)
        query = make_query(f"{label}.{parent}")
        got = ask(handler, query)
        assert got == fresh(query, index)
        assert slow_queries(stats) == before + 1, label


# Which of the siblings exist, per mode (P1): a pod's address (10-2-0-7), another
# address (10-2-0-8), a label that is no address, and the pod's namespace.
POD_SIBLINGS = {
    PodMode.DISABLED: set[str](),
    PodMode.INSECURE: {"10-2-0-7", "10-2-0-8", "podns"},
    PodMode.VERIFIED: {"10-2-0-7", "podns"},
}


@pytest.mark.parametrize("mode", list(PodMode))
def test_pod_templates_follow_the_pods_mode(mode: PodMode) -> None:
    """`<x>.<ns>.pod` exists per mode (P1): disabled never, insecure for any address in a
    namespace that exists, verified for a pod's address only; `<x>.pod` is a namespace."""
    index = deep_index()
    handler, stats = pods_handler(index, mode)
    for first, labels in [
        ("abcdefgh.podns.pod.cluster.local", ("zzzzzzzz", "10-2-0-7", "10-2-0-8")),
        ("abcde.pod.cluster.local", ("podns", "nons1")),
    ]:
        ask(handler, make_query(first))
        parent = first.split(".", 1)[1]
        for label in labels:
            query = make_query(f"{label}.{parent}")
            before = slow_queries(stats)
            assert ask(handler, query) == ask(pods_handler(index, mode)[0], query), label
            exists = label in POD_SIBLINGS[mode]
            assert slow_queries(stats) == before + exists, label


def test_an_endpoint_that_appears_is_answered_at_once() -> None:
    index = deep_index()
    handler, _ = make_handler(index)
    ask(handler, make_query("abcd.svc1.testns.svc.cluster.local"))  # a template
    ask(handler, make_query("web1.svc1.testns.svc.cluster.local"))  # remembered from it
    endpoints = [ep("10.1.9.9", hostname="web0"), ep("10.1.9.8", hostname="web1")]
    index.apply(Upsert(eps("svc1-1", "svc1", endpoints=endpoints, ports=["http/tcp/80"])))
    out = ask(handler, make_query("web1.svc1.testns.svc.cluster.local"))
    assert header(out)[1] & 0xF == Rcode.NOERROR
    assert out.endswith(b"\x0a\x01\x09\x08")


@pytest.mark.parametrize("parent", ["testns.svc.cluster.local", "w.testns.svc.cluster.local"])
def test_no_template_when_a_fallthrough_zone_lies_among_the_siblings(parent: str) -> None:
    index = deep_index()
    upstream = FakeUpstream(lambda query: query[:2] + b"\x81\x80" + query[4:])  # NOERROR
    config = KubernetesConfig(
        zones=("cluster.local.",),
        pods=PodMode.INSECURE,
        ttl=5,
        fallthrough=(f"deep.{parent}.",),
    )
    kube = KubernetesPlugin(config, index)
    forward = ForwardTo(upstream)
    block = Block(zones=(".",), chain=link([kube, forward]), plugins=[kube, forward])
    handler = DnsServer([block], index=index, stats=Stats())
    ask(handler, make_query(f"abcd.{parent}"))  # NXDOMAIN, no template
    assert not any(handler.cache.templates)

    async def run() -> None:
        out = await resolve(handler.handle(make_query(f"deep.{parent}"), False, "1"))
        assert out is not None
        assert header(out)[1] & 0xF == Rcode.NOERROR  # the upstream's

    asyncio.run(run())
    assert len(upstream.seen) == 1


def test_a_template_never_answers_for_a_name_that_exists() -> None:
    index = clocked_index(Clock())
    handler, _ = make_handler(index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))
    out = ask(handler, make_query("svc1.testns.svc.cluster.local"))  # as long as "nope"
    assert header(out)[3] == 1
    assert out.endswith(b"\x0a\x00\x00\x01")  # R8
    hdls = make_query("hdls.testns.svc.cluster.local")  # headless: its endpoints (R17)
    assert ask(handler, hdls) == fresh(hdls, index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))
    index.apply(Upsert(svc("newx", ips=["10.0.0.9"])))
    out = ask(handler, make_query("newx.testns.svc.cluster.local"))
    assert header(out)[3] == 1
    assert out.endswith(b"\x0a\x00\x00\x09")


@pytest.mark.parametrize("label", ["a*cd", "a.cd", "a\x00cd", "a\\cd", "\xe9abc"])
def test_labels_that_are_not_plain_take_the_slow_path(label: str) -> None:
    index = default_index()
    handler, stats = make_handler(index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))
    query = make_query("x.testns.svc.cluster.local")
    pos = 12
    query = query[:pos] + bytes((len(label),)) + label.encode("latin-1") + query[pos + 2 :]
    before = slow_queries(stats)
    assert ask(handler, query) == fresh(query, index)
    assert slow_queries(stats) == before + 1


def test_templates_follow_the_soa_serial() -> None:
    clock = Clock()
    index = clocked_index(clock)
    handler, stats = make_handler(index)
    ask(handler, make_query("nope.testns.svc.cluster.local"))
    clock.now += 5
    index.apply(Upsert(svc("svc4", ips=["10.0.0.4"])))  # the serial moves (D2's SOA)
    before = slow_queries(stats)
    query = make_query("gone.testns.svc.cluster.local")
    assert ask(handler, query) == fresh(query, index)
    assert slow_queries(stats) == before + 1


class Fixed(Plugin):
    """Answers every name with one A record, cacheable."""

    name = "fixed"

    def serve(self, request: Request) -> Result:
        record = Record(request.question.lname, 5, A(IPv4Address("192.0.2.1")))
        return Response(Reply(answer=(record,)), plugin=self.name, cacheable=True)


def kube_plugin(index: Index, *, fallthrough: tuple[str, ...] | None = None) -> Plugin:
    config = KubernetesConfig(
        zones=("cluster.local.", *REVERSE), pods=PodMode.INSECURE, ttl=5, fallthrough=fallthrough
    )
    return KubernetesPlugin(config, index)


def test_no_template_when_a_sibling_is_a_zone_of_another_block() -> None:
    index = default_index()
    kube = kube_plugin(index)
    other = Fixed()
    blocks = [
        Block(zones=("cluster.local.", *REVERSE), chain=link([kube]), plugins=[kube]),
        Block(zones=("other.testns.svc.cluster.local.",), chain=link([other]), plugins=[other]),
    ]
    handler = DnsServer(blocks, index=index, stats=Stats())
    for _ in range(2):
        ask(handler, make_query("nope1.testns.svc.cluster.local"))
    out = ask(handler, make_query("other.testns.svc.cluster.local"))  # as long as "nope1"
    assert out.endswith(b"\xc0\x00\x02\x01")  # 192.0.2.1 from the other block


def test_no_template_when_a_sibling_is_a_zone_of_the_plugin() -> None:
    index = default_index()

    def handler() -> DnsServer:
        config = KubernetesConfig(
            zones=("cluster.local.", "foo.testns.svc.cluster.local."), pods=PodMode.INSECURE, ttl=5
        )
        kube = KubernetesPlugin(config, index)
        block = Block(zones=("cluster.local.",), chain=link([kube]), plugins=[kube])
        return DnsServer([block], index=index, stats=Stats())

    warm = handler()
    for _ in range(2):
        ask(warm, make_query("nop.testns.svc.cluster.local"))
    query = make_query("foo.testns.svc.cluster.local")  # as long as "nop": a zone's apex
    out = ask(warm, query)
    assert header(out)[1] & 0xF == Rcode.NOERROR  # NODATA at the apex (D7), not NXDOMAIN
    assert out == ask(handler(), query)


def test_no_template_when_misses_fall_through() -> None:
    index = default_index()
    upstream = FakeUpstream(lambda query: query[:2] + b"\x81\x83" + query[4:])  # NXDOMAIN
    kube = kube_plugin(index, fallthrough=())
    forward = ForwardTo(upstream)
    block = Block(zones=(".",), chain=link([kube, forward]), plugins=[kube, forward])
    handler = DnsServer([block], index=index, stats=Stats())

    async def run() -> None:
        for i in range(5):
            out = await resolve(
                handler.handle(make_query(f"x{i}.testns.svc.cluster.local"), False, "1")
            )
            assert out is not None
            assert header(out)[1] & 0xF == Rcode.NXDOMAIN

    asyncio.run(run())
    assert len(upstream.seen) == 5  # every miss went on: kubernetes did not answer it


class OwnSoa(Plugin):
    """NXDOMAIN for names under example.org, with an SOA owned by `first.example.org`, and
    (against the contract) every sibling promised the same records."""

    name = "ownsoa"

    def serve(self, request: Request) -> Result:
        soa = SOA("ns.example.org.", "host.example.org.", 1, 2, 3, 4, 5)
        reply = Reply(rcode=Rcode.NXDOMAIN, authority=(Record("first.example.org.", 5, soa),))
        return Response(reply, cacheable=True, siblings=lambda label: True)


def test_no_template_when_the_reply_points_at_the_whole_name() -> None:
    plugin = OwnSoa()
    block = Block(zones=(".",), chain=link([plugin]), plugins=[plugin])
    handler = DnsServer([block], index=default_index(), stats=Stats())
    ask(handler, make_query("first.example.org"))  # its SOA owner: a pointer to the question
    out = ask(handler, make_query("other.example.org"))
    assert b"\x05first" in out  # the owner spelled out, not the sibling's name


class Uncacheable(Plugin):
    """Passes on and clears `cacheable` on the way back, as `log` does."""

    name = "log"

    def serve(self, request: Request) -> Result:
        response = self.next.serve(request)
        assert isinstance(response, Response)
        response.cacheable = False
        return response


def test_a_plugin_that_sees_every_query_gets_every_miss() -> None:
    index = default_index()
    plugins = [Uncacheable(), kube_plugin(index)]
    block = Block(zones=("cluster.local.",), chain=link(plugins), plugins=plugins)
    handler = DnsServer([block], index=index, stats=Stats())
    for i in range(3):
        ask(handler, make_query(f"x{i}.testns.svc.cluster.local"))
    assert len(handler.cache) == 0


class ByType(Plugin):
    """NXDOMAIN for type 97, NOERROR with an A record for the rest: the key must tell the
    type 0x0061 apart from HTTPS (65, 0x0041), which lower-casing would turn into it."""

    name = "bytype"

    def serve(self, request: Request) -> Result:
        if request.question.qtype == 97:
            return Response(Reply(rcode=Rcode.NXDOMAIN), cacheable=True)
        return Fixed().serve(request)


def test_the_key_keeps_the_qtype_as_sent() -> None:
    plugin = ByType()
    block = Block(zones=(".",), chain=link([plugin]), plugins=[plugin])
    handler = DnsServer([block], index=default_index(), stats=Stats())
    for _ in range(2):
        ask(handler, make_query("example.org", 97))
    https = ask(handler, make_query("example.org", 65))
    assert header(https)[1] & 0xF == Rcode.NOERROR
    before = slow_queries(handler.stats)
    assert ask(handler, make_query("example.org", 65)) == https  # HTTPS is kept too
    ask(handler, make_query("example.org", 65, opt=opt_rr()))
    ask(handler, make_query("example.org", 65, opt=opt_rr(do=True)))
    assert slow_queries(handler.stats) == before + 1  # only the EDNS variant's first


# ---- aging entries: forward cache replies, TTLs counted down ---------------------------------


class Relay(Plugin):
    """A forward cache stand-in: relays a reply with one A record of TTL 300 (or an NXDOMAIN
    with an SOA of TTL 60) as wire bytes, marked cacheable until `clock() + life`."""

    name = "cache"

    def __init__(
        self, clock: Clock, *, life: float = 30.0, nxdomain: bool = False, offsets: bool = False
    ) -> None:
        super().__init__()
        self.clock = clock
        self.life = life
        self.nxdomain = nxdomain
        self.offsets = offsets  # say where the TTLs are, as the cache plugin does
        self.calls = 0
        self.question: bytes | None = None  # the question to relay, if not the client's

    def serve(self, request: Request) -> Result:
        self.calls += 1
        query = request.query
        question = self.question or query.question_wire
        if self.nxdomain:
            flags, counts = 0x8183, (1, 0, 1, 0)
            soa = wire_name("ns.example.") + wire_name("host.example.") + bytes(20)
            records = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa
        else:
            flags, counts = 0x8180, (1, 1, 0, 0)
            records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes((192, 0, 2, 7))
        wire = struct.pack("!HH4H", query.id, flags, *counts) + question + records
        return Response(
            wire=wire,
            plugin=self.name,
            cacheable=True,
            expires=self.clock() + self.life,
            ttl_offsets=(wire, ttl_offsets(wire)) if self.offsets else None,
        )


def relay_handler(relay: Relay, clock: Clock, index: Index | None = None) -> DnsServer:
    block = Block(zones=(".",), chain=link([relay]), plugins=[relay], recursion=True)
    cache = ReplyCache(clock=clock)
    return DnsServer([block], index=index or default_index(), stats=Stats(), cache=cache)


def ttl_of_first_record(reply: bytes, question_len: int) -> int:
    return int(struct.unpack_from("!I", reply, 12 + question_len + 6)[0])


@pytest.mark.parametrize("offsets", [False, True], ids=["found-here", "from-the-plugin"])
def test_a_forward_cache_reply_is_served_with_its_ttls_counted_down(offsets: bool) -> None:
    clock = Clock()
    relay = Relay(clock, offsets=offsets)
    handler = relay_handler(relay, clock)
    query = make_query("www.example.org", qid=1)
    qlen = len(query) - 12
    first = ask(handler, query)
    assert ttl_of_first_record(first, qlen) == 300
    again = ask(handler, make_query("www.example.org", qid=2))
    assert relay.calls == 1  # served by the fast path
    assert again[:2] == b"\x00\x02"
    assert again[2:] == first[2:]
    clock.now += 3.5
    mixed = make_query("WWW.Example.org", qid=3)
    aged = ask(handler, mixed)
    assert ttl_of_first_record(aged, qlen) == 297  # RFC 1035 §4.1.3: the time left
    assert aged[12 : 12 + qlen] == mixed[12:]  # the client's spelling (D4)
    assert len(aged) == len(first)
    clock.now += 30  # past `expires`
    ask(handler, query)
    assert relay.calls == 2


class Spell(Plugin):
    """On the way back, replaces the reply's answer owner (a pointer to the question) by
    the name spelled out: the records move, so TTL offsets found before no longer hold."""

    name = "spell"

    def serve(self, request: Request) -> Result:
        qname = request.query.qname_wire

        def spell(response: Response) -> Response:
            assert response.wire is not None
            response.wire = response.wire.replace(b"\xc0\x0c", qname, 1)
            return response

        return then(self.next.serve(request), spell)


def test_ttl_offsets_given_for_bytes_a_later_plugin_replaced_are_not_used() -> None:
    clock = Clock()
    relay = Relay(clock, offsets=True)
    spell = Spell()
    plugins: list[Plugin] = [spell, relay]
    block = Block(zones=(".",), chain=link(plugins), plugins=plugins, recursion=True)
    handler = DnsServer(
        [block], index=default_index(), stats=Stats(), cache=ReplyCache(clock=clock)
    )
    query = make_query("www.example.org", qid=1)
    qlen = len(query) - 12
    first = ask(handler, query)
    ttl_at = 12 + qlen + (qlen - 4) + 4  # after the question and the spelled-out owner
    assert struct.unpack_from("!I", first, ttl_at)[0] == 300
    clock.now += 3.5
    aged = ask(handler, make_query("www.example.org", qid=2))
    assert relay.calls == 1  # from the fast path, its TTL counted down where it now is
    assert struct.unpack_from("!I", aged, ttl_at)[0] == 297
    assert aged[2:ttl_at] == first[2:ttl_at]


def test_a_repeated_forwarded_query_counts_down_and_expires_through_the_exact_map() -> None:
    clock = Clock()
    start = clock.now
    relay = Relay(clock)
    handler = relay_handler(relay, clock)
    query = make_query("www.example.org", qid=1)
    qlen = len(query) - 12
    ask(handler, query)  # forwarded and kept
    ask(handler, query)  # a hit: remembered with its own bytes
    assert list(handler.cache.exact) == [query[2:]]
    for elapsed in (1.2, 7.9, 29.5):
        clock.now = start + elapsed
        out = ask(handler, query)
        assert ttl_of_first_record(out, qlen) == 300 - int(elapsed)
        assert relay.calls == 1
    clock.now = start + 31  # past `expires`: asked upstream again, not served
    ask(handler, query)
    assert relay.calls == 2
    assert ask(handler, query) != b""  # the new reply is a hit again, under the same key
    assert relay.calls == 2
    assert list(handler.cache.exact) == [query[2:]]


def test_a_forward_cache_reply_keeps_its_header_and_skips_do_clients() -> None:
    clock = Clock()
    relay = Relay(clock)
    handler = relay_handler(relay, clock)
    stored = ask(handler, make_query("www.example.org"))
    no_rd = ask(handler, make_query("www.example.org", flags=0x0000))
    assert relay.calls == 1
    assert no_rd[2:4] == stored[2:4]  # as the forward cache serves it: the stored flags
    ask(handler, make_query("www.example.org", opt=opt_rr()))
    ask(handler, make_query("www.example.org", opt=opt_rr()))
    assert relay.calls == 2  # the EDNS variant is an entry of its own
    ask(handler, make_query("www.example.org", opt=opt_rr(do=True)))
    assert relay.calls == 3  # an upstream's reply to a DO query may differ (RRSIGs)


def test_cluster_changes_keep_forward_cache_replies_and_reloads_drop_them() -> None:
    clock = Clock()
    relay = Relay(clock)
    index = clocked_index(clock)
    handler = relay_handler(relay, clock, index)
    ask(handler, make_query("www.example.org"))
    clock.now += 5
    index.apply(Upsert(svc("svc9", ips=["10.0.0.9"])))
    ask(handler, make_query("www.example.org"))
    assert relay.calls == 1
    handler.set_blocks(handler.blocks)
    ask(handler, make_query("www.example.org"))
    assert relay.calls == 2


def test_relayed_replies_that_do_not_fit_the_question_are_not_kept() -> None:
    clock = Clock()
    relay = Relay(clock)
    relay.question = wire_name("other.example.org") + b"\x00\x01\x00\x01"
    handler = relay_handler(relay, clock)
    ask(handler, make_query("www.example.org"))
    ask(handler, make_query("www.example.org"))
    assert relay.calls == 2


def test_forward_cache_hits_are_counted_as_cache_hits() -> None:
    clock = Clock()
    for nxdomain, kind in ((False, "success"), (True, "denial")):
        relay = Relay(clock, nxdomain=nxdomain)
        handler = relay_handler(relay, clock)
        for _ in range(3):
            ask(handler, make_query("www.example.org"))
        handler.stats.flush()
        assert handler.stats.cache_hits == {kind: 2}
        assert sum(handler.stats.requests.values()) == 3


# ---- the fast path answers exactly as the slow path would ------------------------------------

NAMES = [
    ("svc0.testns.svc.cluster.local", 1),
    ("svc1.testns.svc.cluster.local", 1),
    ("svc1.testns.svc.cluster.local", 28),
    ("_http._tcp.svc1.testns.svc.cluster.local", 33),
    ("hdls.testns.svc.cluster.local", 1),
    ("_http._tcp.hdls.testns.svc.cluster.local", 33),
    ("10-1-0-1.hdls.testns.svc.cluster.local", 1),
    ("alias.testns.svc.cluster.local", 1),
    ("svc.cluster.local", 1),
    ("testns.svc.cluster.local", 1),
    ("cluster.local", 6),
    ("1.0.1.10.in-addr.arpa", 12),
    ("1.0.0.10.in-addr.arpa", 12),
    ("nope.testns.svc.cluster.local", 1),
    ("nope.empty.svc.cluster.local", 16),
    ("abcdefghij.cluster.local", 1),
    ("nonsns.svc.cluster.local", 28),
]
# Siblings of the names above (as long as "svc0", "svc1", "hdls", "nope"), some of which
# the events below create: answered from templates only while they do not exist.
SIBLINGS = [
    ("svc2.testns.svc.cluster.local", 1),
    ("SvC2.testNS.svc.cluster.local", 1),
    ("zzzz.testns.svc.cluster.local", 1),
    ("hdlz.empty.svc.cluster.local", 16),
    ("hostmaster.cluster.local", 1),
    ("zzzzzzzzzz.cluster.local", 1),
    ("testns.svc.cluster.local", 28),
    ("zzzzzz.svc.cluster.local", 28),
]
SHAPES = [
    {},
    {"opt": opt_rr()},
    {"opt": opt_rr(4096, do=True)},
    {"opt": opt_rr(1232, rdata=COOKIE)},
    {"tcp": True},
    {"opt": opt_rr(do=True), "tcp": True},
    {"flags": 0x0000},
]

EVENTS = st.one_of(
    st.tuples(st.just("svc"), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("del"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("eps"), st.sampled_from(["hdls", "svc1"]), st.integers(0, 3)),
    st.tuples(st.just("alias"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.just(0)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(EVENTS, max_size=10), st.sampled_from(SHAPES))
def test_under_any_changes_every_reply_equals_a_fresh_handlers(
    events: list,  # type: ignore[type-arg]
    shape: dict,  # type: ignore[type-arg]
) -> None:
    clock = Clock()
    index = clocked_index(clock)
    handler, _ = make_handler(index)
    tcp = bool(shape.get("tcp"))
    fields = {k: v for k, v in shape.items() if k != "tcp"}
    queries = [make_query(name, qtype, **fields) for name, qtype in NAMES + SIBLINGS]
    for q in queries:
        ask(handler, q, tcp=tcp)
        ask(handler, q, tcp=tcp)  # (a hit: remembered in the exact-query map, see below)
    for kind, a, b in events:
        if kind == "svc":
            index.apply(Upsert(svc(f"svc{a}", ips=[f"10.0.0.{b}"], ports=["http/tcp/80"])))
        elif kind == "del":
            index.apply(Delete(Kind.SERVICE, "testns", f"svc{a}"))
        elif kind == "eps":
            endpoints = [ep(f"10.1.0.{i + 1}") for i in range(b)]
            index.apply(Upsert(eps("hdls-1", a, endpoints=endpoints, ports=["http/tcp/80"])))
        elif kind == "alias":
            index.apply(Upsert(svc("alias", external=f"svc{a}.testns.svc.cluster.local")))
        else:
            clock.now += 1
        for q in queries:
            assert ask(handler, q, tcp=tcp) == fresh(q, index, tcp=tcp), q


WARM = [make_query(name, qtype) for name, qtype in NAMES] + [
    make_query(name, qtype, opt=opt_rr()) for name, qtype in NAMES
]


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """A query the cache has seen (or a sibling of one), with a few octets changed,
    appended or cut: the cache must never answer it other than the slow path does."""
    name, qtype = draw(st.sampled_from(NAMES + SIBLINGS))
    opt = draw(st.sampled_from([None, opt_rr(), opt_rr(do=True), opt_rr(rdata=COOKIE)]))
    data = bytearray(make_query(name, qtype, opt=opt))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(2, len(data) - 1))
        data[i] = draw(st.sampled_from([0, 1, 0x3F, 0x40, 0x80, 0xC0, 0xFF, data[i] ^ 0x20]))
    if draw(st.booleans()):
        data += draw(st.binary(max_size=4))
    cut = draw(st.integers(12, len(data)))
    return bytes(data[:cut])


@settings(max_examples=300, deadline=None)
@given(near_misses(), st.booleans())
def test_near_misses_are_answered_as_the_slow_path_would(data: bytes, tcp: bool) -> None:
    index = default_index()
    handler, _ = make_handler(index)
    for q in WARM:
        ask(handler, q)
        ask(handler, q)
    slow, _ = make_handler(index, cache=ReplyCache(max_entries=0))
    assert handler.handle(data, tcp, "1") == slow.handle(data, tcp, "1")
