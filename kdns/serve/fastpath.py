"""The reply cache and the hot path: answer a repeated question with a few bytes ops.

A cache entry holds a reply already encoded for one (lower-cased wire qname, qtype) and one
EDNS variant (no OPT, or an OPT): two header variants (RD clear / RD set) and the bytes
after the question. Answer owner names in the tail are compression pointers into the
question (RFC 1035 §4.1.4), so a hit echoes the client's spelling (0x20, D4) just by
copying its question in: a hit is `ID + header + question + tail`, with no parsing beyond
finding the end of the name and no objects besides the output (docs/benchmarking.md; the
PowerDNS packet-cache technique keyed on qname+qtype).

Before any of that, a UDP query seen before is looked up by its own bytes after the ID
(`ReplyCache.exact`, filled by the first hit): everything the checks below read is in those
bytes, so the reply after the ID is fixed too, and a repeat costs one slice, one lookup and
one concatenation. TCP queries likewise, from a table of their own (`exact_tcp`: the same
bytes over UDP may call for a smaller reply, and count under another protocol). Dropping an
entry (or moving a lazy entry's epoch) forgets its queries.

`FastPath.handle` serves the commonest shape first (UDP, one question, no OPT or a bare
version-0 OPT without DO or options) with the fewest operations. Every other query with one
question of class IN and at most one version-0 OPT is served from the same entries by
`_general`, checked more closely:
* over TCP (framed by the transport; never truncated, so no size check);
* with EDNS DO set: the same entry, with DO echoed in our OPT (RFC 3225 §3; nothing kdns
  serves is signed, so the records are the same); the slow path answers DO alike;
* with EDNS options (a client cookie, padding, ...) or an odd payload size: the reply is the
  same, since kdns's OPT carries no options (the slow path drops them too).
Four kinds of entry, each in its own tables so a hit on the first costs nothing more:
* plain entries: a positive reply about one Service, dropped exactly when it changes;
* lazy entries: the other replies of the local plugins (structural ones, negative ones
  carrying the SOA), valid in the epoch they were stored in (see Invalidation);
* templates (`Template`): a negative reply that holds for every sibling of a name (the same
  parent and qtype, any first label the answering plugin says does not exist, e.g.
  `<anything>.<ns>.svc.<zone>` for which no such Service exists), keyed by the parent, the
  qtype and the length of the first label (the compression pointers into the question
  depend on it). Unique names (random-subdomain floods) are served from it without
  filling the cache with one entry per name;
* aging entries (`Aging`): replies relayed from upstream that the forward cache keeps for
  a TTL: each hit rewrites the TTLs to the seconds left (RFC 1035 §4.1.3), and an expired
  entry goes to the slow path.

Everything else goes to the slow path (`FastPath._slow`, implemented by
`kdns.serve.server.DnsServer`): opcode/flag oddities (QR, AA, TC, CD, Z set), counts other
than one question and at most one OPT, EDNS version > 0, malformed options, class != IN,
names with a zero octet inside a label, and replies bigger than the client allows.

Invalidation: the hot path compares the index's `generation` (and the static zones') with
the one the cache was filled under; when either moved, it forgets what the changes may
have altered (`ReplyCache.invalidate`: the changed Services' replies at once, the others by
moving an epoch, at a cost independent of the cache's size) and the server records the
programming latency of the pending changes.

Metrics: each entry keeps plain int hit counts (per address family) for the commonest shape
and a small dict for the others (TCP, DO, other request sizes); `fold()` adds them to
`Stats` before each scrape (evicted entries are folded first). Hit durations are not timed
one by one: the transport reports each drained batch's time (`observe_batch`), and hits
are folded with the mean per-query time of those batches. No I/O, no logging here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol, cast

from kdns.dns.wire import rewrite_ttls
from kdns.observe.stats import Stats
from kdns.serve.transport import Client

HandleResult = bytes | None | Awaitable[bytes | None]

# Header counts of the commonest shapes: QD=1 AN=0 NS=0 AR=0, and AR=1 (a bare OPT).
_PLAIN: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_WITH_OPT: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_ONE_QUESTION: Final = b"\x00\x01\x00\x00\x00\x00"  # QD=1 AN=0 NS=0; AR follows
_AR0: Final = b"\x00\x00"
_AR1: Final = b"\x00\x01"
_OPT_HEAD: Final = b"\x00\x00\x29"  # root owner, TYPE 41 (RFC 6891 §6.1.2)
_OPT_TAIL: Final = b"\x00\x00\x00\x00\x00\x00"  # ext-rcode 0, version 0, DO=0 Z=0, RDLEN 0
_OPT_TAIL_DO: Final = b"\x00\x00\x80\x00\x00\x00"  # the same with DO=1
_OPT_SIZE: Final = 11  # an OPT without options
_CLASS_IN: Final = b"\x00\x01"
_DO: Final = b"\x80"  # the OPT TTL's third octet with DO set (RFC 3225 §3), the rest zero
_LENGTHS: Final = tuple(bytes((n,)) for n in range(256))

UDP_NEVER: Final = 1 << 17
"""`need` of a reply no UDP client may get (bigger than the server's UDP limit)."""


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Label values and sizes of one entry's hits, for folding into Stats."""

    zone: str
    qtype: str
    rcode: str
    request_size: int  # of the commonest shape (no options); other sizes are counted apart
    response_size: int
    negative: bool
    cache: str | None = None  # a forward cache reply: "success" or "denial" (its hit counter)


# Hits of a shape other than the commonest are counted by an int (no object per hit):
# request size << 3 | TCP << 2 | DO << 1 | IPv6 (see `odd_key`).
_ODD_TCP, _ODD_DO, _ODD_V6 = 4, 2, 1


def odd_key(size: int, *, tcp: bool, do: bool, family: str) -> int:
    return size << 3 | (_ODD_TCP if tcp else 0) | (_ODD_DO if do else 0) | (family == "2")


def _count(entry: Entry, size: int, *, tcp: bool, do: bool, family: str) -> int:
    """Count one hit of `entry` by a `size`-byte query; returns its `odd_key`, or 0 for the
    commonest shape (plain UDP of the stored size, counted per family)."""
    if tcp or do or size != entry.meta.request_size:
        okey = odd_key(size, tcp=tcp, do=do, family=family)
        odd = entry.odd
        if odd is None:
            odd = entry.odd = {}
        odd[okey] = odd.get(okey, 0) + 1
        return okey
    if family == "1":
        entry.hits_v4 += 1
    else:
        entry.hits_v6 += 1
    return 0


# What a cached reply depends on: the (namespace, service) whose data it shows, or None
# for replies that depend on the zone's structure (apex, `<ns>.svc`, pods, reverse names,
# CNAME chases). A change to a Service drops its own entries and every structural one.
Dep = tuple[str, str] | None
# An entry's place in the cache: (table, key).
OKey = tuple[int, bytes]

# Tables: the kind of entry, plus EDNS (bit 0) for the variant with an OPT. PLAIN: replies
# about one Service (`dep`), dropped exactly when it changes, looked up first. LAZY: the
# rest of the local replies (structural, negative), valid while the epochs they were stored
# in last (`ReplyCache.current`), so a change forgets them all at once.
PLAIN, EDNS, LAZY, TEMPLATE, AGING = 0, 1, 2, 4, 6


class Entry:
    """One cached reply: header variants indexed by the query's RD bit, the tail after the
    question, and plain hit counts."""

    __slots__ = (
        "dep",
        "epoch_soa",
        "epoch_structure",
        "exact",
        "headers",
        "hits_v4",
        "hits_v6",
        "meta",
        "need",
        "odd",
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
        dep: Dep = None,
    ) -> None:
        self.dep = dep  # the Service the reply depends on; None = on the zone's structure
        self.headers = headers
        self.tail = tail
        self.need = need  # smallest EDNS payload the reply fits in; 0 = any
        self.meta = meta
        self.size = 0  # bytes charged against the cache bound
        self.hits_v4 = 0
        self.hits_v6 = 0
        self.odd: dict[int, int] | None = None  # hits of the other shapes, by `odd_key`
        self.tails: tuple[bytes, ...] | None = None  # rotations served in turn (loadbalance)
        self.turn = 0
        # The epochs of the cache the reply is valid in (ReplyCache.current); -1 = any.
        self.epoch_structure = -1
        self.epoch_soa = -1
        self.exact: list[bytes] | None = None  # its keys in `ReplyCache.exact` (or _tcp)


class Template(Entry):
    """A negative reply for every sibling of a name: `absent(first label)` (lower-case
    wire bytes) says whether a sibling is one the reply holds for."""

    __slots__ = ("absent",)

    def __init__(
        self,
        headers: tuple[bytes, bytes],
        tail: bytes,
        need: int,
        meta: EntryMeta,
        absent: Callable[[bytes], bool],
    ) -> None:
        super().__init__(headers, tail, need, meta)
        self.absent = absent


class Aging(Entry):
    """A relayed upstream reply kept until `expires` (time.monotonic()): its TTLs count
    down from those it had when stored (`born`), rewritten once per second."""

    __slots__ = ("aged", "base", "born", "expires", "offsets")

    def __init__(
        self,
        headers: tuple[bytes, bytes],
        tail: bytes,
        need: int,
        meta: EntryMeta,
        *,
        born: float,
        expires: float,
        offsets: tuple[int, ...],
    ) -> None:
        super().__init__(headers, tail, need, meta)
        self.base = tail
        self.born = born
        self.expires = expires
        self.offsets = offsets  # of the TTL fields, in `tail`
        self.aged = 0  # whole seconds `tail` has been counted down by

    def tail_at(self, now: float) -> bytes | None:
        """The tail with TTLs counted down to `now`; None once expired."""
        if now >= self.expires:
            return None
        elapsed = int(now - self.born)
        if elapsed != self.aged:
            self.tail = rewrite_ttls(self.base, elapsed, offsets=self.offsets)
            self.aged = elapsed
        return self.tail


_FOREVER: Final = float("inf")


class Exact:
    """A query remembered by its bytes (`ReplyCache.remember`): the reply after the ID (up
    to the question's end, for an aging entry) and the hits since the last fold, counted
    here so a hit touches nothing else; `settle()` moves them to the entry."""

    __slots__ = ("cut", "entry", "head", "okey", "reply", "tail", "until", "v4", "v6")

    def __init__(
        self, entry: Entry, reply: bytes, okey: int, cut: int = 0, tail: bytes = b""
    ) -> None:
        self.entry = entry
        self.reply = reply
        self.okey = okey  # the entry's `odd_key` for this shape, family bit clear; 0: plain
        self.cut = cut  # templates: the query's bytes after the question (its OPT)
        self.tail = tail  # templates: the reply after the question (DO echoed or not)
        # Aging entries: `reply` holds until `until` (the cache's clock: the next whole
        # second of age, when the TTLs count down, or expiry); `head` is the reply up to
        # the question's end, to rebuild it from (`FastPath._refresh`).
        self.until = _FOREVER
        self.head: bytes | None = None
        self.v4 = 0
        self.v6 = 0

    def settle(self) -> None:
        v4, v6 = self.v4, self.v6
        if not (v4 or v6):
            return
        self.v4 = self.v6 = 0
        entry, okey = self.entry, self.okey
        if not okey:
            entry.hits_v4 += v4
            entry.hits_v6 += v6
            return
        odd = entry.odd
        if odd is None:
            odd = entry.odd = {}
        if v4:
            odd[okey] = odd.get(okey, 0) + v4
        if v6:
            odd[okey | _ODD_V6] = odd.get(okey | _ODD_V6, 0) + v6


class GenerationSource(Protocol):
    @property
    def generation(self) -> int: ...


class ChangeSource(GenerationSource, Protocol):
    """The index, as the cache sees it: what changed since the cache last asked."""

    @property
    def serial(self) -> int: ...

    def changes_since(self, generation: int) -> set[tuple[str, str]] | None:
        """The (namespace, service) keys changed after `generation`; None = anything."""


def _lazy(entry: Entry) -> bool:
    """Valid only in the epochs it was stored in (`ReplyCache.current`)."""
    return entry.epoch_structure >= 0 or entry.epoch_soa >= 0


def main_key(key: bytes) -> bytes:
    """The key of a plain or EDNS entry, from the lower-case wire qname and the qtype as
    sent (`key`). The hot path lower-cases the qname and the qtype in one go; a qtype with
    an ASCII letter octet (HTTPS, 65 = 0x0041) would change and could meet another type
    (0x0061), so such keys get one more octet, which no query's key of that name has:
    `_general` finds them."""
    qtype = key[-2:]
    return key if qtype.lower() == qtype.upper() else key + b"\x00"


def _headers(reply: bytes) -> tuple[bytes, bytes]:
    """The reply's header after the ID, with RD clear and with RD set (echoing the query)."""
    flags0 = reply[2] & 0xFE
    rest = reply[3:12]
    return bytes((flags0,)) + rest, bytes((flags0 | 0x01,)) + rest


class ReplyCache:
    """Pre-encoded replies, bounded in entries and bytes; negative replies have their own,
    smaller bound so random names cannot push out the positive ones. Eviction is FIFO
    (insertion order): a hit must not pay for LRU bookkeeping.

    Invalidation costs the same however full the cache is: replies about one Service are
    dropped one by one when it changes (there are few); the structural and negative ones
    belong to an epoch (`structure` moves on every change, `soa` when the SOA serial moves)
    and are dropped when next looked up in a later one."""

    def __init__(
        self,
        *,
        max_entries: int = 20_000,
        max_negative: int = 4_096,
        max_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # for aging entries: the forward cache's clock
        self.max_entries = max_entries
        self.max_negative = max_negative
        self.max_bytes = max_bytes
        # The tables, by kind and EDNS variant: the hot path picks one by the query's
        # shape, then looks the key up.
        self.plain: dict[bytes, Entry] = {}
        self.edns: dict[bytes, Entry] = {}
        self.lazy: tuple[dict[bytes, Entry], dict[bytes, Entry]] = ({}, {})
        self.templates: tuple[dict[bytes, Template], dict[bytes, Template]] = ({}, {})
        self.aging: tuple[dict[bytes, Aging], dict[bytes, Aging]] = ({}, {})
        self._tables = cast(
            tuple[dict[bytes, Entry], ...],
            (self.plain, self.edns, *self.lazy, *self.templates, *self.aging),
        )
        self.structure = 0  # epoch of structural replies: moves on every data change
        self.soa = 0  # epoch of replies carrying our SOA: moves with the serial
        # Insertion order over every table: okey -> None; negatives apart.
        self._order: dict[OKey, None] = {}
        self._negative: dict[OKey, None] = {}
        self._by_dep: dict[tuple[str, str], dict[OKey, None]] = {}
        self.bytes = 0
        # (meta, proto, family, request size, DO) -> hits of entries already gone, waiting
        # for the next fold.
        self._retired: dict[tuple[EntryMeta, str, str, int, bool], int] = {}
        # Whole UDP queries after the ID -> (entry, the reply after the ID, odd key or 0):
        # a repeated query costs one lookup (see `remember`). Keys of lazy entries are
        # listed apart, as an epoch move invalidates them without dropping the entries.
        self.exact: dict[bytes, Exact] = {}
        # And for templates, by the query after the ID without its first label's octets
        # (the header and the reply's header only: the name's first label is the client's).
        self.exact_templates: dict[bytes, Exact] = {}
        # And TCP queries apart: the same bytes over UDP may need a smaller reply (or the
        # slow path), and are counted under another protocol. (Templates: UDP only.)
        self.exact_tcp: dict[bytes, Exact] = {}
        self.max_exact = max_entries
        self._exact_lazy: list[bytes] = []

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables)

    def current(self, entry: Entry) -> bool:
        """Whether a lazily invalidated entry is still valid (always, for the others)."""
        return (entry.epoch_structure < 0 or entry.epoch_structure == self.structure) and (
            entry.epoch_soa < 0 or entry.epoch_soa == self.soa
        )

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
        `question_len` bytes), keyed by the lower-case wire qname and the qtype as sent.
        `need`: the smallest EDNS payload the reply fits (0 = any). `rotations`: further
        encodings of the same reply with its records in another order (same header and
        size), served in turn after `reply`. A reply with an OPT must end with kdns's own,
        bare one (DO is set per hit). A negative reply carries our SOA."""
        tail = reply[12 + question_len :]
        entry = Entry(_headers(reply), tail, need, meta, dep)
        if rotations:  # the slow path has just served `reply`: the next hit gets the next
            entry.tails = (tail, *(r[12 + question_len :] for r in rotations))
            entry.tail = entry.tails[1]
            entry.turn = 1
        cost = len(tail) * (1 + len(rotations))
        if dep is not None and not meta.negative:
            self._add(EDNS if edns else PLAIN, main_key(key), entry, cost)
            return
        if dep is None:
            entry.epoch_structure = self.structure
        if meta.negative:
            entry.epoch_soa = self.soa
        self._add(LAZY | edns, main_key(key), entry, cost)

    def store_template(
        self,
        *,
        edns: bool,
        key: bytes,
        reply: bytes,
        question_len: int,
        need: int,
        meta: EntryMeta,
        absent: Callable[[bytes], bool],
    ) -> None:
        """Remember a negative `reply` for the siblings `absent` admits. `key`: the parent's
        lower-case wire name, the qtype and the first label's length (one octet). Valid
        while the SOA serial stays: `absent` reads the data live."""
        tail = reply[12 + question_len :]
        entry = Template(_headers(reply), tail, need, meta, absent)
        entry.epoch_soa = self.soa
        self._add(TEMPLATE | edns, key, entry, len(tail))

    def store_aging(
        self,
        *,
        edns: bool,
        key: bytes,
        reply: bytes,
        question_len: int,
        need: int,
        meta: EntryMeta,
        born: float,
        expires: float,
        offsets: tuple[int, ...],
    ) -> None:
        """Remember a relayed upstream `reply` until `expires`; `offsets`: where its
        records' TTLs sit, counted from the end of the question. Its header is served as
        stored, whatever the client's RD, as the forward cache serves it. Data changes in
        the cluster do not drop it (the forward cache would answer the same)."""
        head = reply[2:12]
        tail = reply[12 + question_len :]
        entry = Aging((head, head), tail, need, meta, born=born, expires=expires, offsets=offsets)
        self._add(AGING | edns, key, entry, len(tail))

    def _add(self, kind: int, key: bytes, entry: Entry, cost: int) -> None:
        table = self._tables[kind]
        okey = (kind, key)
        if key in table:
            self._drop(okey)
        entry.size = cost + len(key) + 200  # + overhead
        if entry.size > self.max_bytes:
            return
        table[key] = entry
        self._order[okey] = None
        if entry.dep is not None:
            self._by_dep.setdefault(entry.dep, {})[okey] = None
        if entry.meta.negative:
            self._negative[okey] = None
            while len(self._negative) > self.max_negative:
                self._drop(next(iter(self._negative)))
        self.bytes += entry.size
        while len(self._order) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._order)))

    def remember(
        self,
        query: bytes,
        entry: Entry,
        reply: bytes,
        okey: int,
        cut: int = 0,
        tail: bytes = b"",
        *,
        tcp: bool = False,
    ) -> None:
        """Serve `query` (a UDP query after its ID) with `reply` (the reply after its ID;
        for an aging entry, up to the end of the question) from `entry` while the entry is
        valid; `okey`: its `odd_key` without the family (the same bytes come over IPv4 and
        IPv6), 0 for the commonest shape. Everything `FastPath` checks before a hit is a
        function of these bytes, so the same bytes get the same reply: only the entry's
        validity can change, and dropping the entry (or moving the epochs, for a lazy one)
        forgets its queries; an aging entry's hit still checks its expiry. A template is
        remembered by `query` without its first label's octets, the reply is its header,
        `tail` what follows the question, and `cut` the query's bytes after the question;
        its hits still check the label. `tcp`: a query that came over TCP (whole, framed
        by the transport), kept in `exact_tcp`; not for templates.
        Not for rotating entries."""
        if (
            len(self.exact) + len(self.exact_templates) + len(self.exact_tcp) >= self.max_exact
            or len(self._exact_lazy) >= self.max_exact
        ):
            self._forget_exact()  # many spellings (0x20) or sizes: start over
        remembered = Exact(entry, reply, okey, cut, tail)
        if type(entry) is Aging:  # (`FastPath._refresh` puts the tail on)
            remembered.head = reply
            remembered.until = -1.0
        (self.exact_tcp if tcp else self._exact_map(entry))[query] = remembered
        keys = entry.exact
        if keys is None:
            entry.exact = [query]
        else:
            keys.append(query)
        if _lazy(entry):
            self._exact_lazy.append(query)

    def _exact_map(self, entry: Entry) -> dict[bytes, Exact]:
        return self.exact_templates if type(entry) is Template else self.exact

    def _forget_exact(self) -> None:
        for exact in (self.exact, self.exact_templates, self.exact_tcp):
            for found in exact.values():
                found.settle()
                found.entry.exact = None
            exact.clear()
        self._exact_lazy.clear()

    def _unlink_exact(self, entry: Entry, keys: list[bytes]) -> None:
        for exact in (self._exact_map(entry), self.exact_tcp):  # (keys of both protocols)
            for query in keys:
                found = exact.get(query)
                if found is not None and found.entry is entry:
                    found.settle()
                    del exact[query]
        entry.exact = None

    def drop(self, kind: int, key: bytes) -> None:
        """Forget one entry (e.g. found stale)."""
        self._drop((kind, key))

    def _drop(self, okey: OKey) -> None:
        kind, key = okey
        entry = self._tables[kind].pop(key, None)
        self._order.pop(okey, None)
        self._negative.pop(okey, None)
        if entry is not None:
            if entry.exact is not None:
                self._unlink_exact(entry, entry.exact)
            if entry.dep is not None:
                deps = self._by_dep.get(entry.dep)
                if deps is not None:
                    deps.pop(okey, None)
                    if not deps:
                        del self._by_dep[entry.dep]
            self._retire(entry)
            self.bytes -= entry.size

    def invalidate(self, services: Iterable[tuple[str, str]], *, negatives: bool) -> int:
        """Forget what a data change may have altered: the replies about the changed
        Services (now), every structural reply, and (when the SOA serial moved, since
        negative replies carry the SOA) every reply with our SOA (by moving the epochs).
        Returns how many were dropped now."""
        doomed: dict[OKey, None] = {}
        for service in services:
            doomed.update(self._by_dep.get(service, {}))
        for okey in doomed:
            self._drop(okey)
        for exact in (self.exact, self.exact_tcp):
            for query in self._exact_lazy:  # (lazy entries: their epoch is about to move)
                found = exact.get(query)
                if found is not None and _lazy(found.entry):
                    found.settle()
                    del exact[query]
                    found.entry.exact = None  # (its other queries are in the list too)
        self._exact_lazy.clear()
        self.structure += 1
        if negatives:
            self.soa += 1
        return len(doomed)

    def _retire(self, entry: Entry) -> None:
        meta = entry.meta
        retired = self._retired
        for hits, family in ((entry.hits_v4, "1"), (entry.hits_v6, "2")):
            if hits:
                k = (meta, "udp", family, meta.request_size, False)
                retired[k] = retired.get(k, 0) + hits
        if entry.odd:
            for okey, hits in entry.odd.items():
                proto = "tcp" if okey & _ODD_TCP else "udp"
                k = (meta, proto, "2" if okey & _ODD_V6 else "1", okey >> 3, bool(okey & _ODD_DO))
                retired[k] = retired.get(k, 0) + hits

    def clear(self, *, keep_aging: bool = False) -> None:
        """Forget every entry (their counts wait for the next fold), or every one but the
        aging entries, which do not depend on the cluster's data. Tables are emptied in
        place."""
        if keep_aging:
            local = [okey for okey in self._order if okey[0] & ~EDNS != AGING]
            for okey in local:
                self._drop(okey)
            self._forget_exact()  # (lazy keys whose entries survived the drops)
            return
        self._forget_exact()
        for table in self._tables:
            for entry in table.values():
                self._retire(entry)
            table.clear()
        self._order.clear()
        self._negative.clear()
        self._by_dep.clear()
        self.bytes = 0

    def fold(self, stats: Stats, *, seconds_per_hit: float) -> None:
        """Add hit counts to `stats` (CoreDNS's request/response/size/duration metrics, the
        DO requests, the forward cache's hits) and reset them."""
        for exact in (self.exact, self.exact_templates, self.exact_tcp):
            for found in exact.values():
                found.settle()
        for table in self._tables:
            for entry in table.values():
                if entry.hits_v4 or entry.hits_v6 or entry.odd:
                    self._retire(entry)
                    entry.hits_v4 = entry.hits_v6 = 0
                    entry.odd = None
        counts = self._retired
        self._retired = {}
        for (meta, proto, family, size, do), hits in counts.items():
            if proto == "udp" and size == meta.request_size:
                stats.count_cached(meta, family, hits, seconds_per_hit)
            else:
                stats.count_request(meta.zone, proto, family, meta.qtype, size, times=hits)
                stats.count_response(
                    meta.zone, proto, meta.rcode, meta.response_size, seconds_per_hit, times=hits
                )
            if do:
                stats.count_do_request(meta.zone, times=hits)
            if meta.cache is not None:
                stats.count_cache_hit(meta.cache, times=hits)


class FastPath:
    """The hot path; `kdns.serve.server.DnsServer` subclasses it and supplies `_slow`."""

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
        self._lazy_plain, self._lazy_edns = cache.lazy
        self._exact = cache.exact
        self._exact_templates = cache.exact_templates
        self._exact_tcp = cache.exact_tcp
        self._clock = cache.clock
        self._batch_seconds = 0.0
        self._batch_queries = 0

    def _slow(self, data: bytes, tcp: bool, family: str, client: Client) -> HandleResult:
        raise NotImplementedError

    @property
    def exact(self) -> dict[bytes, Exact]:
        """Replies by query bytes after the ID (`ReplyCache.remember`), for the transport:
        one is good while its `until` is later than `begin_batch()`'s time."""
        return self._exact

    def begin_batch(self) -> float:
        """Before the transport serves a batch from `exact`: catch up with data changes,
        and tell the time (the cache's clock)."""
        if (
            self._index.generation != self._generation
            or self._static.generation != self._static_generation
        ):
            self._check_generation()
        return self._clock()

    def _refresh(self, found: Exact) -> bool:
        """Bring a remembered relayed reply up to date: False once it has expired."""
        now = self._clock()
        if now < found.until:
            return True
        aging = cast(Aging, found.entry)
        tail = aging.tail_at(now)
        if tail is None or found.head is None:
            return False
        found.reply = found.head + tail
        found.until = min(aging.born + aging.aged + 1, aging.expires)
        return True

    def _remembered(self, found: Exact | None, data: bytes, family: str) -> bytes | None:
        """The reply to `data` if this very query was answered from the cache before
        (`found`, from an exact-query map), counted; None if not, or if it was a relayed
        reply that has expired (then the slow path asks upstream again)."""
        if found is None or (found.head is not None and not self._refresh(found)):
            return None
        if family == "1":
            found.v4 += 1
        else:
            found.v6 += 1
        return data[:2] + found.reply

    def _check_generation(self) -> None:
        """Catch up with data changes (the handler also records programming latency)."""
        if self.generation_moved():
            self.reset_generation()

    def handle(self, data: bytes, tcp: bool, family: str, client: Client = None) -> HandleResult:
        """Answer `data`: bytes now, None to drop, or an awaitable when forwarding."""
        if (
            self._index.generation != self._generation
            or self._static.generation != self._static_generation
        ):
            self._check_generation()  # drop what the changes may alter, then carry on
        if tcp:  # (a TCP query seen before: as a UDP one below, from its own table)
            remembered = self._remembered(self._exact_tcp.get(data[2:]), data, family)
            if remembered is not None:
                return remembered
            return self._general(data, tcp, family, client, False)
        remembered = self._remembered(self._exact.get(data[2:]), data, family)
        if remembered is not None:
            return remembered
        if self._exact_templates and len(data) > 13:
            n = data[12]
            found = self._exact_templates.get(data[2:13] + data[13 + n :])
            if found is not None:  # a sibling of this name was answered by a template
                templated = self._remembered_template(data, n, found, family)
                if templated is not None:
                    return templated
        end = data.find(0, 12)
        counts = data[4:12]
        if counts == _PLAIN:
            if len(data) != end + 5:
                return self._slow(data, tcp, family, client)
            table = self._plain
        elif counts == _WITH_OPT and len(data) == end + 16 and data[end + 5 : end + 8] == _OPT_HEAD:
            opt = data[end + 10 :]
            if opt == _OPT_TAIL:
                table = self._edns
            elif opt == _OPT_TAIL_DO:
                return self._do_hit(data, end, family, client)
            else:
                return self._general(data, tcp, family, client, False)
        else:
            return self._general(data, tcp, family, client, False)
        # byte 2: QR, opcode, AA, TC must be 0 (RD free); byte 3: only AD may be set.
        if data[2] > 1 or data[3] & 0xDF or data[end + 3 : end + 5] != _CLASS_IN:
            return self._slow(data, tcp, family, client)
        # The key: name and qtype lower-cased (0x20, D4; see `main_key`). bytes.lower() is
        # safe on wire names: label lengths (<= 63) are below "A".
        key = data[12 : end + 3].lower()
        entry = table.get(key)
        if entry is None:
            entry = (self._lazy_plain if table is self._plain else self._lazy_edns).get(key)
            cache = self.cache
            if entry is None or not (
                (entry.epoch_structure < 0 or entry.epoch_structure == cache.structure)
                and (entry.epoch_soa < 0 or entry.epoch_soa == cache.soa)
            ):  # (as `ReplyCache.current`, inline: negative replies are 5 % of the traffic)
                edns = table is self._edns
                templated = self._template_hit(data, end, edns, family)
                if templated is not None:
                    return templated
                qtype = data[end + 1 : end + 3]
                if qtype.lower() == qtype.upper() and key not in cache.aging[edns]:
                    # Nothing `_general` looks at could answer it (no entry by either key,
                    # no aging entry, no template): straight to the slow path. (A forwarded
                    # name asked for the first time: most of forwarding's traffic.)
                    return self._slow(data, tcp, family, client)
                return self._general(data, tcp, family, client, True)
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
            return b"".join((data[:2], entry.headers[data[2]], data[12 : end + 5], tail))
        reply = b"".join((entry.headers[data[2]], data[12 : end + 5], tail))
        self.cache.remember(data[2:], entry, reply, 0)
        return data[:2] + reply

    def _template_hit(self, data: bytes, end: int, edns: bool, family: str) -> bytes | None:
        """`handle`'s shapes (UDP, no OPT or a bare one without DO), for a name no entry
        has: the reply of a template that holds for it (a random-subdomain flood is all
        such names), or None to let `_general` look closer."""
        cache = self.cache
        templates = cache.templates[edns]
        n = data[12]
        if not templates or 13 + n > end:
            return None
        qtype = data[end + 1 : end + 3]
        if qtype.lower() != qtype.upper():  # (keys with a letter octet: see `main_key`)
            return None
        aging = cache.aging[edns]
        if aging and data[12 : end + 1].lower() + qtype in aging:
            return None  # (an entry of its own comes first, as in `_general`)
        template = templates.get(data[13 + n : end + 1].lower() + qtype + _LENGTHS[n])
        if (
            template is None
            or template.epoch_soa != cache.soa  # (templates depend on the SOA only)
            or not template.absent(data[13 : 13 + n].lower())
        ):
            return None
        if template.need and (not edns or int.from_bytes(data[end + 8 : end + 10]) < template.need):
            return None
        size = len(data)  # (a sibling's name may be longer or shorter: then an odd size)
        okey = _count(template, size, tcp=False, do=False, family=family)
        head = template.headers[data[2]]
        self.cache.remember(
            data[2:13] + data[13 + n :],
            template,
            head,
            okey & ~_ODD_V6,
            size - end - 5,
            template.tail,
        )
        return b"".join((data[:2], head, data[12 : end + 5], template.tail))

    def _remembered_template(self, data: bytes, n: int, found: Exact, family: str) -> bytes | None:
        """`_template_hit` for a query whose bytes but its first label's were seen before:
        only what depends on the label is checked again (the template may still hold)."""
        template = cast(Template, found.entry)
        cache = self.cache
        if template.epoch_soa != cache.soa or not template.absent(data[13 : 13 + n].lower()):
            return None
        qend = len(data) - found.cut
        aging = cache.aging[found.cut > 0]
        if aging and data[12 : qend - 4].lower() + data[qend - 4 : qend - 2] in aging:
            return None  # (an entry of its own comes first, as in `_general`)
        if family == "1":
            found.v4 += 1
        else:
            found.v6 += 1
        return b"".join((data[:2], found.reply, data[12:qend], found.tail))

    def _do_hit(self, data: bytes, end: int, family: str, client: Client) -> HandleResult:
        """`handle` for a bare OPT with DO set (resolvers that validate send these): the
        EDNS entry with DO echoed (RFC 3225 §3)."""
        if data[2] > 1 or data[3] & 0xDF or data[end + 3 : end + 5] != _CLASS_IN:
            return self._slow(data, False, family, client)
        entry = self._edns.get(data[12 : end + 3].lower())
        if entry is None:  # (the other tables are looked up there)
            return self._general(data, False, family, client, False)
        if entry.need and int.from_bytes(data[end + 8 : end + 10], "big") < entry.need:
            return self._slow(data, False, family, client)
        okey = _count(entry, len(data), tcp=False, do=True, family=family)
        tail = entry.tail
        if entry.tails is not None:
            entry.turn = turn = (entry.turn + 1) % len(entry.tails)
            entry.tail = entry.tails[turn]
        reply = b"".join((entry.headers[data[2]], data[12 : end + 5], tail[:-4], _DO, tail[-3:]))
        if entry.tails is None:
            self.cache.remember(data[2:], entry, reply, okey & ~_ODD_V6)
        return data[:2] + reply

    def _general(
        self,
        data: bytes,
        tcp: bool,
        family: str,
        client: Client,
        missed: bool,
    ) -> HandleResult:
        """Every other shape the cache may answer (see the module docstring), and the
        templates and aging entries; `missed`: the plain tables were looked up already."""
        size = len(data)
        end = data.find(0, 12)
        qend = end + 5
        if (
            end < 0
            or size < qend
            or data[4:10] != _ONE_QUESTION
            or data[2] > 1
            or data[3] & 0xDF
            or data[end + 3 : qend] != _CLASS_IN
        ):
            return self._slow(data, tcp, family, client)
        do = False
        payload = 0  # no OPT: replies up to 512 bytes (RFC 1035 §4.2.1)
        arcount = data[10:12]
        if arcount == _AR1:
            pos = qend + _OPT_SIZE
            # An OPT of EDNS version 0 (a higher one is BADVERS, RFC 6891 §6.1.3).
            if size < pos or data[qend : qend + 3] != _OPT_HEAD or data[qend + 6]:
                return self._slow(data, tcp, family, client)
            if size != pos + ((data[pos - 2] << 8) | data[pos - 1]):
                return self._slow(data, tcp, family, client)
            while pos < size:  # options: code, length, data; the slow path checks them so
                if pos + 4 > size:
                    return self._slow(data, tcp, family, client)
                pos += 4 + ((data[pos + 2] << 8) | data[pos + 3])
            if pos != size:
                return self._slow(data, tcp, family, client)
            edns = EDNS
            do = data[qend + 7] > 0x7F
            payload = (data[qend + 3] << 8) | data[qend + 4]
        elif arcount != _AR0 or size != qend:
            return self._slow(data, tcp, family, client)
        else:
            edns = PLAIN
        cache = self.cache
        qtype = data[end + 1 : end + 3]
        key = data[12 : end + 1].lower() + qtype
        mkey = key
        if qtype.lower() != qtype.upper():  # as `main_key`
            mkey = key + b"\x00"
            missed = False  # (`handle` looked up the other key)
        entry = None if missed else (cache.edns if edns else cache.plain).get(mkey)
        tail = None
        if entry is None and not missed:
            lazy = cache.lazy[edns].get(mkey)
            if lazy is not None:
                if cache.current(lazy):
                    entry = lazy
                else:
                    cache.drop(LAZY | edns, mkey)  # from before a change: the slow path
        if entry is None:
            aging = cache.aging[edns]
            if aging and not do:  # an upstream's reply to a query without DO
                found = aging.get(key)
                if found is not None:
                    tail = found.tail_at(cache.clock())
                    if tail is not None:
                        entry = found
            if entry is None:
                templates = cache.templates[edns]
                n = data[12]
                # The key holds the first label's length: only a length the slow path took
                # (at most 63) can match, and with the parent a name as long as that one.
                if not templates or 13 + n > end:
                    return self._slow(data, tcp, family, client)
                template = templates.get(data[13 + n : end + 1].lower() + qtype + _LENGTHS[n])
                if (
                    template is None
                    or template.epoch_soa != cache.soa  # (templates depend on the SOA only)
                    or not template.absent(data[13 : 13 + n].lower())
                ):
                    return self._slow(data, tcp, family, client)
                entry = template
        if entry.need and not tcp and payload < entry.need:
            return self._slow(data, tcp, family, client)
        if tail is None:
            tail = entry.tail
            if entry.tails is not None:
                entry.turn = turn = (entry.turn + 1) % len(entry.tails)
                entry.tail = entry.tails[turn]
        if do:  # kdns's own bare OPT ends the reply: echo DO (RFC 3225 §3)
            tail = b"".join((tail[:-4], _DO, tail[-3:]))
        okey = _count(entry, size, tcp=tcp, do=do, family=family)
        head = entry.headers[data[2]] + data[12:qend]
        if entry.tails is None:  # (see `remember`)
            kind = type(entry)
            if kind is Entry:
                self.cache.remember(data[2:], entry, head + tail, okey & ~_ODD_V6, tcp=tcp)
            elif kind is Aging:
                self.cache.remember(data[2:], entry, head, okey & ~_ODD_V6, tcp=tcp)
            elif kind is Template and not tcp:  # (by the query without its first label's octets)
                n = data[12]
                self.cache.remember(
                    data[2:13] + data[13 + n :],
                    entry,
                    entry.headers[data[2]],
                    okey & ~_ODD_V6,
                    size - qend,
                    tail,
                )
        return b"".join((data[:2], head, tail))

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
        if self._static.generation != self._static_generation:
            self.cache.clear()
        elif changed is None:
            self.cache.clear(keep_aging=True)
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
