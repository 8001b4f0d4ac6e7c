"""The DNS server of one listener: routing by zone to plugin chains, protocol rules, size
limits, upstream fallbacks, panics."""

from __future__ import annotations

import inspect
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster.index import Index
from kdns.config.model import KubernetesConfig
from kdns.config.settings import PodMode
from kdns.dns.records import Question, Rcode, Reply
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import KubernetesPlugin
from kdns.serve.chain import Plugin, Request, Response, Result, link
from kdns.serve.fastpath import ReplyCache
from kdns.serve.server import Block, DnsServer
from tests.builders import ep, eps, replace_events, svc
from tests.dns.test_wire import header, make_query, opt_rr, upstream_reply, wire_name

HOSTILE = Path(__file__).parents[1] / "data" / "hostile" / "packets.txt"
REVERSE = ("in-addr.arpa.", "ip6.arpa.")


# The index's clock sets the SOA serial (the time of the last change): one fixed time, so
# that two indexes of the same objects (a handler's, and `fresh()`'s in test_fastpath)
# give the same negative replies even when a second boundary falls between them.
INDEX_TIME = 1_767_225_600.0


def make_index(*objects: object) -> Index:
    index = Index(clock=lambda: INDEX_TIME)
    for event in replace_events(objects):  # type: ignore[arg-type]
        index.apply(event)
    return index


def default_index() -> Index:
    addresses = [f"10.1.{i // 200}.{i % 200 + 1}" for i in range(100)]
    return make_index(
        svc("svc1", ips=["10.0.0.1"], ports=["http/tcp/80"]),
        svc("big", headless=True, ports=["http/tcp/80"]),
        eps("big-1", "big", endpoints=[ep(a) for a in addresses], ports=["http/tcp/80"]),
        svc("ext", external="example.com"),
    )


class FakeUpstream:
    """Answers every forwarded query with `reply(query)`, or None to act as a failure."""

    def __init__(self, reply: object = None) -> None:
        self.reply = reply
        self.seen: list[tuple[bytes, Question, bool]] = []

    async def forward(self, query: bytes, *, question: Question, tcp: bool) -> bytes | None:
        self.seen.append((query, question, tcp))
        if callable(self.reply):
            out = self.reply(query)
            assert out is None or isinstance(out, bytes)
            return out
        return None


class ForwardTo(Plugin):
    """`forward` over a FakeUpstream: its reply relayed, SERVFAIL when it fails."""

    name = "forward"

    def __init__(self, upstream: FakeUpstream) -> None:
        super().__init__()
        self.upstream = upstream

    async def _ask(self, request: Request) -> Response:
        got = await self.upstream.forward(request.data, question=request.question, tcp=request.tcp)
        if got is None:
            return Response(Reply(rcode=Rcode.SERVFAIL, authoritative=False), error="failed")
        return Response(wire=got, plugin=self.name)

    def serve(self, request: Request) -> Result:
        return self._ask(request)


class ZonesPlugin(Plugin):
    """`file` over StubZones."""

    name = "file"

    def __init__(self, zones: StubZones) -> None:
        super().__init__()
        self.zones = zones

    def serve(self, request: Request) -> Result:
        if self.zones.find(request.question.lname) is None:
            return self.next.serve(request)
        return Response(self.zones.answer(request.question), plugin=self.name)


def make_handler(
    index: Index | None = None,
    *,
    upstream: FakeUpstream | None = None,
    static_zones: StubZones | None = None,
    cache: ReplyCache | None = None,
) -> tuple[DnsServer, Stats]:
    """The chain the flags build: kubernetes (reverse misses fall through when there is an
    upstream), file, forward; one block for every served zone."""
    stats = Stats()
    index = index or default_index()
    kube = KubernetesConfig(
        zones=("cluster.local.", *REVERSE),
        pods=PodMode.INSECURE,
        ttl=5,
        fallthrough=REVERSE if upstream is not None else None,
    )
    plugins: list[Plugin] = [KubernetesPlugin(kube, index)]
    zones = ["cluster.local.", *REVERSE]
    if static_zones is not None:
        plugins.append(ZonesPlugin(static_zones))
        zones.append("example.org.")
    if upstream is not None:
        plugins.append(ForwardTo(upstream))
        zones.append(".")
    block = Block(
        zones=tuple(zones), chain=link(plugins), plugins=plugins, recursion=upstream is not None
    )
    return DnsServer([block], index=index, stats=stats, cache=cache), stats


def sync(result: object) -> bytes | None:
    assert not inspect.isawaitable(result)
    assert result is None or isinstance(result, bytes)
    return result


async def resolve(result: object) -> bytes | None:
    if inspect.isawaitable(result):
        result = await result
    assert result is None or isinstance(result, bytes)
    return result


SVC1 = "svc1.testns.svc.cluster.local"


def test_cluster_a_answer() -> None:
    handler, stats = make_handler()
    out = sync(handler.handle(make_query(SVC1), tcp=False, family="1"))
    assert out is not None
    _, flags, qd, an, ns, ar = header(out)
    assert flags == 0x8000 | 0x0400 | 0x0100  # QR AA RD; no upstream -> RA clear
    assert (qd, an, ns, ar) == (1, 1, 0, 0)
    assert out.endswith(b"\x00\x04\x0a\x00\x00\x01")
    assert stats.requests == {("cluster.local.", "udp", "1", "A"): 1}
    assert stats.responses == {("cluster.local.", "NOERROR"): 1}


@pytest.mark.parametrize("qclass", [3, 4, 254, 255])  # CH, HS, NONE, ANY
def test_a_refused_other_class_never_reaches_class_in_clients(qclass: int) -> None:
    handler, _ = make_handler()
    for _ in range(3):  # repeated, so a cached reply would be served from the hot path
        refused = sync(handler.handle(make_query(SVC1, qclass=qclass), tcp=False, family="1"))
        assert refused is not None
        assert header(refused)[1] & 0x000F == Rcode.REFUSED
    answered = sync(handler.handle(make_query(SVC1), tcp=False, family="1"))
    assert answered is not None
    assert header(answered)[1] & 0x000F == Rcode.NOERROR
    assert header(answered)[3] == 1  # R8: the ClusterIP, not the other class's REFUSED


def test_qr_set_is_dropped_and_counted() -> None:
    handler, stats = make_handler()
    assert handler.handle(make_query(SVC1, flags=0x8100), tcp=False, family="1") is None
    assert stats.dropped == 1
    assert stats.requests == {("dropped", "udp", "1", "other"): 1}


@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (make_query(SVC1, flags=(4 << 11)), Rcode.NOTIMP),  # NOTIFY
        (make_query(SVC1, flags=(5 << 11)), Rcode.NOTIMP),  # UPDATE
        (make_query("cluster.local", 252), Rcode.REFUSED),  # AXFR (D8)
        (make_query("cluster.local", 251), Rcode.REFUSED),  # IXFR
        (make_query(SVC1, qclass=3), Rcode.REFUSED),  # CH
        (make_query(SVC1, qclass=255), Rcode.REFUSED),  # ANY class
        (make_query("example.com"), Rcode.REFUSED),  # D6, no upstream
        (make_query(SVC1) + b"junk", Rcode.FORMERR),
        (make_query(SVC1, counts=(2, 0, 0, 0)), Rcode.FORMERR),
    ],
)
def test_protocol_rules(data: bytes, rcode: Rcode) -> None:
    handler, _ = make_handler()
    out = sync(handler.handle(data, tcp=False, family="1"))
    assert out is not None
    qid, flags, _qd, an, *_ = header(out)
    assert qid == 0x1234
    assert flags & 0x8000
    assert flags & 0xF == rcode
    assert an == 0


def test_edns_version_1_gets_badvers() -> None:
    handler, _ = make_handler()
    out = sync(handler.handle(make_query(SVC1, opt=opt_rr(version=1)), tcp=False, family="1"))
    assert out is not None
    assert header(out)[1] & 0xF == 0
    assert out[-11:-6] == b"\x00\x00\x29\x04\xd0"
    assert out[-6] == 1  # extended rcode 16 >> 4 (RFC 6891 §6.1.3)


BIG = "big.testns.svc.cluster.local"


@pytest.mark.parametrize(
    ("opt", "tcp", "limit", "tc"),
    [
        (None, False, 512, True),  # RFC 1035 §4.2.1
        (opt_rr(400), False, 512, True),  # below 512 counts as 512 (RFC 6891 §6.2.5)
        (opt_rr(1000), False, 1000, True),
        (opt_rr(65000), False, 1232, True),  # capped at our max_udp_size
        (None, True, 65535, False),  # TCP: whole
    ],
)
def test_size_limits(opt: bytes | None, tcp: bool, limit: int, tc: bool) -> None:
    handler, _ = make_handler()
    out = sync(handler.handle(make_query(BIG, opt=opt), tcp=tcp, family="1"))
    assert out is not None
    _, flags, _, an, _, _ = header(out)
    assert len(out) <= limit
    assert bool(flags & 0x0200) == tc
    if not tc:
        assert an == 100
    else:
        assert len(out) > limit - 16  # as many whole records as fit


async def test_out_of_zone_is_forwarded_as_is() -> None:
    answer_bytes = upstream_reply("example.com.", 1, qid=0x1234, rcode=0)
    upstream = FakeUpstream(lambda q: answer_bytes)
    handler, stats = make_handler(upstream=upstream)
    data = make_query("example.com")
    out = await resolve(handler.handle(data, tcp=False, family="2"))
    assert out == answer_bytes
    assert upstream.seen == [(data, Question("example.com.", 1), False)]
    assert stats.requests == {(".", "udp", "2", "A"): 1}


async def test_upstream_failure_is_servfail() -> None:
    handler, stats = make_handler(upstream=FakeUpstream(None))
    out = await resolve(handler.handle(make_query("example.com"), tcp=False, family="1"))
    assert out is not None
    _, flags, *_ = header(out)
    assert flags & 0xF == Rcode.SERVFAIL
    assert flags & 0x0080  # RA: an upstream is configured
    assert stats.responses == {(".", "SERVFAIL"): 1}


async def test_oversized_upstream_reply_becomes_tc() -> None:
    big = upstream_reply("example.com.", 1, qid=0x1234, rcode=0) + b"\x00" * 600
    handler, _ = make_handler(upstream=FakeUpstream(lambda q: big))
    out = await resolve(handler.handle(make_query("example.com"), tcp=False, family="1"))
    assert out is not None
    _, flags, qd, an, _, _ = header(out)
    assert flags & 0x0200
    assert (qd, an) == (1, 0)


UNKNOWN_PTR = "9.9.9.9.in-addr.arpa"


def test_unknown_reverse_without_upstream_is_nxdomain() -> None:
    handler, _ = make_handler()
    out = sync(handler.handle(make_query(UNKNOWN_PTR, 12), tcp=False, family="1"))
    assert out is not None
    assert header(out)[1] & 0xF == Rcode.NXDOMAIN


async def test_unknown_reverse_falls_through_to_upstream() -> None:
    ptr = upstream_reply(UNKNOWN_PTR + ".", 12, qid=0x1234, rcode=0)
    handler, _ = make_handler(upstream=FakeUpstream(lambda q: ptr))
    out = await resolve(handler.handle(make_query(UNKNOWN_PTR, 12), tcp=False, family="1"))
    assert out == ptr


async def test_unknown_reverse_upstream_failure_keeps_our_nxdomain() -> None:
    handler, _ = make_handler(upstream=FakeUpstream(None))
    out = await resolve(handler.handle(make_query(UNKNOWN_PTR, 12), tcp=False, family="1"))
    assert out is not None
    _, flags, _, _, ns, _ = header(out)
    assert flags & 0xF == Rcode.NXDOMAIN
    assert flags & 0x0400
    assert ns == 1  # the in-addr.arpa SOA (D2)


EXT = "ext.testns.svc.cluster.local"


async def test_externalname_target_is_chased_and_appended() -> None:
    a_rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22"
    upstream = FakeUpstream(
        lambda q: upstream_reply(
            "example.com.", 1, qid=struct.unpack("!H", q[:2])[0], rcode=0, answer=a_rr, an=1
        )
    )
    handler, _ = make_handler(upstream=upstream)
    out = await resolve(handler.handle(make_query(EXT), tcp=False, family="1"))
    assert out is not None
    _, flags, _, an, _, _ = header(out)
    assert an == 2  # CNAME, then the target's A (spec R27, D5 order)
    assert flags & 0xF == 0
    first = len(make_query(EXT))
    assert out[first + 2 : first + 4] == b"\x00\x05"  # CNAME first
    assert out.endswith(b"\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22")  # upstream TTL kept
    assert upstream.seen[0][1] == Question("example.com.", 1)


async def test_externalname_chase_failure_returns_cname_alone() -> None:
    handler, _ = make_handler(upstream=FakeUpstream(None))
    out = await resolve(handler.handle(make_query(EXT), tcp=False, family="1"))
    assert out is not None
    _, flags, _, an, _, _ = header(out)
    assert (flags & 0xF, an) == (0, 1)
    assert out.endswith(wire_name("example.com"))


class ExplodingIndex(Index):
    def service(self, namespace: str, name: str) -> None:
        raise RuntimeError("boom")


def test_unexpected_exception_is_servfail_and_counted() -> None:
    index = ExplodingIndex()
    for event in replace_events([]):
        index.apply(event)
    handler, stats = make_handler(index)
    out = sync(handler.handle(make_query(SVC1), tcp=False, family="1"))
    assert out is not None
    assert header(out)[1] & 0xF == Rcode.SERVFAIL
    assert out[12:] == make_query(SVC1)[12:]
    assert stats.panics == 1


class StubZones:
    generation = 0

    def find(self, lname: str) -> str | None:
        return "example.org." if lname.endswith("example.org.") else None

    def answer(self, question: Question) -> Reply:
        return Reply(rcode=Rcode.NXDOMAIN)


def test_static_zone_routing() -> None:
    handler, stats = make_handler(static_zones=StubZones())
    out = sync(handler.handle(make_query("x.example.org"), tcp=False, family="1"))
    assert out is not None
    assert header(out)[1] & 0xF == Rcode.NXDOMAIN
    assert stats.responses == {("example.org.", "NXDOMAIN"): 1}


def _longest_zone(lname: str, zones: set[str]) -> str | None:
    """The spec of routing, test-side: the longest zone that is `lname` or a suffix of it
    at a label boundary."""
    found = [z for z in zones if z == "." or lname == z or lname.endswith("." + z)]
    return max(found, key=len) if found else None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "x", "svc", "local"]), min_size=1, max_size=4),
        min_size=1,
        max_size=40,
    )
)
def test_route_is_the_longest_zone_suffix_across_reloads(names: list[list[str]]) -> None:
    # `route` remembers a name's parent's answer; a reload (set_blocks) must forget it.
    handler, _ = make_handler()
    lnames = [".".join(labels) + "." for labels in names]
    layouts = [{"b.a.", "a.", "local."}, {"x.b.a.", "svc.local."}, {".", "b."}]
    for zones in layouts:
        blocks = [Block(zones=(z,), chain=link([Plugin()]), plugins=[]) for z in sorted(zones)]
        handler.set_blocks(blocks)
        for _ in range(2):  # the second pass reads what the first remembered
            for lname in lnames:
                routed = handler.route(lname)
                want = _longest_zone(lname, zones)
                assert (routed[0] if routed is not None else None) == want, (lname, zones)


# ---- hostile input -------------------------------------------------------------------------


def load_corpus() -> list[tuple[str, str, bytes]]:
    cases = []
    for line in HOSTILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, expect, hexdata = line.split(maxsplit=2)
        cases.append((name, expect, b"" if hexdata == "-" else bytes.fromhex(hexdata)))
    return cases


CORPUS = load_corpus()


@pytest.mark.parametrize(("name", "expect", "data"), CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_corpus(name: str, expect: str, data: bytes) -> None:
    handler, stats = make_handler()
    for tcp in (False, True):
        out = sync(handler.handle(data, tcp=tcp, family="1"))
        if expect == "DROP":
            assert out is None, name
            continue
        assert out is not None, name
        assert header(out)[1] & 0x8000
        assert header(out)[1] & 0xF == Rcode[expect], name
        assert len(out) <= 512
    assert stats.panics == 0


def reply_limit(data: bytes) -> int:
    return 1232 if len(data) >= 12 and data[10:12] != b"\x00\x00" else 512


VALID = [
    make_query(SVC1),
    make_query(BIG, opt=opt_rr(4096)),
    make_query("_http._tcp." + SVC1, 33),
    make_query("10.0.0.1.in-addr.arpa", 12),
    make_query(UNKNOWN_PTR, 12, opt=opt_rr(do=True)),
]


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@settings(max_examples=400, deadline=None)
@given(packets(), st.booleans())
def test_any_bytes_never_raise_and_replies_fit(data: bytes, tcp: bool) -> None:
    handler, stats = make_handler()
    for _ in range(2):  # twice: the second may be a fast-path hit
        out = sync(handler.handle(data, tcp=tcp, family="1"))
        if len(data) < 12 or data[2] & 0x80:
            assert out is None  # QR=1 or no header: never answered
        if out is not None:
            assert out[2] & 0x80
            assert out[:2] == data[:2]
            assert len(out) <= (65535 if tcp else reply_limit(data))
    assert stats.panics == 0


async def test_trace_gives_the_bytes_handle_sends_and_who_answered() -> None:
    # `kdns explain` relies on it: the same reply as a client gets, plus the plugin.
    relayed = upstream_reply("example.com.", 1, qid=0x1234, rcode=0)
    handler, _ = make_handler(upstream=FakeUpstream(lambda q: relayed))
    data = make_query(SVC1)
    out, response = await handler.trace(data)
    assert out == sync(handler.handle(data, tcp=False, family="1"))
    assert response is not None
    assert response.plugin == "kubernetes"
    out, response = await handler.trace(make_query("example.com"))
    assert out == relayed
    assert response is not None
    assert response.plugin == "forward"


async def test_trace_of_a_query_no_chain_sees_has_no_response() -> None:
    handler, _ = make_handler()
    out, response = await handler.trace(make_query("example.com"))  # D6: REFUSED
    assert out is not None
    assert header(out)[1] & 0xF == Rcode.REFUSED
    assert response is None
