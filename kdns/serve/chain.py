"""The plugin chain: one `Request` passes through plugins in a fixed order until one answers.

Each plugin does one of three things with a request (as in CoreDNS):
- answers it, returning a `Response`;
- passes it on with `self.next.serve(request)`;
- wraps the rest of the chain: passes it on and works on the response that comes back
  (cache, loadbalance, log, errors), using `then()` because the rest may be asynchronous.

A plugin returns a `Response` when it can answer from local data, and an awaitable only
when it has to wait (an upstream). Nothing here encodes bytes: a `Response` carries either
a structured `Reply` (encoded once, by the server, for the client's size limit) or a wire
reply relayed as it came (from an upstream).

The pre-encoded fast path (`kdns.serve.fastpath`) sits in front of the chain. A response
says whether the fast path may keep it (`cacheable`), what it depends on (`dep`), until
when (`expires`, for a forward cache reply) and for which other names it holds
(`siblings`); any plugin on the way back that makes the reply depend on something else
(the client, a log line per query) clears `cacheable`.
"""

from __future__ import annotations

import _asyncio  # noqa: F401  (mypyc: `Staged`'s base, asyncio.Future, is defined here)
import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from mypy_extensions import mypyc_attr

from kdns.dns.records import Question, Rcode, Reply
from kdns.dns.wire import EDNS_PAYLOAD, Query
from kdns.net.mmsg import SockAddr, decode_address

log = logging.getLogger(__name__)

# What a cached reply depends on: the (namespace, service) whose data it shows, or None
# for everything else (structure, other plugins' data). See `kdns.serve.fastpath`.
Dep = tuple[str, str] | None


class Request:
    """One query on its way through a chain. Plugins may read everything; only plugins
    that rewrite the question (`rewrite`) replace `question`."""

    __slots__ = (
        "_client",
        "_raw_client",
        "after",
        "data",
        "family",
        "max_size",
        "payload",
        "query",
        "question",
        "server",
        "tcp",
        "zone",
    )

    def __init__(
        self,
        data: bytes,
        query: Query,
        tcp: bool,
        family: str,
        max_size: int,
        zone: str,
        server: str = "",
        client: SockAddr | None = None,
        raw_client: bytes | None = None,
    ) -> None:
        # (Positional arguments are allowed for the server, which makes one per query off
        # the fast path: keywords cost a third of a microsecond more. Plugins use keywords.)
        self.data = data  # the query as received
        self.query = query
        self.question: Question = query.question
        self.tcp = tcp
        self.family = family  # "1" IPv4, "2" IPv6 (CoreDNS's label values)
        self.max_size = max_size  # the largest reply the client accepts
        # The UDP payload size our reply's OPT advertises (RFC 6891 §6.2.3); `bufsize`
        # lowers it, with `max_size`.
        self.payload = EDNS_PAYLOAD
        self.zone = zone  # the server block zone the query matched ("." for the root)
        self.server = server  # the metrics label of the listener, e.g. "dns://:53"
        # (address, port), when the transport knows it: given as such, or as the raw
        # sockaddr a batched receive holds (`raw_client`), decoded only if a plugin asks.
        self._client = client
        self._raw_client = raw_client
        # Called by the server with the exact bytes it sends (after encoding, truncation
        # and the client's ID), in order, once; None until a plugin needs the encoded
        # reply (`log`, for {rsize} and {>rflags}). Not called when no reply is sent.
        self.after: list[Callable[[bytes], None]] | None = None

    @property
    def client(self) -> SockAddr | None:
        if self._client is None and self._raw_client is not None:
            self._client = decode_address(self._raw_client)
        return self._client

    @property
    def lname(self) -> str:
        return self.question.lname

    @property
    def qtype(self) -> int:
        return self.question.qtype

    @property
    def do(self) -> bool:
        return self.query.edns is not None and self.query.edns.do


@dataclass(init=False)
class Response:
    """A plugin's answer. Exactly one of `reply` and `wire` is set. (Its `__init__` is
    written out: compiled, the one `dataclass` generates stays interpreted Python, several
    times as slow, and every query off the fast path makes a Response.)"""

    reply: Reply | None = None
    wire: bytes | None = None  # a complete DNS message, its ID already the client's
    plugin: str = ""  # the plugin that answered (the `plugin` label of the metrics)
    cacheable: bool = False  # the fast path may keep the encoded reply
    dep: Dep = None
    rotate: bool = False  # A/AAAA/MX order rotates per query (loadbalance)
    # A `wire` reply that stops being valid at this time.monotonic() (a forward cache
    # entry's end). With `cacheable`, the fast path keeps it until then, counting its TTLs
    # down; data changes in the cluster do not drop it.
    expires: float | None = None
    # Where the record TTLs sit (as `wire.ttl_offsets` finds them) in the bytes given with
    # them, when the plugin that made the reply knows (the cache plugin scanned it): the
    # fast path's aging entry then needs no second scan. They count only while `wire` is
    # still those very bytes (a later plugin that replaces `wire` leaves them behind).
    ttl_offsets: tuple[bytes, tuple[int, ...]] | None = None
    # For a cacheable negative `reply`: the same records (none of them naming a sibling)
    # answer every sibling of the question (the same parent, type and class, another
    # first label) for which this returns True, given that label as lower-case wire bytes.
    # The fast path then answers such siblings from one template (unique random names
    # under one parent cost no slow path and no cache entry each). None: no such promise.
    siblings: Callable[[bytes], bool] | None = None
    # Why the reply is SERVFAIL, when something failed (e.g. "no upstream answered:
    # 127.0.0.1:53 timed out"); the `errors` plugin logs it. None for a plain answer.
    error: str | None = None
    # The upstream that sent a relayed reply ("10.0.0.2:53"), set by `forward`; None for
    # everything else, a cache hit included. Read by `kdns explain`.
    upstream: str | None = None

    def __init__(
        self,
        reply: Reply | None = None,
        wire: bytes | None = None,
        plugin: str = "",
        cacheable: bool = False,
        dep: Dep = None,
        rotate: bool = False,
        expires: float | None = None,
        ttl_offsets: tuple[bytes, tuple[int, ...]] | None = None,
        siblings: Callable[[bytes], bool] | None = None,
        error: str | None = None,
        upstream: str | None = None,
    ) -> None:
        self.reply = reply
        self.wire = wire
        self.plugin = plugin
        self.cacheable = cacheable
        self.dep = dep
        self.rotate = rotate
        self.expires = expires
        self.ttl_offsets = ttl_offsets
        self.siblings = siblings
        self.error = error
        self.upstream = upstream

    @property
    def rcode(self) -> int:
        if self.reply is not None:
            return int(self.reply.rcode)
        assert self.wire is not None
        return self.wire[3] & 0x0F

    @property
    def answered(self) -> bool:
        """NOERROR with at least one answer record."""
        if self.reply is not None:
            return self.reply.rcode == Rcode.NOERROR and bool(self.reply.answer)
        assert self.wire is not None
        return self.wire[3] & 0x0F == 0 and self.wire[6:8] != b"\x00\x00"


Result = Response | Awaitable[Response]


# The base class's methods, called directly on the hot path (`super()` costs a lookup).
_future_init: Final = asyncio.Future.__init__
_future_set_result: Final = asyncio.Future.set_result


@mypyc_attr(native_class=False)  # (a compiled class cannot derive from Future)
class Staged(asyncio.Future[Any]):
    """A Future whose result passes through `stages` (functions, in the order added) when
    it is set: the plugins that wrap a forwarded query (`then`) and the server's encoding
    add theirs, and the reply is complete when the upstream's answer arrives, with no
    Future and no loop turn per plugin. A stage that raises ends it with that exception,
    or with what `fallback` makes of it (the server's SERVFAIL); no stage runs after it.
    An exception set on it directly goes to `fallback` too.
    Set `fallback` last: `then` adds no stage after it.

    `sink`, when set, is called with the future and its final result as soon as it has
    one (after the done callbacks are scheduled): the UDP transport queues the reply for
    its sender that way, with no done callback and no loop turn per query. A sink must not
    raise; one that does is logged and the reply is lost, nothing else."""

    __slots__ = ("fallback", "sink", "stages")

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        _future_init(self, loop=loop)
        self.stages: list[Callable[[Any], Any]] = []
        self.fallback: Callable[[Exception], Any] | None = None
        self.sink: Callable[[Staged, Any], None] | None = None

    def set_result(self, result: Any) -> None:
        if self.done():
            super().set_result(result)  # (raises InvalidStateError, as any Future)
        try:
            for stage in self.stages:
                result = stage(result)
        except Exception as exc:
            if self.fallback is None:
                super().set_exception(exc)
                return
            result = self.fallback(exc)
        _future_set_result(self, result)  # (not super(): once per forwarded query)
        if self.sink is not None:
            self._sink(result)

    def set_exception(self, exception: type | BaseException) -> None:
        if self.fallback is not None and isinstance(exception, Exception) and not self.done():
            result = self.fallback(exception)
            super().set_result(result)
            if self.sink is not None:
                self._sink(result)
            return
        super().set_exception(exception)

    def _sink(self, result: Any) -> None:
        sink = self.sink
        assert sink is not None
        try:
            sink(self, result)
        except Exception as exc:  # (a bug in the sink: this query's reply is lost)
            log.error("delivering a reply to its client failed: %r", exc)

    @property
    def open(self) -> bool:
        """Stages may still be added."""
        return self.fallback is None and not self.done()


def then(result: Result, fn: Callable[[Response], Response]) -> Result:
    """Apply `fn` to a response now, or when it arrives. A pending `Staged` future takes
    `fn` as its next stage; any other pending asyncio.Future is chained with a callback into
    a new Future. Either way a chain of plugins around a forwarded query costs no coroutine
    and no task (a task per query is the dearest part of it)."""
    if isinstance(result, Response):
        return fn(result)
    if type(result) is Staged and result.fallback is None and not result.done():  # (open)
        result.stages.append(fn)
        return result
    if isinstance(result, asyncio.Future):
        out: asyncio.Future[Response] = result.get_loop().create_future()
        result.add_done_callback(functools.partial(_settle, out, fn))
        out.add_done_callback(functools.partial(_cancel_with, result))
        return out
    return _then(result, fn)


def _settle(
    out: asyncio.Future[Response], fn: Callable[[Response], Response], done: asyncio.Future[Any]
) -> None:
    if out.done():
        return
    if done.cancelled():
        out.cancel()
        return
    exc = done.exception()
    if exc is not None:
        out.set_exception(exc)
        return
    try:
        out.set_result(fn(done.result()))
    except Exception as failure:
        out.set_exception(failure)


def _cancel_with(source: asyncio.Future[Any], out: asyncio.Future[Response]) -> None:
    if out.cancelled():
        source.cancel()


async def _then(pending: Awaitable[Response], fn: Callable[[Response], Response]) -> Response:
    return fn(await pending)


@mypyc_attr(allow_interpreted_subclasses=True)  # most plugins are not compiled
class Plugin:
    """Base of every plugin in a chain. `next` is set when the chain is built."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.next: Plugin = END

    def serve(self, request: Request) -> Result:
        return self.next.serve(request)

    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Work to run beside serving (reloads, flushes), started by the app under its task
        group while the chain is in service and cancelled when it is retired."""
        return []

    def close(self) -> Awaitable[None] | None:
        """Release what the plugin holds (sockets, tasks) when its chain is retired."""
        return None


class Generation:
    """A counter that plugins with data of their own (zone files) bump when it changes; the
    fast path compares it on every hit, so it is a plain attribute."""

    __slots__ = ("generation",)

    def __init__(self) -> None:
        self.generation = 0


class _End(Plugin):
    """Past the last plugin: nothing answered. CoreDNS answers SERVFAIL ("no next plugin
    found"), and so does kdns."""

    name = ""

    def __init__(self) -> None:
        pass

    def serve(self, request: Request) -> Result:
        return Response(Reply(rcode=Rcode.SERVFAIL, authoritative=False), plugin="")


END: Plugin = _End()


def link(plugins: list[Plugin]) -> Plugin:
    """Chain `plugins` in the order given; returns the first (END when there are none)."""
    for current, following in itertools.pairwise(plugins):
        current.next = following
    if plugins:
        plugins[-1].next = END
        return plugins[0]
    return END


__all__ = [
    "END",
    "Dep",
    "Generation",
    "Plugin",
    "Request",
    "Response",
    "Result",
    "Staged",
    "link",
    "then",
]
