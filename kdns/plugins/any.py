"""`any`: ANY queries get one HINFO record instead of everything the name owns (RFC 8482
§4.2, CoreDNS `any`).

The record is CoreDNS's: owner the question as asked, TTL 8482, CPU "ANY obsoleted", OS
"See RFC 8482"; the reply is not authoritative (CoreDNS sets no AA). Other types pass on.
The reply depends on nothing else, so the fast path may keep it.
"""

from __future__ import annotations

from kdns.config.model import AnyConfig
from kdns.dns.records import HINFO, Record, Reply, RType
from kdns.serve.chain import Plugin, Request, Response, Result

TTL = 8482
RDATA = HINFO("ANY obsoleted", "See RFC 8482")


class AnyPlugin(Plugin):
    name = "any"

    def __init__(self, config: AnyConfig) -> None:
        super().__init__()
        self.config = config

    def serve(self, request: Request) -> Result:
        question = request.question
        if question.qtype != RType.ANY:
            return self.next.serve(request)
        reply = Reply(authoritative=False, answer=(Record(question.qname, TTL, RDATA),))
        return Response(reply, plugin=self.name, cacheable=True)
