"""The new plugins in a whole server, built from a Corefile as `kdns serve` builds it:
bufsize truncation and advertisement, rewritten answers kept by the fast path under the
client's question (and dropped when the Service behind them changes), ANY -> HINFO."""

from __future__ import annotations

import dnslib

from kdns.build import standalone
from kdns.cluster.index import Index
from kdns.cluster.model import Upsert
from kdns.observe.stats import Stats
from kdns.serve.server import DnsServer
from tests.builders import replace_events, svc
from tests.config.corefiles import load
from tests.dns.test_wire import make_query, opt_rr

BIG = [f"192.0.2.{i} big.example.org" for i in range(1, 51)]  # 50 A records: ~830 octets
COREFILE = "\n".join(
    [
        ".:53 {",
        "    bufsize 600",
        "    any",
        "    rewrite name exact alias.example.org svc1.testns.svc.cluster.local",
        "    hosts /nonexistent/hosts example.org {",
        *(f"        {line}" for line in BIG),
        "        fallthrough",
        "    }",
        "    kubernetes cluster.local",
        "}",
    ]
)


def index() -> Index:
    built = Index()
    for event in replace_events([svc("svc1", ips=["10.0.0.1"], ports=["http/tcp/80"])]):
        built.apply(event)
    return built


def server(data: Index | None = None) -> DnsServer:
    data = data or index()
    return standalone(load(COREFILE), index=data, view=data, stats=Stats())


def ask(handler: DnsServer, query: bytes, *, tcp: bool = False) -> bytes:
    out = handler.handle(query, tcp=tcp, family="1")
    assert isinstance(out, bytes)
    return out


def parsed(out: bytes) -> dnslib.DNSRecord:
    return dnslib.DNSRecord.parse(out)


def test_bufsize_truncates_udp_at_size_and_advertises_it() -> None:
    handler = server()
    out = ask(handler, make_query("big.example.org", opt=opt_rr(4096)))
    reply = parsed(out)
    assert len(out) <= 600
    assert reply.header.tc == 1
    assert 0 < len(reply.rr) < 50
    (opt,) = reply.ar
    assert opt.rclass == 600  # the OPT's CLASS: our payload size (RFC 6891 §6.1.2)
    full = parsed(ask(handler, make_query("big.example.org", opt=opt_rr(4096)), tcp=True))
    assert (full.header.tc, len(full.rr)) == (0, 50)


def test_bufsize_leaves_small_replies_and_plain_queries_alone() -> None:
    handler = server()
    reply = parsed(ask(handler, make_query("svc1.testns.svc.cluster.local", opt=opt_rr(4096))))
    assert (reply.header.tc, [str(r.rdata) for r in reply.rr]) == (0, ["10.0.0.1"])
    plain = parsed(ask(handler, make_query("big.example.org")))  # no OPT: 512
    assert plain.header.tc == 1


def test_a_rewritten_answer_is_kept_under_the_clients_question() -> None:
    handler = server()
    first = ask(handler, make_query("alias.example.org", qid=1))
    assert [" ".join(str(r).split()) for r in parsed(first).rr] == [
        "alias.example.org. 5 IN A 10.0.0.1"
    ]
    assert len(handler.cache) == 1
    mixed = make_query("ALIAS.example.ORG", qid=2)
    again = ask(handler, mixed)
    assert again == ask(server(), mixed)  # the hit is what the slow path would send
    assert again[12 : len(mixed)] == mixed[12:]  # the client's spelling (D4)


def test_a_kept_rewritten_answer_goes_when_its_service_changes() -> None:
    data = index()
    handler = server(data)
    ask(handler, make_query("alias.example.org"))
    data.apply(Upsert(svc("svc1", ips=["10.0.0.2"], ports=["http/tcp/80"])))
    out = ask(handler, make_query("alias.example.org"))
    assert [str(r.rdata) for r in parsed(out).rr] == ["10.0.0.2"]


def test_any_gets_the_rfc8482_hinfo() -> None:
    reply = parsed(ask(server(), make_query("svc1.testns.svc.cluster.local", 255)))
    assert [(r.rtype, r.ttl) for r in reply.rr] == [(13, 8482)]
    assert reply.header.aa == 0
