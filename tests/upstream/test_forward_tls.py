"""DNS over TLS upstreams (RFC 7858; CoreDNS `forward . tls://...` with `tls` and
`tls_servername`), against the scripted fake upstream serving TLS on 127.0.0.1 with a
certificate from a CA made for the test. The server's certificate must always verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSRecord

from kdns.config.model import TlsFiles, Upstream
from kdns.config.settings import HostPort
from kdns.dns import wire
from kdns.observe.stats import Stats
from kdns.upstream.forward import Forwarder, UpstreamError, tls_context
from tests.fakes.tls import SERVER_NAME, Pki, make_pki
from tests.fakes.upstream import Answer, FakeUpstream


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def dot(pki: Pki) -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(tls=pki.server_context())
    fake.add("www.example.com. 60 IN A 192.0.2.1")
    async with fake:
        yield fake


_OPEN: list[Forwarder] = []


@pytest.fixture(autouse=True)
async def _close_forwarders() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


def forwarder(
    addr: HostPort,
    *,
    files: TlsFiles | None,
    name: str | None = None,
    per_upstream_name: str | None = None,
    **kw: object,
) -> Forwarder:
    kw.setdefault("timeout_seconds", 1.0)
    fwd = Forwarder(
        [Upstream(addr, tls=True, server_name=per_upstream_name)],
        stats=Stats(),
        ssl_context=tls_context(files),
        server_name=name,
        **kw,  # type: ignore[arg-type]
    )
    _OPEN.append(fwd)
    return fwd


async def ask(fwd: Forwarder, name: str = "www.example.com.", qid: int = 77) -> DNSRecord | str:
    """The reply, or the error text when no upstream answered."""
    data = wire.build_query(name, QTYPE.A, qid=qid)
    got = await fwd.forward(data, wire.decode_query(data), tcp=False, done=lambda r, _up: r)
    return str(got) if isinstance(got, UpstreamError) else DNSRecord.parse(got)


def answers(reply: DNSRecord | str) -> list[str]:
    assert isinstance(reply, DNSRecord), reply
    return [str(rr.rdata) for rr in reply.rr]


async def test_queries_go_over_tls_verified_with_the_ca_and_server_name(
    dot: FakeUpstream, pki: Pki
) -> None:
    fwd = forwarder(dot.addr, files=TlsFiles(ca=pki.ca), name=SERVER_NAME)
    reply = await ask(fwd, qid=77)
    assert answers(reply) == ["192.0.2.1"]
    assert isinstance(reply, DNSRecord)
    assert reply.header.id == 77
    assert [(q.proto, q.qname) for q in dot.queries] == [("tls", "www.example.com.")]


async def test_the_name_can_be_given_per_upstream(dot: FakeUpstream, pki: Pki) -> None:
    # `tls://127.0.0.1%dns.test:PORT`
    fwd = forwarder(dot.addr, files=TlsFiles(ca=pki.ca), per_upstream_name=SERVER_NAME)
    assert answers(await ask(fwd)) == ["192.0.2.1"]


async def test_without_a_name_the_ip_address_is_verified(dot: FakeUpstream, pki: Pki) -> None:
    # The test certificate lists 127.0.0.1 as an IP address SAN.
    fwd = forwarder(dot.addr, files=TlsFiles(ca=pki.ca))
    assert answers(await ask(fwd)) == ["192.0.2.1"]


async def test_a_wrong_server_name_fails_and_nothing_is_sent(dot: FakeUpstream, pki: Pki) -> None:
    fwd = forwarder(dot.addr, files=TlsFiles(ca=pki.ca), name="other.test", max_fails=0)
    reply = await ask(fwd)
    assert isinstance(reply, str)
    assert "TLS: the certificate of other.test is not trusted" in reply
    assert "other.test" in reply.split("trusted: ", 1)[1]  # OpenSSL's "Hostname mismatch..."
    assert dot.queries == []


async def test_the_system_cas_do_not_trust_a_private_ca(dot: FakeUpstream) -> None:
    # `tls` without arguments: the system's CAs.
    fwd = forwarder(dot.addr, files=None, name=SERVER_NAME, max_fails=0)
    reply = await ask(fwd)
    assert isinstance(reply, str)
    assert "is not trusted" in reply
    assert dot.queries == []


async def test_a_client_certificate_is_presented_when_given(pki: Pki) -> None:
    # `tls CERT KEY CA` against a server that requires client certificates.
    fake = FakeUpstream(tls=pki.server_context(require_client_cert=True))
    fake.add("www.example.com. 60 IN A 192.0.2.1")
    async with fake:
        without = forwarder(fake.addr, files=TlsFiles(ca=pki.ca), name=SERVER_NAME, max_fails=0)
        assert isinstance(await ask(without), str)
        assert fake.queries == []
        files = TlsFiles(cert=pki.client_cert, key=pki.client_key, ca=pki.ca)
        with_cert = forwarder(fake.addr, files=files, name=SERVER_NAME)
        assert answers(await ask(with_cert)) == ["192.0.2.1"]


async def test_tls_queries_share_one_connection(dot: FakeUpstream, pki: Pki) -> None:
    def slow(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        return Answer(fake.resolve(request), delay=0.05)

    dot.handler = slow
    fwd = forwarder(dot.addr, files=TlsFiles(ca=pki.ca), name=SERVER_NAME)
    replies = await asyncio.gather(*(ask(fwd, qid=i) for i in range(5)))
    assert [r.header.id for r in replies if isinstance(r, DNSRecord)] == [0, 1, 2, 3, 4]
    assert dot.connections == 1


async def test_health_checks_of_a_tls_upstream_go_over_tls(dot: FakeUpstream, pki: Pki) -> None:
    dot.handler = lambda fake, request, proto: Answer(
        None if str(request.q.qname) == "www.example.com." else fake.resolve(request)
    )
    fwd = forwarder(
        dot.addr,
        files=TlsFiles(ca=pki.ca),
        name=SERVER_NAME,
        timeout_seconds=0.2,
        health_interval_seconds=0.05,
    )
    assert isinstance(await ask(fwd), str)  # silent: the failure starts a health check
    for _ in range(100):
        if dot.count("."):
            break
        await asyncio.sleep(0.02)
    assert {(q.qname, q.qtype, q.proto) for q in dot.queries if q.qname == "."} == {
        (".", "NS", "tls")
    }


def test_tls_files_that_do_not_load_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"forward: tls CA {bad} cannot be loaded"):
        tls_context(TlsFiles(ca=bad))
