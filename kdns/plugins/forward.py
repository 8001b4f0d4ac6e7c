"""`forward FROM TO...`: names under FROM go to the upstream resolvers (CoreDNS `forward`).

The exchange itself (failover, health, `max_concurrent`, RFC 5452 checks) is the
`Forwarder`'s (`kdns.upstream.forward`). Names outside FROM pass to the next plugin. When no
upstream answers, the reply is SERVFAIL and says why for the `errors` plugin.
"""

from __future__ import annotations

from kdns.config.model import ForwardConfig
from kdns.dns.records import Rcode, Reply
from kdns.observe.stats import Stats
from kdns.plugins.kubernetes import in_zone
from kdns.serve.chain import Plugin, Request, Response, Result
from kdns.upstream.forward import Forwarder


class ForwardPlugin(Plugin):
    name = "forward"

    def __init__(self, config: ForwardConfig, *, stats: Stats) -> None:
        super().__init__()
        self.config = config
        self.forwarder = Forwarder(
            tuple(u.addr for u in config.to),
            stats=stats,
            max_concurrent=config.max_concurrent,
        )

    def serve(self, request: Request) -> Result:
        if not in_zone(request.question.lname, self.config.from_zone):
            return self.next.serve(request)
        return self._forward(request)

    async def _forward(self, request: Request) -> Response:
        via: list[str] = []
        got = await self.forwarder.forward(request.data, request.query, tcp=request.tcp, via=via)
        if got is None or len(got) < 12:
            tried = ", ".join(str(u.addr) for u in self.config.to)
            return Response(
                Reply(rcode=Rcode.SERVFAIL, authoritative=False),
                plugin=self.name,
                error=f"no upstream answered (tried {tried})",
            )
        return Response(wire=got, plugin=self.name, upstream=via[0] if via else None)

    async def close(self) -> None:
        await self.forwarder.close()
