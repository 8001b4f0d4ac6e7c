"""The reply cache and the hot path: answer a repeated plain UDP question with a few bytes ops.

A cache entry holds a reply already encoded for one (lower-cased wire qname, qtype) and one
EDNS variant (no OPT, or a bare version-0 OPT without DO or options): two header variants
(RD clear / RD set) and the bytes after the question. Answer owner names in the tail are
compression pointers into the question (RFC 1035 §4.1.4), so a hit echoes the client's
spelling (0x20, D4) just by copying its question in: a hit is `ID + header + question +
tail`, with no parsing beyond finding the end of the name and no objects besides the output
(docs/benchmarking.md; the PowerDNS packet-cache technique keyed on qname+qtype).

Everything unusual goes to the slow path (`FastPath._slow`, implemented by
`kdns.handler.Handler`): TCP, opcode/flag oddities (QR, AA, TC, CD, Z set), counts other
than one question and at most one bare OPT, EDNS with DO/options/version>0, class != IN,
names with a zero octet inside a label, and replies bigger than the client allows.

Invalidation: the hot path compares the index's `generation` (and the static zones') with
the one the cache was filled under; when either moved, the slow path folds the counts,
empties the cache and records the programming latency of the pending changes.

Metrics: each entry keeps plain int hit counts (per address family); `fold()` adds them to
`Stats` before each scrape (evicted entries are folded first). Hit durations are not timed
one by one: the transport reports each drained batch's time (`observe_batch`), and hits
are folded with the mean per-query time of those batches. No I/O, no logging here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kdns.observe.stats import Stats

HandleResult = bytes | None | Awaitable[bytes | None]

# Header counts of the two cacheable shapes: QD=1 AN=0 NS=0 AR=0, and AR=1 (a bare OPT).
_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_WITH_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_HEAD = b"\x00\x00\x29"  # root owner, TYPE 41 (RFC 6891 §6.1.2)
_OPT_TAIL = b"\x00\x00\x00\x00\x00\x00"  # ext-rcode 0, version 0, DO=0 Z=0, RDLEN 0
_CLASS_IN = b"\x00\x01"

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Label values and sizes of one entry's hits, for folding into Stats."""

    zone: str
    qtype: str
    rcode: str
    request_size: int
    response_size: int
    negative: bool


class Entry:
    """One cached reply: header variants indexed by the query's RD bit, the tail after the
    question, and plain hit counts."""

    __slots__ = (
        "dep",
        "headers",
        "hits_v4",
        "hits_v6",
        "meta",
        "need",
        "size",
        "tail",
        "tails",
        "turn",
    )

    def __init__(
        self,
        headers: tuple[bytes, bytes],
        tail: bytes,
        need: int,
        meta: EntryMeta,
        size: int,
        dep: Dep = None,
    ) -> None:
        self.dep = dep  # the Service the reply depends on; None = on the zone's structure
        self.headers = headers
        self.tail = tail
        self.need = need  # smallest EDNS payload the reply fits in; 0 = any
        self.meta = meta
        self.size = size  # bytes charged against the cache bound
        self.hits_v4 = 0
        self.hits_v6 = 0
        self.tails: tuple[bytes, ...] | None = None  # rotations served in turn (loadbalance)
        self.turn = 0


# What a cached reply depends on: the (namespace, service) whose data it shows, or None
# for replies that depend on the zone's structure (apex, `<ns>.svc`, pods, reverse names,
# CNAME chases). A change to a Service drops its own entries and every structural one.
Dep = tuple[str, str] | None
OKey = tuple[bool, bytes]


class GenerationSource(Protocol):
    @property
    def generation(self) -> int: ...


class ChangeSource(GenerationSource, Protocol):
    """The index, as the cache sees it: what changed since the cache last asked."""

    @property
    def serial(self) -> int: ...

    def changes_since(self, generation: int) -> set[tuple[str, str]] | None:
        """The (namespace, service) keys changed after `generation`; None = anything."""


class ReplyCache:
    """Pre-encoded replies, bounded in entries and bytes; negative replies have their own,
    smaller bound so random names cannot push out the positive ones. Eviction is FIFO
    (insertion order): a hit must not pay for LRU bookkeeping."""

    def __init__(
        self,
        *,
        max_entries: int = 20_000,
        max_negative: int = 4_096,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.max_entries = max_entries
        self.max_negative = max_negative
        self.max_bytes = max_bytes
        # Variant tables: the hot path picks one by the query's shape, then looks the key up.
        self.plain: dict[bytes, Entry] = {}
        self.edns: dict[bytes, Entry] = {}
        # Insertion order over both tables: (edns variant?, key) -> None; negatives apart.
        self._order: dict[OKey, None] = {}
        self._negative: dict[OKey, None] = {}
        self._structural: dict[OKey, None] = {}
        self._by_dep: dict[tuple[str, str], dict[OKey, None]] = {}
        self.bytes = 0
        # (meta, family) -> hits of entries already gone, waiting for the next fold.
        self._retired: dict[tuple[EntryMeta, str], int] = {}

    def __len__(self) -> int:
        return len(self.plain) + len(self.edns)

    def store(
        self,
        *,
        edns: bool,
        key: bytes,
        reply: bytes,
        question_len: int,
        need: int,
        meta: EntryMeta,
        dep: Dep = None,
        rotations: tuple[bytes, ...] = (),
    ) -> None:
        """Remember `reply` (the full encoded reply to a query whose question section is
        `question_len` bytes). `need`: the smallest EDNS payload the reply fits (0 = any).
        `rotations`: further encodings of the same reply with its records in another
        order (same header and size), served in turn after `reply`."""
        table = self.edns if edns else self.plain
        okey = (edns, key)
        if key in table:
            self._drop(okey)
        flags0 = reply[2] & 0xFE
        rest = reply[3:12]
        size = (len(reply) - question_len) * (1 + len(rotations)) + len(key) + 200  # + overhead
        if size > self.max_bytes:
            return
        entry = table[key] = Entry(
            (bytes((flags0,)) + rest, bytes((flags0 | 0x01,)) + rest),
            reply[12 + question_len :],
            need,
            meta,
            size,
            dep,
        )
        if rotations:
            entry.tails = (entry.tail, *(r[12 + question_len :] for r in rotations))
        self._order[okey] = None
        if dep is None:
            self._structural[okey] = None
        else:
            self._by_dep.setdefault(dep, {})[okey] = None
        if meta.negative:
            self._negative[okey] = None
            while len(self._negative) > self.max_negative:
                self._drop(next(iter(self._negative)))
        self.bytes += size
        while len(self._order) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._order)))

    def _drop(self, okey: OKey) -> None:
        edns, key = okey
        table = self.edns if edns else self.plain
        entry = table.pop(key, None)
        self._order.pop(okey, None)
        self._negative.pop(okey, None)
        if entry is not None:
            if entry.dep is None:
                self._structural.pop(okey, None)
            else:
                deps = self._by_dep.get(entry.dep)
                if deps is not None:
                    deps.pop(okey, None)
                    if not deps:
                        del self._by_dep[entry.dep]
            self._retire(entry)
            self.bytes -= entry.size

    def invalidate(self, services: Iterable[tuple[str, str]], *, negatives: bool) -> int:
        """Forget what a data change may have altered: the replies about the changed
        Services, every structural reply, and (when the SOA serial moved, since negative
        replies carry the SOA) every negative reply. Returns how many were dropped."""
        doomed: dict[OKey, None] = dict(self._structural)
        for service in services:
            doomed.update(self._by_dep.get(service, {}))
        if negatives:
            doomed.update(self._negative)
        for okey in doomed:
            self._drop(okey)
        return len(doomed)

    def _retire(self, entry: Entry) -> None:
        for hits, family in ((entry.hits_v4, "1"), (entry.hits_v6, "2")):
            if hits:
                k = (entry.meta, family)
                self._retired[k] = self._retired.get(k, 0) + hits

    def clear(self) -> None:
        """Forget every entry (their counts wait for the next fold). Tables are emptied in
        place."""
        for table in (self.plain, self.edns):
            for entry in table.values():
                self._retire(entry)
            table.clear()
        self._order.clear()
        self._negative.clear()
        self._structural.clear()
        self._by_dep.clear()
        self.bytes = 0

    def fold(self, stats: Stats, *, seconds_per_hit: float) -> None:
        """Add hit counts to `stats` (CoreDNS's request/response/size/duration metrics) and
        reset them."""
        for table in (self.plain, self.edns):
            for entry in table.values():
                if entry.hits_v4 or entry.hits_v6:
                    self._retire(entry)
                    entry.hits_v4 = entry.hits_v6 = 0
        counts = self._retired
        self._retired = {}
        for (meta, family), hits in counts.items():
            stats.count_cached(meta, family, hits, seconds_per_hit)


class FastPath:
    """The hot path; `kdns.handler.Handler` subclasses it and supplies `_slow`."""

    def __init__(
        self,
        index: ChangeSource,
        static_zones: GenerationSource | None,
        *,
        cache: ReplyCache,
    ) -> None:
        self._index = index
        self._serial = index.serial
        self._static = static_zones if static_zones is not None else _NoZones()
        self._generation = index.generation
        self._static_generation = self._static.generation
        self.cache = cache
        self._plain = cache.plain
        self._edns = cache.edns
        self._batch_seconds = 0.0
        self._batch_queries = 0

    def _slow(
        self, data: bytes, tcp: bool, family: str, client: tuple[str, int] | None
    ) -> HandleResult:
        raise NotImplementedError

    def _check_generation(self) -> None:
        """Catch up with data changes (the handler also records programming latency)."""
        if self.generation_moved():
            self.reset_generation()

    def handle(
        self, data: bytes, tcp: bool, family: str, client: tuple[str, int] | None = None
    ) -> HandleResult:
        """Answer `data`: bytes now, None to drop, or an awaitable when forwarding."""
        if tcp:
            return self._slow(data, tcp, family, client)
        if (
            self._index.generation != self._generation
            or self._static.generation != self._static_generation
        ):
            self._check_generation()  # drop what the changes may alter, then carry on
        end = data.find(0, 12)
        counts = data[4:12]
        if counts == _PLAIN:
            if len(data) != end + 5:
                return self._slow(data, tcp, family, client)
            table = self._plain
        elif (
            counts == _WITH_OPT
            and len(data) == end + 16
            and data[end + 5 : end + 8] == _OPT_HEAD
            and data[end + 10 :] == _OPT_TAIL
        ):
            table = self._edns
        else:
            return self._slow(data, tcp, family, client)
        # byte 2: QR, opcode, AA, TC must be 0 (RD free); byte 3: only AD may be set.
        if data[2] > 1 or data[3] & 0xDF or data[end + 3 : end + 5] != _CLASS_IN:
            return self._slow(data, tcp, family, client)
        # bytes.lower() is safe on wire names: label lengths (<= 63) are below "A".
        entry = table.get(data[12 : end + 3].lower())
        if entry is None:
            return self._slow(data, tcp, family, client)
        if entry.need and int.from_bytes(data[end + 8 : end + 10], "big") < entry.need:
            return self._slow(data, tcp, family, client)
        if family == "1":
            entry.hits_v4 += 1
        else:
            entry.hits_v6 += 1
        tail = entry.tail
        if entry.tails is not None:  # loadbalance: the next rotation is served next time
            entry.turn = turn = (entry.turn + 1) % len(entry.tails)
            entry.tail = entry.tails[turn]
        return data[:2] + entry.headers[data[2]] + data[12 : end + 5] + tail

    def observe_batch(self, queries: int, seconds: float) -> None:
        """Called by the UDP transport after each drained batch (for hit durations)."""
        self._batch_seconds += seconds
        self._batch_queries += queries

    def generation_moved(self) -> bool:
        return (
            self._index.generation != self._generation
            or self._static.generation != self._static_generation
        )

    def reset_generation(self) -> None:
        """Adopt the current generations, forgetting exactly what the changes since may
        have altered (everything, when a static zone reloaded or the index cannot say)."""
        changed = self._index.changes_since(self._generation)
        if changed is None or self._static.generation != self._static_generation:
            self.cache.clear()
        else:
            self.cache.invalidate(changed, negatives=self._index.serial != self._serial)
        self._serial = self._index.serial
        self._generation = self._index.generation
        self._static_generation = self._static.generation

    def fold(self, stats: Stats) -> None:
        per_hit = self._batch_seconds / self._batch_queries if self._batch_queries else 0.0
        self._batch_seconds = 0.0
        self._batch_queries = 0
        self.cache.fold(stats, seconds_per_hit=per_hit)


class _NoZones:
    generation = 0
