"""`loop`: finds a forwarding loop at start and stops kdns (CoreDNS `loop`).

At start, once kdns listens, `probe()` sends `<random>.<random>.<zone> HINFO` (the first
zone of the block) to kdns's own listener, once a second for up to 30 s until an answer
comes back. The plugin counts every arrival of that name; an upstream that forwards back to
kdns, directly or through other forwarders, makes it arrive again and again, and the third
arrival is a loop: `on_loop` is called with a one-line reason and kdns exits non-zero (as
CoreDNS halts). Two seconds after the first answer the plugin disables itself, so a probe
name can never become a query of death later.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from typing import Final

from kdns.config.settings import HostPort
from kdns.dns.records import Rcode, Reply, RType
from kdns.dns.wire import build_query
from kdns.dns.wire.common import TYPE_HINFO
from kdns.serve.chain import Plugin, Request, Response, Result

log = logging.getLogger(__name__)

THRESHOLD: Final = 2  # seen more than twice: a loop
PROBE_SECONDS: Final = 30.0


def probe_name(zone: str) -> str:
    labels = f"{secrets.randbits(62)}.{secrets.randbits(62)}"
    return f"{labels}." if zone == "." else f"{labels}.{zone}"


class LoopPlugin(Plugin):
    name = "loop"

    def __init__(self, zone: str, *, on_loop: Callable[[str], None]) -> None:
        super().__init__()
        self.zone = zone
        self.qname = probe_name(zone)
        self.seen = 0
        self.disabled = False
        self.on_loop = on_loop
        self.listen: HostPort | None = None
        self.peer: tuple[str, int] | None = None

    def serve(self, request: Request) -> Result:
        if (
            not self.disabled
            and request.question.qtype == TYPE_HINFO
            and request.question.lname == self.qname
        ):
            self.seen += 1
            if self.seen > THRESHOLD:
                self.disabled = True
                why = "forwarding loop"
                source = f"{request.client[0]}:{request.client[1]}" if request.client else "unknown"
                self.on_loop(
                    f"plugin/loop: loop ({source} -> {self.listen}) detected for zone "
                    f'"{self.zone}": the probe "HINFO {self.qname}" came back {self.seen} '
                    "times; an upstream forwards to kdns (e.g. a node resolver at "
                    "127.0.0.53): point forward at a real resolver"
                )
                # End the loop here instead of sending the probe round once more.
                return Response(
                    Reply(rcode=Rcode.SERVFAIL, authoritative=False), plugin=self.name, error=why
                )
        return self.next.serve(request)

    async def probe(self, listen: HostPort, *, deadline: float = PROBE_SECONDS) -> None:
        """Send the probe to ourselves until answered (or `deadline` seconds pass)."""
        self.listen = listen
        host = listen.host or "127.0.0.1"
        if host in ("0.0.0.0",):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        query = build_query(self.qname, RType.HINFO, qid=secrets.randbits(16))
        try:
            while loop.time() < end and not self.disabled:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                try:
                    sock.connect((host, listen.port))
                    sock.send(query)
                    async with asyncio.timeout(2.0):
                        await loop.sock_recv(sock, 65535)
                    await asyncio.sleep(2.0)  # let a loop in flight finish coming back
                    return
                except (TimeoutError, OSError) as exc:
                    # As CoreDNS: a probe that got no answer (a silent upstream) starts the
                    # count again, so three slow tries are not taken for a loop. A real loop
                    # brings the probe back three times within one try.
                    self.seen = 0
                    why = type(exc).__name__
                    log.info("loop probe to %s:%d got no answer yet (%s)", host, listen.port, why)
                    await asyncio.sleep(1.0)
                finally:
                    sock.close()
        finally:
            self.disabled = True
