"""`loadbalance [round_robin]`: rotate the A, AAAA and MX records of each answer.

CoreDNS's *loadbalance* shuffles them at random; kdns rotates, so every record comes
first in turn and a client that asks n times sees each of n addresses first once. Like
CoreDNS it works on NOERROR replies only (never zone transfers), and reorders the answer
section as: CNAMEs first, in their order (stub resolvers such as glibc expect the chain
before the addresses), then the other records in their order, then the A and AAAA
records rotated, then the MX records rotated. Rotation k starts each of those two groups
at its k-th record; `rotations()` lists them, which is how the fast path keeps one
encoded variant per rotation (it sees `Response.rotate`).

Which rotation a query gets comes from a counter per question (name, type): one counter
for the whole plugin would let interleaved queries lock a name onto one order (a stub
asking A and AAAA in pairs would see only even counts for its A queries).

Structured replies are rebuilt (`dataclasses.replace`); relayed upstream replies are
reordered byte range by byte range (`kdns.dns.message.permute_answer`). A compression
pointer to the question or to a record that stays in place (a leading CNAME) is fine;
when one points into a record that a rotation may move (glue pointing into an MX
target), the reply is relayed as it came, in every rotation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace

from kdns.config.model import LoadbalanceConfig
from kdns.dns.message import (
    Layout,
    LayoutError,
    first_moved,
    movable_from,
    parse_layout,
    permute_answer,
)
from kdns.dns.records import Rcode, Reply, RType
from kdns.serve.chain import Plugin, Request, Response, Result, then

_ADDRESS = frozenset({RType.A, RType.AAAA})
_TRANSFERS = frozenset({RType.AXFR, RType.IXFR})
_MAX_COUNTERS = 4096  # questions tracked at once; the table restarts when full
_SIGNED = frozenset({24, 250})  # SIG(0), TSIG: cover the message bytes (RFC 2931, 8945)


def answer_order(types: Sequence[int], k: int) -> list[int]:
    """Indices of the answer records (of these types) in rotation `k`."""
    cname: list[int] = []
    rest: list[int] = []
    address: list[int] = []
    mx: list[int] = []
    for i, rtype in enumerate(types):
        if rtype == RType.CNAME:
            cname.append(i)
        elif rtype in _ADDRESS:
            address.append(i)
        elif rtype == RType.MX:
            mx.append(i)
        else:
            rest.append(i)
    return cname + rest + _rotated(address, k) + _rotated(mx, k)


def _rotated(items: list[int], k: int) -> list[int]:
    if len(items) < 2:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def period(types: Sequence[int]) -> int:
    """How many distinct rotations an answer of these types has."""
    addresses = sum(1 for t in types if t in _ADDRESS)
    mx = sum(1 for t in types if t == RType.MX)
    return math.lcm(max(addresses, 1), max(mx, 1))


def _rotatable(reply: Reply) -> bool:
    return reply.rcode == Rcode.NOERROR and len(reply.answer) > 1


def rotate_reply(reply: Reply, k: int) -> Reply:
    """`reply` in rotation `k` (itself when there is nothing to reorder)."""
    if not _rotatable(reply):
        return reply
    order = answer_order([r.rtype for r in reply.answer], k)
    if order == list(range(len(order))):
        return reply
    return replace(reply, answer=tuple(reply.answer[i] for i in order))


def rotations(reply: Reply, n: int) -> list[Reply]:
    """The first `n` distinct rotations of `reply` (fewer when it has fewer), in the
    order successive queries get them: the plugin's k-th answer for a question is
    `rotations(reply, p)[k % p]` with p the number of rotations."""
    if n <= 0:
        return []
    if not _rotatable(reply):
        return [reply]
    count = min(n, period([r.rtype for r in reply.answer]))
    return [rotate_reply(reply, k) for k in range(count)]


def _wire_layout(message: bytes) -> Layout | None:
    """The layout of a relayed reply worth reordering: NOERROR, two or more answer
    records, parsable, not signed. None otherwise."""
    if len(message) < 12 or message[3] & 0x0F or message[6:8] in (b"\x00\x00", b"\x00\x01"):
        return None
    try:
        layout = parse_layout(message)
    except LayoutError:
        return None
    if layout.extended_rcode(message) or any(rr.rtype in _SIGNED for rr in layout.additional):
        return None
    return layout


def _wire_plan(message: bytes) -> tuple[Layout, list[int], int] | None:
    """What rotating a relayed reply takes: its layout, answer types and number of
    rotations; None when it is left as it came (see `rotate_wire`)."""
    layout = _wire_layout(message)
    if layout is None:
        return None
    types = [rr.rtype for rr in layout.answer]
    cycle = period(types)
    # Rotations 0 and 1 differ at the first rotating record, so the first record either
    # moves is the first any rotation moves; if the records from there on can be put in
    # any order, every rotation is safe, and if not, none is used.
    first = min(first_moved(answer_order(types, 0)), first_moved(answer_order(types, 1)))
    if not movable_from(layout, first):
        return None
    return layout, types, cycle


def rotate_wire(message: bytes, k: int) -> bytes:
    """A relayed reply in rotation `k`; the same bytes when it is not NOERROR, cannot be
    laid out, is signed, or a compression pointer forbids moving its records (then no
    rotation is used, so successive replies do not alternate between orders)."""
    plan = _wire_plan(message)
    if plan is None:
        return message
    layout, types, _ = plan
    return permute_answer(message, layout, answer_order(types, k)) or message


class LoadbalancePlugin(Plugin):
    """CoreDNS's `loadbalance` with the `round_robin` policy (see the module docstring)."""

    name = "loadbalance"

    def __init__(self, config: LoadbalanceConfig) -> None:
        super().__init__()
        if config.policy != "round_robin":
            raise ValueError(
                f"{config.origin}: loadbalance: policy {config.policy!r} is not supported; "
                "use round_robin"
            )
        self._counters: dict[tuple[str, int], int] = {}

    def serve(self, request: Request) -> Result:
        key = (request.lname, request.qtype)  # the question as asked
        if key[1] in _TRANSFERS:
            return self.next.serve(request)
        return then(self.next.serve(request), functools.partial(self._balance, key))

    def _next(self, key: tuple[str, int]) -> int:
        counters = self._counters
        k = counters.get(key)
        if k is None:
            if len(counters) >= _MAX_COUNTERS:
                counters.clear()
            k = 0
        counters[key] = k + 1
        return k

    def _balance(self, key: tuple[str, int], response: Response) -> Response:
        # A copy, never an edit: the response may be an object a plugin further down
        # keeps (cache).
        if response.reply is not None:
            return self._balance_reply(key, response, response.reply)
        assert response.wire is not None
        return self._balance_wire(key, response, response.wire)

    def _balance_reply(self, key: tuple[str, int], response: Response, reply: Reply) -> Response:
        if not _rotatable(reply):
            return response
        cycle = period([r.rtype for r in reply.answer])
        rotated = rotate_reply(reply, self._next(key) if cycle > 1 else 0)
        rotate = response.rotate or cycle > 1  # even when this rotation is the original order
        if rotated is reply and rotate == response.rotate:
            return response
        return replace(response, reply=rotated, rotate=rotate)

    def _balance_wire(self, key: tuple[str, int], response: Response, wire: bytes) -> Response:
        plan = _wire_plan(wire)
        if plan is None:
            return response
        layout, types, cycle = plan
        order = answer_order(types, self._next(key) if cycle > 1 else 0)
        moved = permute_answer(wire, layout, order) or wire
        rotate = response.rotate or cycle > 1  # even when this rotation is the original order
        if moved is wire and rotate == response.rotate:
            return response
        return replace(response, wire=moved, rotate=rotate)


__all__ = [
    "LoadbalancePlugin",
    "answer_order",
    "period",
    "rotate_reply",
    "rotate_wire",
    "rotations",
]
