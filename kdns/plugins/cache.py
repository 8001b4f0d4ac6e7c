"""`cache [TTL] [ZONES...] { ... }`: keeps relayed upstream replies for their TTL (CoreDNS
`cache`).

What it caches: complete replies that come back from the rest of the chain as wire bytes
(forwarded names), inside its zones, unless `disable success|denial` names the zone. Replies
of the `kubernetes` and `file` plugins are not kept here: they are answered from live data
and the pre-encoded fast path already keeps them, dropped precisely when the data changes,
so a cluster answer is never stale (the effect kubeadm's `disable success/denial
cluster.local` asks for, in every configuration).

Two caches, success and denial, of `capacity` entries each (CoreDNS: 9984), least recently
used evicted first. TTLs are the smallest of the reply's records, floored at MINTTL (5 s)
then capped at the TTL (CoreDNS's order); a denial lives min(SOA TTL, SOA MINIMUM) (RFC 2308
§5), 5 s without an SOA; SERVFAIL is kept `servfail` seconds (RFC 2308 §7.1). A hit is the
stored reply with TTLs counted down (RFC 1035 §4.1.3; kept as stored with `keepttl`), the
client's ID, RD bit and spelling of the question (0x20). Truncated replies are not kept.
Entries are keyed by (name, type, class, DO, CD, EDNS): a DNSSEC-aware client never gets a
reply stored for one that is not, and a client without EDNS never gets an OPT record
(RFC 6891 §7). Lookups see the denial cache first, but a SERVFAIL there does not hide a
usable success entry (as CoreDNS).

`prefetch AMOUNT [DURATION] [PERCENTAGE%]`: an entry asked AMOUNT times without a gap of
DURATION is refreshed in the background once its TTL falls to PERCENTAGE of the original
(at most one refresh per entry at a time; the new entry inherits the count).

`serve_stale [DURATION [immediate|verify ...]]` (RFC 8767): expired entries stay DURATION
longer. `immediate` answers from one at once and refreshes it in the background;
`verify` asks upstream first (at most VERIFY_TIMEOUT, then the refresh goes on in the
background) and answers stale only when no usable answer came. A refresh replaces the
entry only with a complete NOERROR or NXDOMAIN reply, so an upstream that is down or
answers SERVFAIL leaves the stale entry in place. Stale answers carry TTL 0, or
RESPONSE_TTL; after a failed refresh, FAILURE_RECHECK seconds pass before the next one.
Every refresh counts in coredns_cache_prefetch_total, every stale answer in
coredns_cache_served_stale_total.

The pre-encoded fast path (`kdns.serve.server`): a fresh reply this plugin serves or stores
is the same for every client but for the ID, RD and the question's spelling, so it is
marked `cacheable` with `expires` = stored + TTL and the fast path may answer it until then
(with TTLs aged at serve time); once it expires, queries come back here (stale serving,
refresh). Not marked: stale answers (they depend on the upstream's state and on time),
and every reply when `prefetch` (popularity is counted per query here) or `keepttl` (TTLs
must not age) is configured.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import functools
import gc
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kdns.config.model import CacheConfig, StaleRefresh
from kdns.dns import wire
from kdns.dns.records import Rcode
from kdns.dns.wire.common import RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result, then

log = logging.getLogger(__name__)

CacheKey = tuple[str, int, int, bool, bool, bool]  # qname, qtype, qclass, DO, CD, EDNS
_DEFAULT_NEGATIVE_TTL: Final = 5  # a denial without an SOA (CoreDNS's minimal default TTL)

# Stores between two young-generation collections, run from here. CPython takes most new
# tuples from a free list without counting them towards its next collection, so while
# the cache fills (unique names at 20k a second) ~30,000 key and entry tuples piled up in
# the young generation between collections, and each collection paused answering for
# 5-15 ms: the forwarded p99 at a fixed rate. Collecting every 256 stores keeps a pause
# to a few tenths of a millisecond for the same total work; keys and entries hold nothing
# the collector tracks (the TTL offsets packed in bytes), so that first pass untracks
# them and they never reach the older generations.
_COLLECT_EVERY: Final = 256
SUCCESS: Final = "success"
DENIAL: Final = "denial"


# One cached reply, TTLs already capped: (reply, stored, ttl, offsets, kind, rcode), where
# `ttl` is how long it is fresh and `offsets` where the records' TTLs sit in `reply`
# (packed, `_packed`/`_offsets`). A flat tuple of atomic values, so the garbage collector
# stops tracking it at its first pass: thousands of entries cost its passes nothing
# (prefetch and refresh bookkeeping is in `_State`). With the offsets as a tuple inside,
# the entry outlived that first pass (the collector looks at it before the inner tuple)
# and reached the older generations, whose full passes then walked every entry.
_Entry = tuple[bytes, float, int, bytes, str, int]
# Entries are compared by value (==), never by identity: compiled (kdns/native.py), a tuple
# of this fixed shape is unpacked into its fields and packed again into a new object.
_REPLY: Final = 0
_STORED: Final = 1
_TTL: Final = 2
_OFFSETS: Final = 3
_KIND: Final = 4
_RCODE: Final = 5


def _packed(offsets: tuple[int, ...]) -> bytes:
    return array.array("I", offsets).tobytes()  # (4-byte unsigned on Linux, as `_offsets` reads)


def _offsets(packed: bytes) -> tuple[int, ...]:
    return struct.unpack(f"={len(packed) >> 2}I", packed)


class _State:
    """Prefetch counts and refresh state of one entry (only entries that need it)."""

    __slots__ = ("entry", "hits", "last", "refreshing", "retry_after")

    def __init__(self, entry: _Entry) -> None:
        self.entry = entry
        self.hits = 0  # prefetch: queries without a gap of the prefetch DURATION
        self.last = -math.inf
        self.refreshing = False  # a refresh is under way
        self.retry_after = -math.inf  # serve_stale FAILURE_RECHECK after a failed refresh


class _Store:
    """Entries of one kind, least recently used first. An entry lives `ttl + keep` seconds
    (`keep`: the serve_stale DURATION); capacity evictions are counted."""

    def __init__(self, capacity: int, *, kind: str, stats: Stats, keep: float) -> None:
        self.capacity = max(1, capacity)
        self.kind = kind
        self.stats = stats
        self.keep = keep
        self.entries: collections.OrderedDict[CacheKey, _Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: CacheKey, now: float) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if now - entry[_STORED] >= entry[_TTL] + self.keep:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, key: CacheKey, entry: _Entry) -> None:
        entries = self.entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
            self.stats.count_cache_eviction(self.kind)

    def pop(self, key: CacheKey) -> None:
        self.entries.pop(key, None)

    def expire(self, now: float) -> None:
        """Drop every entry past its life (before the entry gauge is read)."""
        keep = self.keep
        doomed = [k for k, e in self.entries.items() if now - e[_STORED] >= e[_TTL] + keep]
        for key in doomed:
            del self.entries[key]


class CacheGauge:
    """`coredns_cache_entries`: the entries of every live cache plugin, summed by type
    before each scrape (registered once per Stats as a flusher)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.plugins: list[CachePlugin] = []
        stats.flushers.append(self.flush)

    def flush(self) -> None:
        totals = {SUCCESS: 0, DENIAL: 0}
        for plugin in self.plugins:
            now = plugin.clock()
            for store in (plugin.success, plugin.denial):
                store.expire(now)
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
        keep = config.stale
        self.success = _Store(config.success_capacity, kind=SUCCESS, stats=stats, keep=keep)
        self.denial = _Store(config.denial_capacity, kind=DENIAL, stats=stats, keep=keep)
        self._zones = config.zones
        self._everywhere = "." in config.zones  # (every name: no zone to check)
        self._stale = config.stale > 0
        self._verify = config.stale_refresh == StaleRefresh.VERIFY
        # Whether the fast path may keep what this plugin answers (see the docstring).
        self._fast = not config.prefetch and not config.keepttl
        self._tasks: set[asyncio.Task[Any]] = set()
        self._states: dict[CacheKey, _State] = {}
        self._state_limit = 2 * (self.success.capacity + self.denial.capacity)
        self._stores = 0  # since the last young-generation collection (_COLLECT_EVERY)
        self._gauge = gauge if gauge is not None else CacheGauge(stats)
        self._gauge.plugins.append(self)

    def close(self) -> Awaitable[None] | None:
        if self in self._gauge.plugins:
            self._gauge.plugins.remove(self)
        if not self._tasks:
            return None
        return self._cancel_refreshes()

    async def _cancel_refreshes(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # - lookups -

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if not self._everywhere and not any(in_zone(lname, z) for z in self._zones):
            return self.next.serve(request)
        query = request.query
        edns = query.edns
        key: CacheKey = (
            lname,
            request.question.qtype,
            query.qclass,
            edns is not None and edns.do,
            query.cd,
            edns is not None,
        )
        now = self.clock()
        # (Most misses are names never stored: two lookups, no method call.)
        if key in self.denial.entries or key in self.success.entries:
            entry = self._find(key, now)
        else:
            entry = None
        if entry is None:
            self.stats.count_cache_miss()
            return then(self.next.serve(request), functools.partial(self._stored, key, lname))
        age = now - entry[_STORED]
        if age < entry[_TTL]:
            if self.config.prefetch and self._popular(key, entry, now):
                self._refresh(key, entry, request, stale=False)
            answered = self._answer(entry, query, int(age))
            return Response(
                wire=answered,
                plugin=self.name,
                cacheable=self._fast,
                expires=entry[_STORED] + entry[_TTL],
                ttl_offsets=(answered, _offsets(entry[_OFFSETS])),
            )
        # Expired, but within serve_stale's DURATION (else _find would have dropped it).
        if self._verify and self._may_refresh(key, entry, now, stale=True):
            return self._verify_then_stale(key, entry, request)
        if not self._verify:
            self._refresh(key, entry, request, stale=True)
        return self._stale_answer(entry, query)

    def _find(self, key: CacheKey, now: float) -> _Entry | None:
        """The entry to answer from, fresh or (with serve_stale) expired; counts the hit."""
        entry = self.denial.get(key, now)
        if entry is not None and entry[_RCODE] == Rcode.SERVFAIL:
            # SERVFAIL is transient: it does not hide a usable success entry.
            entry = self.success.get(key, now) or entry
        if entry is None:
            entry = self.success.get(key, now)
        if entry is not None:
            self.stats.count_cache_hit(entry[_KIND])
        return entry

    def _answer(self, entry: _Entry, query: wire.Query, elapsed: int) -> bytes:
        """The stored reply for this client, TTLs aged by `elapsed` (unless keepttl)."""
        reply = entry[_REPLY]
        if not self.config.keepttl:
            reply = wire.rewrite_ttls(reply, elapsed, offsets=_offsets(entry[_OFFSETS]))
        return _for_client(reply, query)

    def _stale_answer(self, entry: _Entry, query: wire.Query) -> Response:
        """An expired entry: every TTL 0, or serve_stale's RESPONSE_TTL (RFC 8767 §4)."""
        self.stats.count_cache_served_stale()
        ttl = self.config.stale_ttl
        # max(0, min(TTL, 0) + ttl) sets every TTL to `ttl`.
        offsets = _offsets(entry[_OFFSETS])
        reply = wire.rewrite_ttls(entry[_REPLY], -ttl, cap=0, offsets=offsets)
        return Response(wire=_for_client(reply, query), plugin=self.name)

    def _popular(self, key: CacheKey, entry: _Entry, now: float) -> bool:
        """CoreDNS's prefetch rule: AMOUNT queries with no gap of DURATION, and the TTL
        down to PERCENTAGE of the original (at least the last second)."""
        config = self.config
        state = self._state(key, entry)
        if state.last < now - config.prefetch_gap:
            state.hits = 1
        else:
            state.hits += 1
        state.last = now
        threshold = math.ceil(config.prefetch_percentage / 100 * entry[_TTL])
        remaining = entry[_TTL] - int(now - entry[_STORED])
        return state.hits >= config.prefetch and remaining <= threshold

    def _state(self, key: CacheKey, entry: _Entry) -> _State:
        state = self._states.get(key)
        if state is None or state.entry != entry:
            state = self._states[key] = _State(entry)
            if len(self._states) > self._state_limit:
                self._prune_states()
        return state

    def _prune_states(self) -> None:
        """Forget the bookkeeping of entries no longer stored (and not refreshing)."""
        stores = (self.success.entries, self.denial.entries)
        self._states = {
            key: state
            for key, state in self._states.items()
            if state.refreshing or any(s.get(key) == state.entry for s in stores)
        }

    # - storing -

    def _stored(self, key: CacheKey, lname: str, response: Response) -> Response:
        """Keep a relayed reply if it may be kept; serve it with TTLs capped as cached."""
        kept = self._keep(key, lname, response, refresh=False)
        if kept is not None:
            entry, offsets = kept
            response.wire = entry[_REPLY]
            if self._fast:
                response.cacheable = True
                response.expires = entry[_STORED] + entry[_TTL]
                response.ttl_offsets = (entry[_REPLY], offsets)
        return response

    def _keep(
        self, key: CacheKey, lname: str, response: Response, *, refresh: bool
    ) -> tuple[_Entry, tuple[int, ...]] | None:
        """Store `response` under `key`; the entry and its TTL offsets (as found, not
        unpacked again), or None if it may not be kept. A serve_stale refresh keeps only a
        complete NOERROR or NXDOMAIN reply (RFC 8767 §4)."""
        reply = response.wire
        if reply is None or response.error is not None:
            return None
        config = self.config
        try:
            scan = wire.scan_reply(reply)
        except wire.FormatError as exc:
            log.debug("not caching an unparsable reply for %s: %s", lname, exc)
            return None
        if scan.truncated:
            return None
        rcode = scan.rcode
        if refresh and rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
            return None
        if rcode == RCODE_NOERROR and scan.answer_count:
            if self._disabled(lname, config.disable_success):
                return None
            store, kind = self.success, SUCCESS
            # CoreDNS: the smallest TTL of every record (answer, authority, additional).
            ttl = scan.min_ttl or 0
            ttl = min(max(ttl, config.success_min_ttl), config.success_ttl)
        elif rcode in (RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL):
            if self._disabled(lname, config.disable_denial):
                return None
            store, kind = self.denial, DENIAL
            if rcode == RCODE_SERVFAIL:
                ttl = config.servfail_ttl
            else:
                neg = scan.soa_negative_ttl
                ttl = neg if neg is not None else _DEFAULT_NEGATIVE_TTL
                ttl = min(max(ttl, config.denial_min_ttl), config.denial_ttl)
        else:
            return None
        if ttl <= 0:
            return None
        capped = wire.cap_ttls(reply, ttl, scan)  # every TTL capped at the entry's (CoreDNS)
        entry: _Entry = (capped, self.clock(), ttl, _packed(scan.ttl_offsets), kind, rcode)
        store.put(key, entry)
        if kind == SUCCESS:
            self.denial.pop(key)  # the newest state of the name
        self._stores += 1
        if self._stores >= _COLLECT_EVERY:
            self._stores = 0
            if gc.isenabled():
                gc.collect(0)
        return entry, scan.ttl_offsets

    def _disabled(self, lname: str, zones: tuple[str, ...] | None) -> bool:
        if zones is None:
            return False
        return not zones or any(in_zone(lname, z) for z in zones)

    # - refreshing (prefetch, serve_stale) -

    def _may_refresh(self, key: CacheKey, entry: _Entry, now: float, *, stale: bool) -> bool:
        state = self._states.get(key)
        if state is None or state.entry != entry:
            return True
        if state.refreshing:
            return False
        return not (stale and self.config.stale_recheck and now < state.retry_after)

    def _refresh(self, key: CacheKey, entry: _Entry, request: Request, *, stale: bool) -> None:
        """Ask the rest of the chain again in the background (at most one at a time)."""
        if not self._may_refresh(key, entry, self.clock(), stale=stale):
            return
        self._spawn(key, entry, request)

    def _spawn(self, key: CacheKey, entry: _Entry, request: Request) -> asyncio.Task[Any]:
        """A background refresh; a verify of a stale entry keeps only usable answers."""
        self._state(key, entry).refreshing = True
        stale = self.clock() - entry[_STORED] >= entry[_TTL]
        task = asyncio.get_running_loop().create_task(self._fetch(key, entry, request, stale=stale))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fetch(
        self, key: CacheKey, entry: _Entry, request: Request, *, stale: bool
    ) -> _Entry | None:
        """One refresh of `entry`; the new entry, or None when the answer was not usable."""
        self.stats.count_cache_prefetch()
        started = self.clock()
        state = self._state(key, entry)
        fresh: _Entry | None = None
        try:
            result = self.next.serve(request)
            response = result if isinstance(result, Response) else await result
            kept = self._keep(key, request.question.lname, response, refresh=stale)
            fresh = kept[0] if kept is not None else None
        except Exception as exc:  # a refresh must never take the server down
            log.warning("cache: refreshing %s failed: %r", request.question.lname, exc)
        finally:
            state.refreshing = False
        if fresh is None:
            if stale and self.config.stale_recheck:
                state.retry_after = started + self.config.stale_recheck
            return None
        # The popularity seen so far carries over to the new entry (CoreDNS).
        new = self._state(key, fresh)
        new.hits = state.hits
        new.last = started
        return fresh

    def _verify_then_stale(self, key: CacheKey, entry: _Entry, request: Request) -> Result:
        return self._verified(entry, request, self._spawn(key, entry, request))

    async def _verified(self, entry: _Entry, request: Request, task: asyncio.Task[Any]) -> Response:
        timeout = self.config.stale_verify_timeout
        if timeout > 0:
            # The refresh goes on in the background after the timeout.
            done, _ = await asyncio.wait({task}, timeout=timeout)
            fresh = task.result() if done else None
        else:
            fresh = await asyncio.shield(task)
        if fresh is None:
            return self._stale_answer(entry, request.query)
        answered = self._answer(fresh, request.query, 0)
        return Response(
            wire=answered,
            plugin=self.name,
            cacheable=self._fast,
            expires=fresh[_STORED] + fresh[_TTL],
            ttl_offsets=(answered, _offsets(fresh[_OFFSETS])),
        )


def _for_client(reply: bytes, query: wire.Query) -> bytes:
    """A stored reply with the query's ID, RD bit (RFC 1035 §4.1.1) and spelling of the
    question (0x20)."""
    out = wire.with_question(reply, query)
    rd = (query.flags >> 8) & 0x01
    if out[2] & 0x01 != rd:
        out = out[:2] + bytes((out[2] ^ 0x01,)) + out[3:]
    return out
