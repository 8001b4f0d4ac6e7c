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
from typing import Final, Protocol

from kdns.dns.message import LayoutError, parse_layout
from kdns.dns.records import Rcode, Reply, RType
from kdns.dns.wire import (
    CLASS_IN,
    EDNS_PAYLOAD,
    FormatError,
    Query,
    QueryError,
    decode_query,
    encode_badvers,
    encode_error,
    encode_reply,
    encode_truncated,
    rcode_name,
    ttl_offsets,
)
from kdns.dns.wire.common import RCODE_NOERROR, TYPE_AXFR, TYPE_IXFR
from kdns.net.mmsg import Peer, SockAddr
from kdns.observe.stats import Stats
from kdns.serve.chain import Generation, Plugin, Request, Response, Staged
from kdns.serve.fastpath import (
    UDP_NEVER,
    ChangeSource,
    EntryMeta,
    FastPath,
    HandleResult,
    ReplyCache,
)
from kdns.serve.transport import Client

log = logging.getLogger(__name__)

DROPPED_ZONE: Final = "dropped"
TCP_MAX: Final = 65535
MAX_ROTATIONS: Final = 8  # pre-encoded orders kept for a rotating (loadbalance) reply
_QTYPE_LABELS = {int(t): t.name for t in RType}
# kdns's OPT, as `encode_reply` ends a reply to a query with EDNS: root owner, TYPE 41,
# our payload, ext-rcode, version 0, DO (copied from the query), no options.
_OUR_OPT = b"\x00\x00\x29" + EDNS_PAYLOAD.to_bytes(2, "big")
_OPT_SIZE = 11
_ROUTES_KEPT: Final = 4096  # parents whose route `route` remembers, at most


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
        self._routes: dict[str, tuple[str, Block] | None] = {}  # (see `route`)
        # Parents of the zones: a name directly below one may be a zone of its own, so a
        # template for its siblings could answer for another block.
        self._zone_parents = {zone.split(".", 1)[1] or "." for zone in by_zone if zone != "."}
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
        """The block whose zone is the longest suffix of `lname` (lower-case, absolute).
        Below the name itself, the answer is its parent's, remembered (a bounded map,
        cleared with the blocks): unique names under one parent cost two lookups."""
        block = self._blocks.get(lname)
        if block is not None:
            return lname, block
        if lname == ".":
            return None
        parent = lname.split(".", 1)[1] or "."
        routes = self._routes
        try:
            return routes[parent]
        except KeyError:
            pass
        found = routes[parent] = self._walk(parent)
        if len(routes) > _ROUTES_KEPT:
            routes.clear()
        return found

    def _walk(self, lname: str) -> tuple[str, Block] | None:
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

    def _slow(self, data: bytes, tcp: bool, family: str, client: Client) -> HandleResult:
        try:
            if isinstance(client, Peer):
                # (batched UDP: copied now, as the slot is reused; decoded if a plugin asks)
                return self._answer(data, tcp, family, None, raw_client=client.raw())
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

    async def trace(
        self, data: bytes, *, tcp: bool = False, family: str = "1"
    ) -> tuple[bytes | None, Response | None]:
        """Answer `data` as a client's query, on the slow path, and return the reply with the
        chain's `Response` (who answered; None when no chain ran: REFUSED outside the
        zones, FORMERR, ...). For `kdns explain`; counted in the metrics like any query."""
        seen: list[Response] = []
        try:
            out = self._answer(data, tcp, family, None, seen)
            if out is not None and not isinstance(out, bytes):
                out = await out
        except Exception as exc:
            out = self._panic(data, exc)
        return out, (seen[0] if seen else None)

    def _answer(
        self,
        data: bytes,
        tcp: bool,
        family: str,
        client: SockAddr | None,
        seen: list[Response] | None = None,
        *,
        raw_client: bytes | None = None,
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
        qtype = question.qtype
        if query.qclass != CLASS_IN or qtype in (TYPE_AXFR, TYPE_IXFR):
            # Only class IN data here; zone transfers are not offered (docs/rules.md D8).
            return self._send(query, _refused(), zone, proto, max_size, started, block.recursion)
        # (data, query, tcp, family, max_size, zone, server, client, raw_client)
        request = Request(data, query, tcp, family, max_size, zone, self.server, client, raw_client)
        result = block.chain.serve(request)
        if isinstance(result, Response):
            return self._finish(request, block, started, seen, result)
        if type(result) is Staged and result.fallback is None and not result.done():  # (open)
            # A forwarded query: encoded as the last stage of its future, when the upstream
            # answers (no other Future, no coroutine, no task); a failure is a panic.
            result.stages.append(functools.partial(self._finish, request, block, started, seen))
            result.fallback = functools.partial(self._panic, data)
            return result
        if isinstance(result, asyncio.Future):
            # A forwarded query: finish from a callback, no coroutine and no task.
            later: asyncio.Future[bytes | None] = result.get_loop().create_future()
            result.add_done_callback(
                functools.partial(self._finish_future, request, block, started, later, seen)
            )
            later.add_done_callback(functools.partial(_cancel_with, result))
            return later
        return self._finish_later(request, block, result, started, seen)

    def _finish_future(
        self,
        request: Request,
        block: Block,
        started: float,
        out: asyncio.Future[bytes | None],
        seen: list[Response] | None,
        done: asyncio.Future[Response],
    ) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
            return
        try:
            out.set_result(self._finish(request, block, started, seen, done.result()))
        except Exception as exc:
            out.set_result(self._panic(request.data, exc))

    async def _finish_later(
        self,
        request: Request,
        block: Block,
        pending: Awaitable[Response],
        started: float,
        seen: list[Response] | None,
    ) -> bytes | None:
        try:
            response = await pending
            return self._finish(request, block, started, seen, response)
        except Exception as exc:
            return self._panic(request.data, exc)

    def _finish(
        self,
        request: Request,
        block: Block,
        started: float,
        seen: list[Response] | None,
        response: Response,
    ) -> bytes:
        """The reply to send for `response` (the response last: a forwarded query's
        future takes this, with the rest bound, as its final stage)."""
        if seen is not None:
            seen.append(response)
        query = request.query
        if response.wire is not None:
            out = response.wire
            if len(out) > request.max_size:
                out = encode_truncated(query, out)
        else:
            assert response.reply is not None
            out = encode_reply(
                query,
                response.reply,
                max_size=request.max_size,
                ra=block.recursion,
                payload=request.payload,
            )
        if request.after is not None:
            for hook in request.after:
                hook(out)
        if response.cacheable:
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
        """Keep the reply for the fast path if the query has a shape it serves: one question
        of class IN, no flags but RD (and AD), at most one OPT, of version 0."""
        query = request.query
        data = request.data
        if response.upstream is not None:
            # Fresh from an upstream: kept only when it renews an entry held here before (a
            # hot name whose entry expired is back at once). Otherwise a relayed reply
            # enters at its first cache hit, the second query of the name (answered by the
            # cache plugin), so names asked once (unique or random names) cost no entry
            # and push none of the hot ones out; they stop at this one lookup.
            qwire = query.question_wire
            aging = self.cache.aging[query.edns is not None]  # (an aging entry, maybe expired)
            if not aging or qwire[:-4].lower() + qwire[-4:-2] not in aging:
                return
        if query.qclass != CLASS_IN or request.question is not query.question:
            return  # the key has no class; a rewritten question is not the client's
        if data[2] > 1 or data[3] & 0xDF or query.ancount or query.nscount:
            return  # opcode/AA/TC/QR/Z/CD set: the hot path sends these here anyway
        if out[2] & 0x02:
            return  # truncated: depends on the client's limit
        qwire = query.question_wire
        qname = query.qname_wire
        if b"\x00" in qname[:-1]:
            return  # the hot path finds the name's end by its first zero octet
        edns = query.edns
        if edns is None:
            if query.arcount or len(out) > 512:
                return  # (a TCP reply no UDP client without EDNS could take)
            need = 0
            request_size = 12 + len(qwire)
        else:
            if query.arcount != 1 or edns.version:
                return
            request_size = 12 + len(qwire) + _OPT_SIZE  # a bare OPT; others are counted apart
            if len(out) <= 512:
                need = 0
            elif len(out) <= self.max_udp_size:
                need = len(out)
            else:
                need = UDP_NEVER  # from TCP: too big for any UDP client
        key = qname.lower() + qwire[-4:-2]
        if response.wire is not None:
            # Not a reply to a DO query (an upstream may add RRSIGs for it), nor one that
            # `loadbalance` reorders per query (one order would stick). (A reply fresh
            # from an upstream got here only to renew an entry: see the top.)
            if response.expires is not None and not response.rotate and not (edns and edns.do):
                known = response.ttl_offsets
                offsets = known[1] if known is not None and known[0] is out else None
                self._cache_aging(request, response.expires, out, key, need, request_size, offsets)
            return
        reply = response.reply
        assert reply is not None
        if edns is not None:
            if not _ends_with_our_opt(out):
                return  # the hot path sets DO in the last OPT octets
            out = _without_do(out)
        rotations: tuple[bytes, ...] = ()
        if response.rotate and block.rotations is not None:
            variants = block.rotations(reply, MAX_ROTATIONS)[1:]
            encoded = [
                encode_reply(
                    query, v, max_size=request.max_size, ra=block.recursion, payload=request.payload
                )
                for v in variants
            ]
            if any(len(e) != len(out) or e[2:12] != out[2:12] for e in encoded):
                return  # an order that encodes differently (compression): do not keep
            rotations = tuple(_without_do(e) if edns is not None else e for e in encoded)
        negative = reply.rcode != Rcode.NOERROR or not reply.answer
        meta = EntryMeta(
            zone=request.zone,
            qtype=qtype_label(query.question.qtype),
            rcode=reply.rcode.name,
            request_size=request_size,
            response_size=len(out),
            negative=negative,
        )
        self.cache.store(
            edns=edns is not None,
            key=key,
            reply=out,
            question_len=len(qwire),
            need=need,
            meta=meta,
            dep=response.dep,
            rotations=rotations,
        )
        if response.siblings is not None and negative and not reply.answer:
            self._cache_template(request, response.siblings, out, need, meta)

    def _cache_template(
        self,
        request: Request,
        siblings: Callable[[bytes], bool],
        out: bytes,
        need: int,
        meta: EntryMeta,
    ) -> None:
        """Keep a negative reply as the template for the question's siblings (see
        `Response.siblings`), if it reads nothing of the first label: every compression
        pointer targets the parent, and no server block has a zone among the siblings."""
        qwire = request.query.question_wire
        qname = request.query.qname_wire
        n = qname[0]
        label = qname[1 : 1 + n].lower()
        if not n or not siblings(label):
            return
        lname = request.question.lname
        if "\\" in lname or (lname.split(".", 1)[1] or ".") in self._zone_parents:
            return  # an escaped label (the text split would mislead) or a zone among them
        try:
            layout = parse_layout(out)
        except LayoutError:
            return
        if any(target < 13 + n for _, target in layout.pointers):
            return  # a pointer to the whole name: differs per sibling
        self.cache.store_template(
            edns=request.query.edns is not None,
            key=qname[1 + n :].lower() + qwire[-4:-2] + bytes((n,)),
            reply=out,
            question_len=len(qwire),
            need=need,
            meta=meta,
            absent=siblings,
        )

    def _cache_aging(
        self,
        request: Request,
        expires: float,
        out: bytes,
        key: bytes,
        need: int,
        request_size: int,
        offsets: tuple[int, ...] | None = None,
    ) -> None:
        """Keep a relayed reply (a forward cache entry) until `expires`; `offsets`: where
        its TTLs are, when the plugin that answered knows (else found here)."""
        qwire = request.query.question_wire
        end = 12 + len(qwire)
        if out[12 : end - 4].lower() != qwire[:-4].lower() or out[end - 4 : end] != qwire[-4:]:
            return  # not the question asked: the tail would not follow the client's
        if out[4:6] != b"\x00\x01":
            return
        now = self.cache.clock()
        if expires <= now:
            return
        if offsets is None:
            try:
                offsets = ttl_offsets(out)
            except FormatError:
                return
        offsets = tuple(offset - end for offset in offsets)
        rcode = out[3] & 0x0F
        negative = rcode != RCODE_NOERROR or out[6:8] == b"\x00\x00"
        meta = EntryMeta(
            zone=request.zone,
            qtype=qtype_label(request.query.question.qtype),
            rcode=rcode_name(rcode),
            request_size=request_size,
            response_size=len(out),
            negative=negative,
            cache="denial" if negative else "success",
        )
        self.cache.store_aging(
            edns=request.query.edns is not None,
            key=key,
            reply=out,
            question_len=len(qwire),
            need=need,
            meta=meta,
            born=now,
            expires=expires,
            offsets=offsets,
        )


def _ends_with_our_opt(out: bytes) -> bool:
    return (
        out[-_OPT_SIZE:-6] == _OUR_OPT
        and out[-5] == 0
        and out[-4] in (0x00, 0x80)
        and out[-3:] == b"\x00\x00\x00"
    )


def _without_do(out: bytes) -> bytes:
    """A reply with our OPT's DO bit clear (the fast path sets it per query)."""
    return out[:-4] + b"\x00" + out[-3:] if out[-4] else out


def _cancel_with(source: asyncio.Future[Response], out: asyncio.Future[bytes | None]) -> None:
    if out.cancelled():
        source.cancel()


def _refused() -> Reply:
    return Reply(rcode=Rcode.REFUSED, authoritative=False)


__all__ = ["Block", "DnsServer", "IndexSource", "qtype_label"]
