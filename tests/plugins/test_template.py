"""`template`: answers built by regex and Go templates, as CoreDNS's template.go builds
them (the README's examples). Expected answers are zone-file lines."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from kdns.config.model import TemplateConfig
from kdns.dns.records import A, Rcode, Record, Reply, RType
from kdns.plugins.template import TemplatePlugin
from kdns.serve.chain import Response, link
from tests.config.corefiles import block, load
from tests.plugins.canned import Canned, make_request, resolve

NEXT = Response(Reply(rcode=Rcode.REFUSED, authoritative=False), plugin="next")

IP_TEMPLATES = (
    "template IN A example {",
    "  match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$",
    '  answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"',
    "  fallthrough",
    "}",
    "template IN PTR in-addr.arpa {",
    "  match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$",
    '  answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-'
    '{{ .Group.d }}.example."',
    "}",
    "template IN MX example {",
    "  match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$",
    '  answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"',
    '  additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"',
    '  authority "example. 60 IN NS ns0.example."',
    "  fallthrough",
    "}",
)
BLOCKING = (
    "template ANY AAAA {",
    "  rcode NOERROR",
    "}",
    "template ANY ANY invalid {",
    "  rcode NXDOMAIN",
    '  authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"',
    "}",
    "template IN TXT broken.example {",
    '  answer "{{ .Name }} 60 IN TXT {{ index .Match 3 }}"',
    "}",
    "template IN A failing.example {",
    "  rcode SERVFAIL",
    "}",
)


def make(*lines: str, chained: Response = NEXT) -> tuple[TemplatePlugin, Canned]:
    config = load(block(*lines)).blocks[0].plugins["template"]
    assert isinstance(config, TemplateConfig)
    plugin = TemplatePlugin(config)
    rest = Canned(chained)
    link([plugin, rest])
    return plugin, rest


Outcome = str | tuple[str, list[str], list[str], list[str]]


async def ask(plugin: TemplatePlugin, qname: str, qtype: int) -> Outcome:
    """ "next" when the query passed on, else (rcode, answer, authority, additional)."""
    response = await resolve(plugin.serve(make_request(qname, qtype)))
    if response.plugin == "next":
        return "next"
    assert response.reply is not None
    reply = response.reply
    return (
        reply.rcode.name,
        [str(r) for r in reply.answer],
        [str(r) for r in reply.authority],
        [str(r) for r in reply.additional],
    )


CASES: list[tuple[str, tuple[str, ...], str, int, Outcome]] = [
    ("a-from-groups", IP_TEMPLATES, "ip-10-1-2-3.example.", RType.A,
     ("NOERROR", ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"], [], [])),
    ("subdomain-matches-too", IP_TEMPLATES, "www.ip-10-1-2-3.example.", RType.A,
     ("NOERROR", ["www.ip-10-1-2-3.example. 60 IN A 10.1.2.3"], [], [])),
    ("name-lower-cased", IP_TEMPLATES, "IP-10-1-2-3.Example.", RType.A,
     ("NOERROR", ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"], [], [])),
    ("ptr", IP_TEMPLATES, "3.2.1.10.in-addr.arpa.", RType.PTR,
     ("NOERROR", ["3.2.1.10.in-addr.arpa. 60 IN PTR ip-10-1-2-3.example."], [], [])),
    ("mx-with-glue-and-ns", IP_TEMPLATES, "ip-10-1-2-3.example.", RType.MX,
     ("NOERROR", ["ip-10-1-2-3.example. 60 IN MX 10 ip-10-1-2-3.example."],
      ["example. 60 IN NS ns0.example."], ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"])),
    ("any-query-fits-the-first-type", IP_TEMPLATES, "ip-10-1-2-3.example.", RType.ANY,
     ("NOERROR", ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"], [], [])),
    ("no-regex-match-falls-through", IP_TEMPLATES, "www.example.", RType.A, "next"),
    ("no-regex-match-no-fallthrough", IP_TEMPLATES, "3.2.1.in-addr.arpa.", RType.PTR,
     ("SERVFAIL", [], [], [])),
    ("other-type-passes-on", IP_TEMPLATES, "ip-10-1-2-3.example.", RType.TXT, "next"),
    ("outside-every-zone", IP_TEMPLATES, "ip-10-1-2-3.example.org.", RType.A, "next"),
    ("aaaa-blocked", BLOCKING, "www.example.org.", RType.AAAA, ("NOERROR", [], [], [])),
    ("a-not-blocked", BLOCKING, "www.example.org.", RType.A, "next"),
    ("invalid-nxdomain", BLOCKING, "foo.invalid.", RType.A,
     ("NXDOMAIN", [], ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"], [])),
    ("rcode-servfail", BLOCKING, "failing.example.", RType.A, ("SERVFAIL", [], [], [])),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "qname", "qtype", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
async def test_answers(lines: tuple[str, ...], qname: str, qtype: int, expected: Outcome) -> None:
    plugin, _ = make(*lines)
    assert await ask(plugin, qname, qtype) == expected


async def test_answers_are_authoritative_and_kept_by_the_fast_path() -> None:
    plugin, _ = make(*IP_TEMPLATES)
    response = await resolve(plugin.serve(make_request("ip-10-1-2-3.example.", RType.A)))
    assert response.reply is not None
    assert (response.reply.authoritative, response.cacheable, response.plugin) == (
        True,
        True,
        "template",
    )


async def test_a_record_that_fails_to_render_is_servfail_with_the_reason() -> None:
    plugin, _ = make(*BLOCKING)
    response = await resolve(plugin.serve(make_request("x.broken.example.", RType.TXT)))
    assert response.rcode == Rcode.SERVFAIL
    assert response.error == (
        "template at Corefile:9: index .Match 3: out of range (the regex gave 1)"
    )


async def test_a_reply_that_reads_remote_is_not_kept() -> None:
    plugin, _ = make("template IN TXT {", '  answer "{{ .Name }} 60 IN TXT {{ .Remote }}"', "}")
    response = await resolve(plugin.serve(make_request("who.example.", RType.TXT)))
    assert response.reply is not None
    assert [str(r) for r in response.reply.answer] == ['who.example. 60 IN TXT "10.0.0.1"']
    assert not response.cacheable


async def test_a_cname_answer_to_a_is_followed_through_the_rest_of_the_chain() -> None:
    google = Record("google.com.", 300, A(IPv4Address("192.0.2.99")))
    plugin, rest = make(
        "template IN ANY foogle.com {",
        '  match "^foogle\\.com\\.$"',
        '  answer "foogle.com 60 IN CNAME google.com"',
        "}",
        chained=Response(Reply(answer=(google,)), plugin="forward"),
    )
    assert await ask(plugin, "foogle.com.", RType.A) == (
        "NOERROR",
        ["foogle.com. 60 IN CNAME google.com.", "google.com. 300 IN A 192.0.2.99"],
        [],
        [],
    )
    assert [r.question.qname for r in rest.seen] == ["google.com."]
    response = await resolve(plugin.serve(make_request("foogle.com.", RType.TXT)))
    assert response.reply is not None
    assert [str(r) for r in response.reply.answer] == ["foogle.com. 60 IN CNAME google.com."]
    assert len(rest.seen) == 1  # no chase for other types
