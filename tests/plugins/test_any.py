"""`any`: ANY queries get one HINFO record, as CoreDNS's any.go writes it (RFC 8482 §4.2);
other types pass on."""

from __future__ import annotations

import dnslib

from kdns.config.model import AnyConfig
from kdns.dns.records import Rcode, Reply, RType
from kdns.dns.wire import encode_reply
from kdns.plugins.any import AnyPlugin
from kdns.serve.chain import Response, link
from tests.plugins.canned import Canned, make_request, resolve

NEXT = Response(Reply(rcode=Rcode.REFUSED, authoritative=False), plugin="next")


def make() -> AnyPlugin:
    plugin = AnyPlugin(AnyConfig())
    link([plugin, Canned(NEXT)])
    return plugin


async def test_any_is_answered_with_the_rfc8482_hinfo_under_the_asked_name() -> None:
    request = make_request("Example.ORG.", RType.ANY)
    response = await resolve(make().serve(request))
    assert response.reply is not None
    assert (response.plugin, response.cacheable, response.reply.authoritative) == (
        "any",
        True,
        False,
    )
    assert [str(r) for r in response.reply.answer] == [
        'Example.ORG. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"'
    ]
    out = encode_reply(request.query, response.reply, max_size=512)
    (record,) = dnslib.DNSRecord.parse(out).rr
    assert (record.rtype, record.ttl, bytes(record.rdata.data)) == (
        13,
        8482,
        b"\x0dANY obsoleted\x0cSee RFC 8482",  # two character-strings (RFC 1035 §3.3.2)
    )


async def test_other_types_pass_on() -> None:
    for qtype in (RType.A, RType.HINFO, RType.TXT):
        response = await resolve(make().serve(make_request("example.org.", qtype)))
        assert response.plugin == "next"
