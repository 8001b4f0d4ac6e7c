"""A fake rest-of-chain that returns canned responses, and requests built from real bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from kdns.dns.wire import build_query, decode_query
from kdns.serve.chain import Plugin, Request, Response, Result


class Canned(Plugin):
    """Answers every request with `response`, now or (`pending`) after yielding once."""

    name = "canned"

    def __init__(self, response: Response, *, pending: bool = False) -> None:
        super().__init__()
        self.response = response
        self.pending = pending
        self.seen: list[Request] = []

    def serve(self, request: Request) -> Result:
        self.seen.append(request)
        if self.pending:
            return self._later()
        return self.response

    async def _later(self) -> Response:
        await asyncio.sleep(0)
        return self.response


async def resolve(result: Result) -> Response:
    """The response of a plugin's `serve`, awaited when it is pending."""
    if isinstance(result, Response):
        return result
    assert isinstance(result, Awaitable)
    return await result


def make_request(
    qname: str,
    qtype: int,
    *,
    qid: int = 1,
    tcp: bool = False,
    client: tuple[str, int] | None = ("10.0.0.1", 40000),
    data: bytes | None = None,
) -> Request:
    """A request as the server would build it from the query bytes."""
    if data is None:
        data = build_query(qname, qtype, qid=qid)
    return Request(
        data=data,
        query=decode_query(data),
        tcp=tcp,
        family="1",
        max_size=65535 if tcp else 1232,
        zone=".",
        client=client,
    )
