"""Optional response-rate limiting (RRL) per client subnet, for UDP replies only.

Off by default, as in CoreDNS (its `ratelimit`/RRL plugins are opt-in). When on, each
client subnet (/24 for IPv4, /56 for IPv6, like BIND's defaults) has a token bucket that
refills at `responses_per_second` and holds at most `burst` tokens. A reply that finds a
token is sent as is; otherwise it is "limited": every `slip`-th limited reply is sent
truncated (TC=1, empty answer) so a real client behind a spoofed or busy subnet retries
over TCP (where source addresses cannot be spoofed), and the others are dropped. `slip=0`
drops every limited reply; `slip=1` truncates every one (BIND's `slip` semantics; its
default is 2). This bounds what a spoofed-source flood can reflect at a victim.

Owns: the buckets (bounded in number), the subnet key of an address, and the truncated
"slip" form of a reply (header + question + a bare OPT when the reply ends with one).
Does not: decide what to answer, look at queries, log per packet, or touch sockets; TCP
replies are never limited. Called by `kdns.serve.transport.UdpServer` only when configured.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_TC = 0x02  # in the reply's third byte (RFC 1035 §4.1.1)
_BARE_OPT_HEAD = b"\x00\x00\x29"  # root owner, TYPE 41 (RFC 6891 §6.1.2)


def subnet_key(address: str, *, ipv4_prefix: int = 24, ipv6_prefix: int = 56) -> bytes:
    """The bucket key of a client address: its network prefix as bytes (prefixes are
    whole octets, so the key is a byte slice of the packed address). An address that
    does not parse (it never comes from a socket) is its own key."""
    try:
        if ":" in address:
            packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
            if packed[:12] == b"\x00" * 10 + b"\xff\xff":  # IPv4-mapped: treat as IPv4
                return b"4" + packed[12 : 12 + ipv4_prefix // 8]
            return b"6" + packed[: ipv6_prefix // 8]
        return b"4" + socket.inet_aton(address)[: ipv4_prefix // 8]
    except OSError:
        return b"?" + address.encode("utf-8", "replace")


def slip_reply(reply: bytes) -> bytes | None:
    """`reply` cut to its header and question with TC=1 and no records, keeping a bare
    trailing OPT (RFC 6891 §7: a reply to an EDNS query carries OPT). None when the reply
    is not a well-formed message we can cut (then it is dropped instead)."""
    if len(reply) < 12:
        return None
    qd = (reply[4] << 8) | reply[5]
    pos = 12
    if qd:
        if qd != 1:
            return None
        n = len(reply)
        while pos < n and reply[pos] != 0:
            if reply[pos] >= 0x40:  # questions are never compressed in our replies
                return None
            pos += 1 + reply[pos]
        pos += 5
        if pos > n:
            return None
    opt = b""
    ar = (reply[10] << 8) | reply[11]
    tail = reply[-11:]
    if ar and len(reply) >= pos + 11 and tail[:3] == _BARE_OPT_HEAD and tail[-2:] == b"\0\0":
        opt = tail
    head = (
        reply[:2] + bytes((reply[2] | _TC, reply[3])) + struct.pack("!4H", qd, 0, 0, int(bool(opt)))
    )
    return head + reply[12:pos] + opt


class RateLimiter:
    """Token buckets per client subnet; `limit()` is called once per UDP reply."""

    def __init__(
        self,
        responses_per_second: float,
        *,
        slip: int = 2,
        burst: float | None = None,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
        max_subnets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if responses_per_second <= 0:
            raise ValueError("responses_per_second must be positive")
        if slip < 0:
            raise ValueError("slip must be 0 (never) or more")
        if ipv4_prefix % 8 or ipv6_prefix % 8 or not 8 <= ipv4_prefix <= 32:
            raise ValueError("prefixes must be whole octets")
        self.rate = float(responses_per_second)
        self.burst = float(burst if burst is not None else responses_per_second)
        self.slip = slip
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self.max_subnets = max_subnets
        self._clock = clock
        # key -> [tokens, last refill time, limited replies so far]; insertion order.
        self._buckets: dict[bytes, list[float]] = {}
        self.sent = 0
        self.slipped = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def limit(self, address: str, reply: bytes) -> bytes | None:
        """The bytes to send to `address` for `reply`: itself, its slip form, or None."""
        key = subnet_key(address, ipv4_prefix=self.ipv4_prefix, ipv6_prefix=self.ipv6_prefix)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_subnets:
                self._prune(now)
            bucket = self._buckets[key] = [self.burst, now, 0.0]
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            bucket[0] = tokens if tokens < self.burst else self.burst
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            self.sent += 1
            return reply
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            out = slip_reply(reply)
            if out is not None:
                self.slipped += 1
                return out
        self.dropped += 1
        return None

    def _prune(self, now: float) -> None:
        """Make room: forget subnets whose bucket has refilled (they are not limited, so
        forgetting them changes nothing), then, if still full, the oldest half."""
        full_after = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b[1] >= full_after]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= self.max_subnets:
            for k in list(self._buckets)[: max(1, len(self._buckets) // 2)]:
                del self._buckets[k]
            log.warning(
                "rrl: more than %d client subnets limited at once; forgot the oldest half",
                self.max_subnets,
            )


__all__ = ["RateLimiter", "slip_reply", "subnet_key"]
