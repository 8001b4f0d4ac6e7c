"""`bufsize [SIZE]`: an EDNS UDP payload size above SIZE is lowered to SIZE before the
query goes on (CoreDNS `bufsize`), against IP fragmentation.

Three effects, as in CoreDNS, where the query message itself is changed: kdns truncates a
UDP reply at SIZE (`Request.max_size`); the query a plugin relays (`forward`) carries
SIZE, so upstreams fit their replies to it; and our reply's OPT advertises SIZE
(`Request.payload`). Queries without an OPT are left alone (their limit is 512).
"""

from __future__ import annotations

from kdns.config.model import BufsizeConfig
from kdns.dns.wire import with_payload
from kdns.serve.chain import Plugin, Request, Result


class BufsizePlugin(Plugin):
    name = "bufsize"

    def __init__(self, config: BufsizeConfig) -> None:
        super().__init__()
        self.size = config.size

    def serve(self, request: Request) -> Result:
        edns = request.query.edns
        if edns is not None:
            size = self.size
            request.payload = min(request.payload, size)
            if edns.payload > size:
                request.data, request.query = with_payload(request.data, request.query, size)
                if not request.tcp:
                    request.max_size = min(request.max_size, size)
        return self.next.serve(request)
