"""`loop`: a probe sent to kdns itself that comes back through an upstream more than twice
is a forwarding loop (CoreDNS's loop plugin); one that is answered is not.

kdns here is a real DnsServer on a UDP socket on 127.0.0.1 with the chain `loop` ->
`forward`; the upstream is the scripted fake, which either answers or relays every query
back to kdns (a loop through another forwarder, as a node resolver pointing at the cluster
DNS would make).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from dnslib import DNSRecord

from kdns.cluster.index import Index
from kdns.config.model import ForwardConfig, Upstream
from kdns.config.settings import HostPort
from kdns.observe.stats import Stats
from kdns.plugins.forward import ForwardPlugin
from kdns.plugins.loop import LoopPlugin, probe_name
from kdns.serve.chain import link
from kdns.serve.server import Block, DnsServer
from kdns.serve.transport import UdpServer, bind_udp
from tests.fakes.upstream import Answer, FakeUpstream


@dataclass
class Kdns:
    addr: HostPort
    loop: LoopPlugin
    found: list[str]


async def relay(addr: HostPort, data: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((addr.host, addr.port))
        sock.send(data)
        try:
            async with asyncio.timeout(3.0):
                return await loop.sock_recv(sock, 65535)
        except TimeoutError:
            return None


@pytest.fixture
async def upstream_and_kdns() -> AsyncIterator[tuple[FakeUpstream, Kdns]]:
    kdns: Kdns | None = None

    async def back_to_kdns(fake: FakeUpstream, request: DNSRecord, proto: str) -> Answer:
        assert kdns is not None
        return Answer(await relay(kdns.addr, bytes(request.pack())))

    async with FakeUpstream(handler=back_to_kdns) as up:
        stats = Stats()
        found: list[str] = []
        loop_plugin = LoopPlugin(".", on_loop=found.append)
        forward = ForwardPlugin(ForwardConfig(to=(Upstream(up.addr),)), stats=stats)
        forward.forwarder.timeout_seconds = 2.5
        plugins = [loop_plugin, forward]
        block = Block(zones=(".",), chain=link(plugins), plugins=plugins, recursion=True)
        index = Index(required=())
        server = DnsServer([block], index=index, stats=stats)
        udp = UdpServer(bind_udp("127.0.0.1", 0), server)
        udp.start()
        kdns = Kdns(HostPort("127.0.0.1", udp.port), loop_plugin, found)
        try:
            yield up, kdns
        finally:
            udp.close()
            await forward.close()


async def test_a_loop_through_another_forwarder_is_found(
    upstream_and_kdns: tuple[FakeUpstream, Kdns],
) -> None:
    up, kdns = upstream_and_kdns
    await kdns.loop.probe(kdns.addr, deadline=10.0)
    assert len(kdns.found) == 1
    assert "loop" in kdns.found[0]
    assert kdns.loop.qname in kdns.found[0]
    assert kdns.loop.seen == 3  # seen more than twice: the third arrival
    assert up.count(kdns.loop.qname) == 2  # and not sent round once more
    assert {q.qtype for q in up.queries} == {"HINFO"}


async def test_an_upstream_that_answers_is_not_a_loop() -> None:
    async with FakeUpstream() as up:
        stats = Stats()
        found: list[str] = []
        loop_plugin = LoopPlugin(".", on_loop=found.append)
        forward = ForwardPlugin(ForwardConfig(to=(Upstream(up.addr),)), stats=stats)
        plugins = [loop_plugin, forward]
        block = Block(zones=(".",), chain=link(plugins), plugins=plugins, recursion=True)
        server = DnsServer([block], index=Index(required=()), stats=stats)
        udp = UdpServer(bind_udp("127.0.0.1", 0), server)
        udp.start()
        try:
            await loop_plugin.probe(HostPort("127.0.0.1", udp.port), deadline=5.0)
        finally:
            udp.close()
            await forward.close()
        assert found == []
        assert loop_plugin.seen == 1
        assert loop_plugin.disabled  # a probe name can never become a query of death
        assert up.count(loop_plugin.qname) == 1


def test_the_probe_name_is_random_under_the_zone() -> None:
    a, b = probe_name("."), probe_name("cluster.local.")
    assert a.count(".") == 2
    assert a.endswith(".")
    assert b.endswith(".cluster.local.")
    assert len(b.split(".")) == 5
    assert probe_name(".") != a
    assert all(label.isdigit() for label in a.split(".")[:2])
