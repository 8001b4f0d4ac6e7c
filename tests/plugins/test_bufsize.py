"""`bufsize`: a client's EDNS payload size above SIZE is lowered to SIZE before the query
goes on (CoreDNS's bufsize.go): the query bytes a relaying plugin sends, the limit the
server truncates UDP replies at, and what our OPT advertises. Queries without an OPT, and
smaller sizes, are left alone."""

from __future__ import annotations

import pytest

from kdns.config.model import BufsizeConfig
from kdns.dns.records import Reply, RType
from kdns.plugins.bufsize import BufsizePlugin
from kdns.serve.chain import Response, link
from tests.dns.test_wire import make_query, opt_rr
from tests.plugins.canned import Canned, make_request, resolve


@pytest.mark.parametrize(
    ("size", "opt", "tcp", "payload", "max_size", "advertised"),
    [
        (1100, opt_rr(4096, do=True), False, 1100, 1100, 1100),
        (1100, opt_rr(1000), False, 1000, 1232, 1100),
        (4096, opt_rr(4096), False, 4096, 1232, 1232),  # never raised above our 1232
        (1100, opt_rr(4096), True, 1100, 65535, 1100),  # TCP has no UDP limit
        (1100, None, False, None, 512, 1232),
    ],
    ids=["lowered", "smaller-kept", "at-most-ours", "tcp", "no-opt"],
)
async def test_payload_limit_and_advertisement(
    size: int,
    opt: bytes | None,
    tcp: bool,
    payload: int | None,
    max_size: int,
    advertised: int,
) -> None:
    data = make_query("example.org", opt=opt)
    request = make_request("example.org.", RType.A, data=data, tcp=tcp)
    request.max_size = 65535 if tcp else (512 if opt is None else 1232)
    canned = Canned(Response(Reply()))
    plugin = BufsizePlugin(BufsizeConfig(size))
    link([plugin, canned])
    await resolve(plugin.serve(request))
    (seen,) = canned.seen
    edns = seen.query.edns
    assert (edns.payload if edns is not None else None) == payload
    if opt is not None and payload is not None:
        assert seen.data == make_query(
            "example.org", opt=opt[:3] + payload.to_bytes(2, "big") + opt[5:]
        )
    else:
        assert seen.data == data
    assert (seen.max_size, seen.payload) == (max_size, advertised)
    assert seen.question is seen.query.question
