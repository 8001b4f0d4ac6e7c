"""`forward FROM TO... { ... }`: names under FROM go to the upstream resolvers (CoreDNS
`forward`).

The exchange itself (policy, failover, health checks, `max_concurrent`, UDP/TCP/TLS, the
RFC 5452 checks) is the `Forwarder`'s (`kdns.upstream.forward`). Names outside FROM, and
names under an `except` zone (FROM itself is always forwarded), pass to the next plugin.
When no upstream answers, the reply is SERVFAIL and says why for the `errors` plugin.
"""

from __future__ import annotations

from kdns.config.model import ForwardConfig
from kdns.dns.records import Rcode, Reply
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result, Staged
from kdns.upstream.forward import Forwarder, UpstreamError


class ForwardPlugin(Plugin):
    name = "forward"

    def __init__(self, config: ForwardConfig, *, stats: Stats) -> None:
        """Raises ValueError (one line naming the file) when `tls` files cannot be loaded."""
        super().__init__()
        self.config = config
        self.forwarder = Forwarder.from_config(config, stats=stats)
        self._from = config.from_zone
        self._except = config.except_zones

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if not in_zone(lname, self._from) or (
            self._except and lname != self._from and any(in_zone(lname, z) for z in self._except)
        ):
            return self.next.serve(request)
        # A future, no coroutine: the forwarder resolves it from its socket callbacks, and
        # the plugins around this one (and the server) add their stages to it. (The
        # forwarder's loop: asyncio.get_running_loop() costs a getpid(2) per call.)
        forwarder = self.forwarder
        return forwarder.forward(
            request.data,
            request.query,
            tcp=request.tcp,
            done=self._response,
            future=Staged(loop=forwarder.event_loop()),
        )

    def _response(self, got: bytes | UpstreamError, upstream: str | None) -> Response:
        if isinstance(got, bytes):
            if len(got) >= 12:
                return Response(wire=got, plugin=self.name, upstream=upstream)
            got = UpstreamError("a reply shorter than a DNS header")
        return Response(
            Reply(rcode=Rcode.SERVFAIL, authoritative=False),
            plugin=self.name,
            error=f"no upstream answered: {got}",
        )

    async def close(self) -> None:
        await self.forwarder.close()
