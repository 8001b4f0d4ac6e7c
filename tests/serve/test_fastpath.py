"""The reply cache: hits match the slow path; invalidation, variants, bounds, metrics."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster.index import Index
from kdns.cluster.model import Delete, Kind, Upsert
from kdns.observe.stats import Stats
from kdns.serve.fastpath import ReplyCache
from kdns.serve.server import DnsServer
from tests.builders import ep, eps, replace_events, svc
from tests.dns.test_wire import header, make_query, opt_rr
from tests.serve.test_server import default_index, make_handler, make_index

SVC1 = "svc1.testns.svc.cluster.local"
SVC2 = "svc2.testns.svc.cluster.local"


def fresh(data: bytes, index: Index | None = None) -> bytes:
    """The slow path's reply, from a handler whose cache is empty."""
    handler, _ = make_handler(index)
    out = handler.handle(data, tcp=False, family="1")
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


def test_edns_variant_is_kept_apart_and_do_is_not_cached() -> None:
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


def test_tcp_and_unusual_flags_take_the_slow_path() -> None:
    handler, _ = make_handler()
    ask(handler, make_query(SVC1))
    cd = make_query(SVC1, flags=0x0110)
    assert header(ask(handler, cd))[1] & 0x0010  # CD copied (RFC 4035 §3.1.6)
    assert ask(handler, make_query(SVC1), tcp=True) == fresh(make_query(SVC1))
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
    for i in range(20):
        ask(handler, make_query(f"_p{i}._tcp.svc1.testns.svc.cluster.local", 33))
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
]

EVENTS = st.one_of(
    st.tuples(st.just("svc"), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("del"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("eps"), st.sampled_from(["hdls", "svc1"]), st.integers(0, 3)),
    st.tuples(st.just("alias"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(EVENTS, max_size=12))
def test_under_any_changes_every_reply_equals_a_fresh_handlers(events: list) -> None:  # type: ignore[type-arg]
    clock = Clock()
    index = clocked_index(clock)
    handler, _ = make_handler(index)
    queries = [make_query(name, qtype) for name, qtype in NAMES]
    for q in queries:
        ask(handler, q)
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
            assert ask(handler, q) == fresh(q, index), q
