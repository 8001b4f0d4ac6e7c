"""A plugin that answers later may hand back an asyncio.Future (the forwarder does):
`then()` and the server chain it with callbacks, so no task is made per query, with the
same results, errors and cancellation as awaiting it."""

from __future__ import annotations

import asyncio

import pytest

from kdns.dns.records import Rcode, Reply
from kdns.dns.wire import build_query
from kdns.observe.stats import Stats
from kdns.serve.chain import Plugin, Request, Response, Result, link, then
from kdns.serve.server import Block, DnsServer
from tests.serve.test_server import default_index


def answered(rcode: Rcode) -> Response:
    return Response(Reply(rcode=rcode, authoritative=False), plugin="later")


async def test_then_on_a_future_applies_the_function_when_it_resolves() -> None:
    source: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    out = then(source, lambda r: answered(Rcode(r.rcode + 1)))
    assert isinstance(out, asyncio.Future)
    assert not out.done()
    source.set_result(answered(Rcode.NOERROR))
    assert (await out).rcode == Rcode.FORMERR


async def test_then_passes_on_errors_of_the_source_and_of_the_function() -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[Response] = loop.create_future()
    failing.set_exception(RuntimeError("upstream"))
    out = then(failing, lambda r: r)
    assert isinstance(out, asyncio.Future)
    with pytest.raises(RuntimeError, match="upstream"):
        await out

    def explode(_: Response) -> Response:
        raise ValueError("plugin")

    fine: asyncio.Future[Response] = loop.create_future()
    fine.set_result(answered(Rcode.NOERROR))
    out = then(fine, explode)
    assert isinstance(out, asyncio.Future)
    with pytest.raises(ValueError, match="plugin"):
        await out


async def test_cancelling_the_chained_future_cancels_the_source() -> None:
    source: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    out = then(source, lambda r: r)
    assert isinstance(out, asyncio.Future)
    out.cancel()
    await asyncio.sleep(0)
    assert source.cancelled()


class Later(Plugin):
    """Answers with a Future it resolves (or fails) on the next loop turn."""

    name = "later"

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    def serve(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        if self.fail:
            loop.call_soon(future.set_exception, RuntimeError("boom"))
        else:
            loop.call_soon(future.set_result, answered(Rcode.NXDOMAIN))
        return future


class Wrap(Plugin):
    """A plugin that works on the response on its way back (like cache or errors)."""

    name = "wrap"

    def serve(self, request: Request) -> Result:
        return then(self.next.serve(request), lambda r: r)


def server(last: Plugin) -> tuple[DnsServer, Stats]:
    plugins: list[Plugin] = [Wrap(), last]
    block = Block(zones=(".",), chain=link(plugins), plugins=plugins, recursion=True)
    stats = Stats()
    return DnsServer([block], index=default_index(), stats=stats), stats


async def test_the_server_finishes_a_future_from_a_callback() -> None:
    dns, stats = server(Later())
    result = dns.handle(build_query("www.example.com.", 1, qid=7), False, "1")
    assert isinstance(result, asyncio.Future)  # the transport adopts it: no task
    reply = await result
    assert reply is not None
    assert (reply[:2], reply[3] & 0xF) == (b"\x00\x07", Rcode.NXDOMAIN)
    assert stats.responses == {(".", "NXDOMAIN"): 1}


async def test_a_failing_future_is_a_counted_servfail() -> None:
    dns, stats = server(Later(fail=True))
    result = dns.handle(build_query("www.example.com.", 1, qid=7), False, "1")
    assert isinstance(result, asyncio.Future)
    reply = await result
    assert reply is not None
    assert reply[3] & 0xF == Rcode.SERVFAIL
    assert stats.panics == 1
