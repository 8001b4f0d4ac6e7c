"""A plugin that answers later may hand back an asyncio.Future (the forwarder does):
`then()` and the server chain it with callbacks, so no task is made per query, with the
same results, errors and cancellation as awaiting it."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import pytest

from kdns.dns.records import Rcode, Reply
from kdns.dns.wire import build_query, decode_query
from kdns.observe.stats import Stats
from kdns.serve.chain import Plugin, Request, Response, Result, Staged, link, then
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


async def test_stages_of_a_staged_future_apply_in_order_when_it_is_set() -> None:
    staged = Staged(loop=asyncio.get_running_loop())
    seen: list[str] = []

    def stage(tag: str) -> Callable[[Response], Response]:
        def apply(r: Response) -> Response:
            seen.append(tag)
            return answered(Rcode(r.rcode + 1))

        return apply

    assert then(staged, stage("inner")) is staged  # a stage, not a new future
    assert then(staged, stage("outer")) is staged
    staged.set_result(answered(Rcode.NOERROR))
    assert seen == ["inner", "outer"]
    assert (await staged).rcode == Rcode.SERVFAIL  # 0 + 1 + 1


async def test_a_failing_stage_skips_the_rest_and_goes_to_the_fallback() -> None:
    loop = asyncio.get_running_loop()

    def explode(_: Response) -> Response:
        raise ValueError("plugin")

    later: list[str] = []
    plain = Staged(loop=loop)
    then(then(plain, explode), lambda r: later.append("ran") or r)  # type: ignore[func-returns-value]
    plain.set_result(answered(Rcode.NOERROR))
    with pytest.raises(ValueError, match="plugin"):
        await plain
    assert later == []

    rescued = Staged(loop=loop)
    then(rescued, explode)
    rescued.fallback = lambda exc: f"rescued from {exc}"
    rescued.set_result(answered(Rcode.NOERROR))
    assert await rescued == "rescued from plugin"

    failed = Staged(loop=loop)
    failed.fallback = lambda exc: f"rescued from {exc}"
    failed.set_exception(RuntimeError("upstream"))
    assert await failed == "rescued from upstream"


async def test_the_sink_gets_the_final_result_once_and_cannot_break_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    got: list[tuple[Staged, object]] = []

    staged = Staged(loop=loop)
    then(staged, lambda r: answered(Rcode(r.rcode + 1)))
    staged.fallback = lambda exc: "fallback"
    staged.sink = lambda future, result: got.append((future, result))
    staged.set_result(answered(Rcode.NOERROR))
    assert got == [(staged, staged.result())]  # after the stages, and done by then
    assert staged.result().rcode == Rcode.FORMERR

    failed = Staged(loop=loop)
    failed.fallback = lambda exc: f"rescued from {exc}"
    failed.sink = lambda future, result: got.append((future, result))
    failed.set_exception(RuntimeError("upstream"))
    assert got[-1] == (failed, "rescued from upstream")

    def broken(future: Staged, result: object) -> None:
        raise KeyError("sink bug")

    guarded = Staged(loop=loop)
    guarded.fallback = lambda exc: "fallback"
    guarded.sink = broken
    guarded.set_result(answered(Rcode.NOERROR))  # does not raise into the upstream's callback
    assert guarded.result().rcode == Rcode.NOERROR
    assert "delivering a reply to its client failed: KeyError('sink bug')" in caplog.text


async def test_then_after_the_fallback_or_the_result_chains_a_new_future() -> None:
    loop = asyncio.get_running_loop()
    closed = Staged(loop=loop)
    closed.fallback = lambda exc: None
    out = then(closed, lambda r: r)
    assert out is not closed
    done = Staged(loop=loop)
    done.set_result(answered(Rcode.NOERROR))
    out = then(done, lambda r: answered(Rcode.NXDOMAIN))
    assert out is not done
    assert isinstance(out, asyncio.Future)
    assert (await out).rcode == Rcode.NXDOMAIN


class Later(Plugin):
    """Answers with a Future (a `Staged` one if `staged`, as `forward` does) it resolves
    (or fails) on the next loop turn."""

    name = "later"

    def __init__(self, *, fail: bool = False, staged: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.staged = staged

    def serve(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = (
            Staged(loop=loop) if self.staged else loop.create_future()
        )
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


@pytest.mark.parametrize("staged", [False, True], ids=["future", "staged"])
async def test_the_server_finishes_a_future_from_a_callback(staged: bool) -> None:
    dns, stats = server(Later(staged=staged))
    result = dns.handle(build_query("www.example.com.", 1, qid=7), False, "1")
    assert isinstance(result, asyncio.Future)  # the transport adopts it: no task
    assert (type(result) is Staged) == staged  # (staged: the plugin's own future, no other)
    reply = await result
    assert reply is not None
    assert (reply[:2], reply[3] & 0xF) == (b"\x00\x07", Rcode.NXDOMAIN)
    assert stats.responses == {(".", "NXDOMAIN"): 1}


@pytest.mark.parametrize("staged", [False, True], ids=["future", "staged"])
async def test_a_failing_future_is_a_counted_servfail(staged: bool) -> None:
    dns, stats = server(Later(fail=True, staged=staged))
    result = dns.handle(build_query("www.example.com.", 1, qid=7), False, "1")
    assert isinstance(result, asyncio.Future)
    reply = await result
    assert reply is not None
    assert reply[3] & 0xF == Rcode.SERVFAIL
    assert stats.panics == 1


def test_a_request_gives_the_client_from_its_raw_address_as_recvfrom_would() -> None:
    # Batched UDP hands the server the sender's sockaddr as the kernel wrote it; plugins
    # that ask (log, acl-like rewrites, autopath) see (host, port) as from recvfrom.
    data = build_query("web.default.svc.cluster.local.", 1, qid=7)
    query = decode_query(data)
    v4 = (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", 5353)
        + socket.inet_pton(socket.AF_INET, "127.0.0.9")
        + bytes(8)
    )
    request = Request(data, query, False, "1", 512, ".", raw_client=v4)
    assert request.client == ("127.0.0.9", 5353)
    v6 = (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", 40000)
        + bytes(4)
        + socket.inet_pton(socket.AF_INET6, "::1")
        + bytes(4)
    )
    six = Request(data, query, False, "2", 512, ".", raw_client=v6).client
    assert six is not None
    assert tuple(six) == ("::1", 40000, 0, 0)  # (with flow info and scope, as recvfrom)
    assert Request(data, query, False, "1", 512, ".").client is None
    given = Request(data, query, False, "1", 512, ".", client=("10.0.0.1", 53))
    assert given.client == ("10.0.0.1", 53)
