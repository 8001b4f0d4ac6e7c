"""One DNS listener's query handling: the fast path first, then decode, route, chain, encode.

A `DnsServer` serves the server blocks that listen on one address and port. A query the
fast path cannot answer is decoded here (strictly: FORMERR or drop for bad bytes, BADVERS
for EDNS versions above 0, REFUSED for classes other than IN and for zone transfers), routed
to the block whose zone is the longest suffix of the name (REFUSED when no block serves it,
as CoreDNS does), passed through that block's plugin chain, and the response encoded once
for the client's size limit. A response the chain marks cacheable is kept pre-encoded for
the fast path (`kdns.serve.fastpath`), with its rotations when `loadbalance` rotates it.

Nothing here raises into a transport: an unexpected error is counted as a panic, logged on
one line and answered SERVFAIL.

Metric labels are CoreDNS's: zone = the server block's zone, "dropped" for packets never
answered; type = the qtype mnemonic or "other"; rcode mnemonic; plugin = who answered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kdns.dns.records import Rcode, Reply, RType
from kdns.dns.wire import (
    CLASS_IN,
    Query,
    QueryError,
    decode_query,
    encode_badvers,
    encode_error,
    encode_reply,
    encode_truncated,
    rcode_name,
)
from kdns.observe.stats import Stats
from kdns.serve.chain import Generation, Plugin, Request, Response
from kdns.serve.fastpath import ChangeSource, EntryMeta, FastPath, HandleResult, ReplyCache

log = logging.getLogger(__name__)

DROPPED_ZONE = "dropped"
TCP_MAX = 65535
MAX_ROTATIONS = 8  # pre-encoded orders kept for a rotating (loadbalance) reply
_QTYPE_LABELS = {int(t): t.name for t in RType}


def qtype_label(qtype: int) -> str:
    return _QTYPE_LABELS.get(qtype, "other")


class PendingChange(Protocol):
    @property
    def received_at(self) -> float: ...
    @property
    def service_kind(self) -> str: ...


class IndexSource(ChangeSource, Protocol):
    """The index as the server sees it: changes for the cache, pending programming times."""

    @property
    def synced(self) -> bool: ...

    def take_pending(self) -> Sequence[PendingChange]: ...


@dataclass(slots=True)
class Block:
    """A server block made runnable: its zones and the first plugin of its chain."""

    zones: tuple[str, ...]
    chain: Plugin
    plugins: list[Plugin] = field(default_factory=list)  # in execution order
    recursion: bool = False  # RA is set on built replies (the block forwards)
    rotations: Callable[[Reply, int], list[Reply]] | None = None  # loadbalance's


class DnsServer(FastPath):
    """The query handler of one listener (see `handle`)."""

    def __init__(
        self,
        blocks: Sequence[Block],
        *,
        index: IndexSource,
        stats: Stats,
        generation: Generation | None = None,
        server: str = "",
        max_udp_size: int = 1232,
        cache: ReplyCache | None = None,
    ) -> None:
        self.generation_source = generation if generation is not None else Generation()
        super().__init__(
            index, self.generation_source, cache=cache if cache is not None else ReplyCache()
        )
        self.index = index
        self.stats = stats
        self.server = server
        self.max_udp_size = max(512, max_udp_size)
        self._blocks: dict[str, Block] = {}
        self.set_blocks(blocks)
        stats.flushers.append(self.flush)

    def set_blocks(self, blocks: Sequence[Block]) -> None:
        """Serve these blocks from now on (a reload): requests under way finish on the
        chains they started on; everything the fast path kept is dropped."""
        by_zone: dict[str, Block] = {}
        for block in blocks:
            for zone in block.zones:
                by_zone[zone] = block
        self._blocks = by_zone
        self.cache.clear()

    @property
    def blocks(self) -> list[Block]:
        seen: dict[int, Block] = {}
        for block in self._blocks.values():
            seen.setdefault(id(block), block)
        return list(seen.values())

    def flush(self) -> None:
        """Fold the fast path's counts into `stats` (registered as a Stats flusher)."""
        self.fold(self.stats)

    def route(self, lname: str) -> tuple[str, Block] | None:
        """The block whose zone is the longest suffix of `lname` (lower-case, absolute)."""
        blocks = self._blocks
        name = lname
        while True:
            block = blocks.get(name)
            if block is not None:
                return name, block
            if name == ".":
                return None
            name = name.split(".", 1)[1] or "."

    # ---- the slow path -----------------------------------------------------------------

    def _slow(
        self, data: bytes, tcp: bool, family: str, client: tuple[str, int] | None
    ) -> HandleResult:
        try:
            return self._answer(data, tcp, family, client)
        except Exception as exc:
            return self._panic(data, exc)

    def _panic(self, data: bytes, exc: BaseException) -> bytes | None:
        self.stats.panics += 1
        log.error("panic answering a %d-byte query: %s: %s", len(data), type(exc).__name__, exc)
        return encode_error(data, Rcode.SERVFAIL)

    def _check_generation(self) -> None:
        if not self.generation_moved():
            return
        self.reset_generation()
        now = time.monotonic()
        for change in self.index.take_pending():
            self.stats.observe_programming(change.service_kind, now - change.received_at)

    def _answer(
        self, data: bytes, tcp: bool, family: str, client: tuple[str, int] | None
    ) -> HandleResult:
        started = time.perf_counter()
        self._check_generation()
        stats = self.stats
        proto = "tcp" if tcp else "udp"
        try:
            query = decode_query(data)
        except QueryError as exc:
            return self._undecodable(data, exc, proto, family, started)

        edns = query.edns
        if tcp:
            max_size = TCP_MAX
        elif edns is not None:
            max_size = min(max(512, edns.payload), self.max_udp_size)  # RFC 6891 §6.2.5
        else:
            max_size = 512  # RFC 1035 §4.2.1
        question = query.question
        routed = self.route(question.lname)
        zone = routed[0] if routed is not None else "."
        stats.count_request(zone, proto, family, qtype_label(question.qtype), len(data))
        if edns is not None and edns.do:
            stats.count_do_request(zone)
        if routed is None:
            # No server block serves the name (CoreDNS answers REFUSED; docs/rules.md D6).
            return self._send(query, _refused(), zone, proto, max_size, started, False)
        block = routed[1]
        if edns is not None and edns.version > 0:
            out = encode_badvers(query, ra=block.recursion)  # RFC 6891 §6.1.3
            return self._done(out, zone, proto, "BADVERS", started)
        if query.qclass != CLASS_IN or question.qtype in (RType.AXFR, RType.IXFR):
            # Only class IN data here; zone transfers are not offered (docs/rules.md D8).
            return self._send(query, _refused(), zone, proto, max_size, started, block.recursion)
        request = Request(
            data=data,
            query=query,
            tcp=tcp,
            family=family,
            max_size=max_size,
            zone=zone,
            server=self.server,
            client=client,
        )
        result = block.chain.serve(request)
        if isinstance(result, Response):
            return self._finish(request, block, result, started)
        if isinstance(result, asyncio.Future):
            # A forwarded query: finish from a callback, no coroutine and no task.
            later: asyncio.Future[bytes | None] = result.get_loop().create_future()
            result.add_done_callback(
                functools.partial(self._finish_future, request, block, started, later)
            )
            later.add_done_callback(functools.partial(_cancel_with, result))
            return later
        return self._finish_later(request, block, result, started)

    def _finish_future(
        self,
        request: Request,
        block: Block,
        started: float,
        out: asyncio.Future[bytes | None],
        done: asyncio.Future[Response],
    ) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
            return
        try:
            out.set_result(self._finish(request, block, done.result(), started))
        except Exception as exc:
            out.set_result(self._panic(request.data, exc))

    async def _finish_later(
        self, request: Request, block: Block, pending: Awaitable[Response], started: float
    ) -> bytes | None:
        try:
            response = await pending
            return self._finish(request, block, response, started)
        except Exception as exc:
            return self._panic(request.data, exc)

    def _finish(self, request: Request, block: Block, response: Response, started: float) -> bytes:
        query = request.query
        if response.wire is not None:
            out = response.wire
            if len(out) > request.max_size:
                out = encode_truncated(query, out)
        else:
            assert response.reply is not None
            out = encode_reply(query, response.reply, max_size=request.max_size, ra=block.recursion)
        if request.after is not None:
            for hook in request.after:
                hook(out)
        if response.cacheable and not request.tcp and response.reply is not None:
            self._maybe_cache(request, block, response, out)
        proto = "tcp" if request.tcp else "udp"
        return self._done(out, request.zone, proto, rcode_name(out[3] & 0x0F), started)

    def _send(
        self,
        query: Query,
        reply: Reply,
        zone: str,
        proto: str,
        max_size: int,
        started: float,
        recursion: bool,
    ) -> bytes:
        out = encode_reply(query, reply, max_size=max_size, ra=recursion)
        return self._done(out, zone, proto, reply.rcode.name, started)

    def _undecodable(
        self, data: bytes, exc: QueryError, proto: str, family: str, started: float
    ) -> bytes | None:
        stats = self.stats
        if exc.rcode is None:
            stats.dropped += 1
            stats.count_request(DROPPED_ZONE, proto, family, "other", len(data))
            return None
        out = encode_error(data, exc.rcode)
        zone = DROPPED_ZONE if out is None else "."
        stats.count_request(zone, proto, family, "other", len(data))
        if out is None:
            stats.dropped += 1
            return None
        stats.count_response(zone, proto, exc.rcode.name, len(out), time.perf_counter() - started)
        return out

    def _done(self, out: bytes, zone: str, proto: str, rcode: str, started: float) -> bytes:
        self.stats.count_response(zone, proto, rcode, len(out), time.perf_counter() - started)
        return out

    def _maybe_cache(self, request: Request, block: Block, response: Response, out: bytes) -> None:
        """Keep the reply for the hot path if the query has one of its two shapes."""
        query = request.query
        data = request.data
        if query.qclass != CLASS_IN or request.question is not query.question:
            return  # the key has no class; a rewritten question is not the client's
        if data[2] > 1 or data[3] & 0xDF or query.ancount or query.nscount:
            return  # opcode/AA/TC/QR/Z/CD set: the hot path sends these here anyway
        if out[2] & 0x02:
            return  # truncated: depends on the client's limit
        edns = query.edns
        if edns is None:
            if query.arcount:
                return
            need = 0
        else:
            if query.arcount != 1 or edns.do or edns.has_options or edns.version:
                return
            if len(data) != 12 + len(query.question_wire) + 11:
                return
            need = len(out) if len(out) > 512 else 0
        qname = query.qname_wire
        if b"\x00" in qname[:-1]:
            return  # the hot path finds the name's end by its first zero octet
        reply = response.reply
        assert reply is not None
        rotations: tuple[bytes, ...] = ()
        if response.rotate and block.rotations is not None:
            variants = block.rotations(reply, MAX_ROTATIONS)[1:]
            encoded = [
                encode_reply(query, v, max_size=request.max_size, ra=block.recursion)
                for v in variants
            ]
            if any(len(e) != len(out) or e[2:12] != out[2:12] for e in encoded):
                return  # an order that encodes differently (compression): do not keep
            rotations = tuple(encoded)
        meta = EntryMeta(
            zone=request.zone,
            qtype=qtype_label(query.question.qtype),
            rcode=reply.rcode.name,
            request_size=len(data),
            response_size=len(out),
            negative=reply.rcode != Rcode.NOERROR or not reply.answer,
        )
        self.cache.store(
            edns=edns is not None,
            key=qname.lower() + query.question_wire[-4:-2],
            reply=out,
            question_len=len(query.question_wire),
            need=need,
            meta=meta,
            dep=response.dep,
            rotations=rotations,
        )


def _cancel_with(source: asyncio.Future[Response], out: asyncio.Future[bytes | None]) -> None:
    if out.cancelled():
        source.cancel()


def _refused() -> Reply:
    return Reply(rcode=Rcode.REFUSED, authoritative=False)


__all__ = ["Block", "DnsServer", "IndexSource", "qtype_label"]
