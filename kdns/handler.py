"""Query bytes in, reply bytes out: the hot path first, then decode, route, answer, encode.

Routing (slow path): names in the cluster zone and the reverse trees go to
`kdns.dns.answer.answer()`; names in a static zone to the zone files (the longer apex wins
when both match); everything else to the upstream, or REFUSED without one (D6). Transports
get bytes synchronously for everything answerable from local data, and an awaitable only
when an upstream must be asked. Nothing here raises into a transport: an unexpected error
is counted as a panic, logged on one line and answered SERVFAIL.

Decisions:

* RA is set when an upstream is configured (recursion is available), on every reply we
  build; forwarded replies are passed through as the upstream sent them.
* A reverse name kdns does not know (`Reply.fallthrough`) is forwarded when an upstream is
  configured; if that fails, our own authoritative NXDOMAIN is sent (we serve the reverse
  zones; SERVFAIL would make clients retry a name that is answered negatively anyway).
* An ExternalName target outside our zones (`Reply.chase`) is resolved upstream (spec
  R27) and its answer records appended after the CNAME; on failure the CNAME goes alone.
* Forwarded replies bigger than a UDP client allows become an empty TC=1 reply.
* Metric labels are CoreDNS's: zone = served apex, "." when forwarded, "dropped" for
  packets never answered; type = the qtype mnemonic or "other" (bounds the label set
  against random qtypes); rcode mnemonic.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from kdns.dns.answer import AnswerConfig, answer, served_zone
from kdns.dns.records import Question, Rcode, Record, Reply, RType
from kdns.dns.view import ClusterView
from kdns.dns.wire import (
    CLASS_IN,
    FormatError,
    Query,
    QueryError,
    build_query,
    decode_query,
    decode_reply,
    encode_badvers,
    encode_error,
    encode_reply,
    encode_truncated,
    rcode_name,
)
from kdns.observe.stats import Stats
from kdns.serve.fastpath import Dep, EntryMeta, FastPath, HandleResult, ReplyCache

log = logging.getLogger(__name__)

FORWARDED_ZONE = "."
DROPPED_ZONE = "dropped"
TCP_MAX = 65535
_QTYPE_LABELS = {int(t): t.name for t in RType}


class Upstream(Protocol):
    async def forward(self, query: bytes, *, question: Question, tcp: bool) -> bytes | None:
        """A full reply (its ID already the query's), or None on failure."""


class StaticZones(Protocol):
    @property
    def generation(self) -> int:
        """Bumps when a zone file reloads."""

    def find(self, lname: str) -> str | None:
        """The apex of a static zone holding lname, else None."""

    def answer(self, question: Question) -> Reply:
        """The authoritative answer from that zone."""


class PendingChange(Protocol):
    @property
    def received_at(self) -> float: ...
    @property
    def service_kind(self) -> str: ...


class IndexView(ClusterView, Protocol):
    """The cluster data plus what the cache needs: a change counter and pending changes."""

    @property
    def generation(self) -> int: ...

    def take_pending(self) -> Sequence[PendingChange]: ...

    def changes_since(self, generation: int) -> set[tuple[str, str]] | None: ...


def qtype_label(qtype: int) -> str:
    return _QTYPE_LABELS.get(qtype, "other")


class Handler(FastPath):
    """The request handler used by the UDP and TCP transports (see `handle`)."""

    def __init__(
        self,
        index: IndexView,
        config: AnswerConfig,
        *,
        stats: Stats,
        upstream: Upstream | None = None,
        static_zones: StaticZones | None = None,
        max_udp_size: int = 1232,
        cache: ReplyCache | None = None,
    ) -> None:
        super().__init__(index, static_zones, cache=cache if cache is not None else ReplyCache())
        self.index = index
        self.config = config
        self.stats = stats
        self.upstream = upstream
        self.static_zones = static_zones
        self.max_udp_size = max(512, max_udp_size)
        self._ra = upstream is not None
        stats.flushers.append(self.flush)

    def flush(self) -> None:
        """Fold the fast path's counts into `stats` (registered as a Stats flusher)."""
        self.fold(self.stats)

    # ---- the slow path -----------------------------------------------------------------

    def _slow(self, data: bytes, tcp: bool, family: str) -> HandleResult:
        try:
            return self._answer(data, tcp, family)
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

    def _answer(self, data: bytes, tcp: bool, family: str) -> HandleResult:
        started = time.perf_counter()
        self._check_generation()
        stats = self.stats
        proto = "tcp" if tcp else "udp"
        try:
            query = decode_query(data)
        except QueryError as exc:
            if exc.rcode is None:
                stats.dropped += 1
                stats.count_request(DROPPED_ZONE, proto, family, "other", len(data))
                return None
            out = encode_error(data, exc.rcode)
            zone = DROPPED_ZONE if out is None else FORWARDED_ZONE
            stats.count_request(zone, proto, family, "other", len(data))
            if out is None:
                stats.dropped += 1
            else:
                stats.count_response(
                    zone, proto, exc.rcode.name, len(out), time.perf_counter() - started
                )
            return out

        question = query.question
        edns = query.edns
        if tcp:
            max_size = TCP_MAX
        elif edns is not None:
            max_size = min(max(512, edns.payload), self.max_udp_size)  # RFC 6891 §6.2.5
        else:
            max_size = 512  # RFC 1035 §4.2.1
        lname = question.lname
        czone = served_zone(lname, zone=self.config.zone)
        szone = self.static_zones.find(lname) if self.static_zones is not None else None
        zone = szone if szone is not None else (czone or FORWARDED_ZONE)
        if szone is not None and czone is not None and len(czone) > len(szone):
            szone, zone = None, czone
        stats.count_request(zone, proto, family, qtype_label(question.qtype), len(data))
        if edns is not None and edns.do:
            stats.do_requests[zone] = stats.do_requests.get(zone, 0) + 1

        reply: Reply | None = None
        if edns is not None and edns.version > 0:
            out = encode_badvers(query, ra=self._ra)  # RFC 6891 §6.1.3
            return self._done(out, zone, proto, "BADVERS", started)
        if query.qclass != CLASS_IN or question.qtype in (RType.AXFR, RType.IXFR):
            # Only class IN data here; zone transfers are not offered (D8).
            reply = Reply(rcode=Rcode.REFUSED, authoritative=False)
        elif szone is not None:
            assert self.static_zones is not None
            reply = self.static_zones.answer(question)
        elif czone is not None:
            reply = answer(question, self.index, config=self.config)
            if self.upstream is not None and reply.fallthrough:
                return self._forward(query, data, tcp, zone, proto, max_size, started, reply)
            if self.upstream is not None and reply.chase:
                return self._chase(query, data, reply, zone, proto, max_size, started)
        elif self.upstream is not None:
            return self._forward(query, data, tcp, zone, proto, max_size, started, None)
        else:
            reply = Reply(rcode=Rcode.REFUSED, authoritative=False)  # D6: not ours, no upstream

        out = encode_reply(query, reply, max_size=max_size, ra=self._ra)
        if reply.cacheable and not tcp and self.index.synced:
            self._maybe_cache(query, data, reply, out, zone)
        return self._done(out, zone, proto, reply.rcode.name, started)

    def _done(self, out: bytes, zone: str, proto: str, rcode: str, started: float) -> bytes:
        self.stats.count_response(zone, proto, rcode, len(out), time.perf_counter() - started)
        return out

    def _maybe_cache(self, query: Query, data: bytes, reply: Reply, out: bytes, zone: str) -> None:
        """Keep the reply for the hot path if the query has one of its two shapes."""
        if query.qclass != CLASS_IN:
            return  # the cache key has no class: it holds class IN replies only
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
        meta = EntryMeta(
            zone=zone,
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
            dep=self._dependency(query.question.lname, zone, reply),
        )

    def _dependency(self, lname: str, zone: str, reply: Reply) -> Dep:
        """The Service a cached reply shows: `(ns, svc)` for `...<svc>.<ns>.svc.<zone>`
        names, whose answers read only that Service and its slices; None (structural, dropped
        on every change) for everything else, and for CNAME chases, which read two names."""
        if zone != self.config.zone or any(r.rtype == RType.CNAME for r in reply.answer):
            return None
        labels = lname[: -len(zone)].rstrip(".").split(".")
        if len(labels) >= 3 and labels[-1] == "svc":
            return (labels[-2], labels[-3])
        return None

    # ---- upstream ----------------------------------------------------------------------

    async def _forward(
        self,
        query: Query,
        data: bytes,
        tcp: bool,
        zone: str,
        proto: str,
        max_size: int,
        started: float,
        fallback: Reply | None,
    ) -> bytes | None:
        try:
            assert self.upstream is not None
            got = await self.upstream.forward(data, question=query.question, tcp=tcp)
            if got is None or len(got) < 12:
                reply = fallback or Reply(rcode=Rcode.SERVFAIL, authoritative=False)
                out = encode_reply(query, reply, max_size=max_size, ra=self._ra)
                return self._done(out, zone, proto, reply.rcode.name, started)
            if len(got) > max_size:
                got = encode_truncated(query, got)
            return self._done(got, zone, proto, rcode_name(got[3] & 0xF), started)
        except Exception as exc:
            return self._panic(data, exc)

    async def _chase(
        self,
        query: Query,
        data: bytes,
        reply: Reply,
        zone: str,
        proto: str,
        max_size: int,
        started: float,
    ) -> bytes | None:
        try:
            assert self.upstream is not None
            assert reply.chase is not None
            target = reply.chase
            extra: tuple[Record, ...] = ()
            qtype = query.question.qtype
            probe = build_query(target, qtype, qid=random.getrandbits(16))
            got = await self.upstream.forward(probe, question=Question(target, qtype), tcp=False)
            if got is not None:
                try:
                    decoded = decode_reply(got)
                except FormatError as exc:
                    log.warning("ExternalName target %s: unusable upstream reply: %s", target, exc)
                else:
                    if decoded.rcode == Rcode.NOERROR:
                        extra = decoded.answer
            full = replace(reply, answer=reply.answer + extra, chase=None)
            out = encode_reply(query, full, max_size=max_size, ra=self._ra)
            return self._done(out, zone, proto, full.rcode.name, started)
        except Exception as exc:
            return self._panic(data, exc)


__all__ = ["Handler", "IndexView", "StaticZones", "Upstream", "qtype_label"]
