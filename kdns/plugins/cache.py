"""`cache [TTL] [ZONES...]`: keeps relayed upstream replies for their TTL (CoreDNS `cache`).

What it caches: complete replies that come back from the rest of the chain as wire bytes
(forwarded names), inside its zones, unless `disable success|denial` names the zone. Replies
of the `kubernetes` and `file` plugins are not kept here: they are answered from live data
and the pre-encoded fast path already keeps them, dropped precisely when the data changes,
so a cluster answer is never stale (the effect kubeadm's `disable success/denial
cluster.local` asks for, in every configuration).

Two caches, success and denial, of `capacity` entries each (CoreDNS: 9984). TTLs are capped
at `success_ttl`/`denial_ttl` and floored at the MINTTLs (5 s); a denial lives min(SOA TTL,
SOA MINIMUM) (RFC 2308 §5), 5 s without an SOA; SERVFAIL is kept `servfail_ttl` seconds
(RFC 2308 §7.1). A hit is the stored reply with TTLs counted down (RFC 1035 §4.1.3), the
client's ID and its spelling of the question (0x20). Truncated replies are not kept.
Entries are keyed by (name, type, class, DO, CD): a DNSSEC-aware client never gets a reply
stored for one that is not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from kdns.config.model import CacheConfig
from kdns.dns import wire
from kdns.dns.records import Rcode
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result, then

log = logging.getLogger(__name__)

CacheKey = tuple[str, int, int, bool, bool]  # qname, qtype, qclass, DO, CD
_DEFAULT_NEGATIVE_TTL = 5  # a denial without an SOA (CoreDNS's minimal default TTL)


@dataclass(frozen=True, slots=True)
class _Entry:
    reply: bytes  # as sent to the first client, TTLs already capped
    stored: float
    ttl: int  # how long the entry lives
    ttl_offsets: tuple[int, ...]  # where the records' TTLs sit in `reply`


class _Store(TLRUCache[CacheKey, _Entry]):
    """Entries expire at their own TTL; capacity evictions are counted."""

    def __init__(
        self, maxsize: int, *, kind: str, stats: Stats, timer: Callable[[], float]
    ) -> None:
        super().__init__(maxsize, ttu=lambda _k, v, now: now + v.ttl, timer=timer)
        self.kind = kind
        self.stats = stats

    def popitem(self) -> tuple[CacheKey, _Entry]:
        item = super().popitem()
        self.stats.count_cache_eviction(self.kind)
        return item


class CacheGauge:
    """`coredns_cache_entries`: the entries of every live cache plugin, summed by type
    before each scrape (registered once per Stats as a flusher)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.plugins: list[CachePlugin] = []
        stats.flushers.append(self.flush)

    def flush(self) -> None:
        totals = {"success": 0, "denial": 0}
        for plugin in self.plugins:
            for store in (plugin.success, plugin.denial):
                store.expire()
                totals[store.kind] += len(store)
        for kind, entries in totals.items():
            self.stats.set_cache_entries(kind, entries)


class CachePlugin(Plugin):
    name = "cache"

    def __init__(
        self,
        config: CacheConfig,
        *,
        stats: Stats,
        gauge: CacheGauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.config = config
        self.stats = stats
        self.clock = clock
        self.success = _Store(
            max(1, config.success_capacity), kind="success", stats=stats, timer=clock
        )
        self.denial = _Store(
            max(1, config.denial_capacity), kind="denial", stats=stats, timer=clock
        )
        self._gauge = gauge if gauge is not None else CacheGauge(stats)
        self._gauge.plugins.append(self)

    def close(self) -> None:
        if self in self._gauge.plugins:
            self._gauge.plugins.remove(self)

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if not any(in_zone(lname, z) for z in self.config.zones):
            return self.next.serve(request)
        query = request.query
        key: CacheKey = (lname, request.question.qtype, query.qclass, request.do, query.cd)
        hit = self._lookup(key, query)
        if hit is not None:
            return Response(wire=hit, plugin=self.name)
        self.stats.count_cache_miss()
        return then(self.next.serve(request), lambda r: self._store(key, lname, r))

    def _lookup(self, key: CacheKey, query: wire.Query) -> bytes | None:
        for store in (self.success, self.denial):
            entry = store.get(key)
            if entry is None:
                continue
            elapsed = int(self.clock() - entry.stored)
            try:
                aged = wire.rewrite_ttls(entry.reply, elapsed, offsets=entry.ttl_offsets)
                out = wire.with_question(aged, query)
            except wire.FormatError:
                return None  # cannot happen for a stored reply; then ask again
            self.stats.count_cache_hit(store.kind)
            return out
        return None

    def _disabled(self, lname: str, zones: tuple[str, ...] | None) -> bool:
        if zones is None:
            return False
        return not zones or any(in_zone(lname, z) for z in zones)

    def _store(self, key: CacheKey, lname: str, response: Response) -> Response:
        """Keep a relayed reply if it may be kept; serve it with TTLs capped as cached."""
        reply = response.wire
        if reply is None or response.error is not None:
            return response
        config = self.config
        try:
            decoded = wire.decode_reply(reply)
            offsets = wire.ttl_offsets(reply)
        except wire.FormatError as exc:
            log.debug("not caching an unparsable reply for %s: %s", lname, exc)
            return response
        if decoded.truncated:
            return response
        rcode = decoded.rcode
        if rcode == Rcode.NOERROR and decoded.answer_count:
            if self._disabled(lname, config.disable_success):
                return response
            # CoreDNS: the smallest TTL of every record (answer, authority, additional).
            store, ttl = self.success, decoded.record_min_ttl or 0
            ttl = max(config.success_min_ttl, min(ttl, config.success_ttl))
        elif rcode in (Rcode.NOERROR, Rcode.NXDOMAIN, Rcode.SERVFAIL):
            if self._disabled(lname, config.disable_denial):
                return response
            store = self.denial
            if rcode == Rcode.SERVFAIL:
                ttl = config.servfail_ttl
            else:
                neg = decoded.soa_negative_ttl
                ttl = neg if neg is not None else _DEFAULT_NEGATIVE_TTL
                ttl = max(config.denial_min_ttl, min(ttl, config.denial_ttl))
        else:
            return response
        capped = wire.rewrite_ttls(reply, 0, cap=ttl, offsets=offsets)
        if ttl > 0:
            store[key] = _Entry(capped, self.clock(), ttl, offsets)
        response.wire = capped
        return response
