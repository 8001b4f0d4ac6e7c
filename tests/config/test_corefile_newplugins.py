"""`hosts`, `rewrite`, `template`, `any` and `bufsize` in a Corefile: the syntax, options
and defaults of their CoreDNS READMEs and setup.go; what kdns cannot honour is refused
with FILE:LINE and the option's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.model import (
    AnswerRule,
    AnyConfig,
    BufsizeConfig,
    FileConfig,
    HostsConfig,
    NameMatch,
    Origin,
    PluginConfig,
    RewriteConfig,
    RewriteEdns0,
    RewriteMatch,
    RewriteName,
    RewriteRcode,
    RewriteRule,
    RewriteTtl,
    RewriteType,
    Template,
    TemplateConfig,
)
from tests.config.corefiles import block, load, problems

O2 = Origin("Corefile", 2)
O3 = Origin("Corefile", 3)


def plugin(name: str, *lines: str, key: str = ".:53") -> PluginConfig:
    return load(block(*lines, key=key)).blocks[0].plugins[name]


def refused(*lines: str, key: str = ".:53") -> list[str]:
    return problems(block(*lines, key=key))


def rules(*actions: object, stop: bool = True) -> RewriteConfig:
    return RewriteConfig(
        rules=tuple(
            RewriteRule(a, stop=stop, origin=Origin("Corefile", 2 + i))  # type: ignore[arg-type]
            for i, a in enumerate(actions)
        ),
        origin=O2,
    )


def exact(name: str) -> NameMatch:
    return NameMatch(RewriteMatch.EXACT, name)


# ---- accepted ----------------------------------------------------------------------------

ACCEPTED: list[tuple[tuple[str, ...], str, str, PluginConfig]] = [
    # bufsize and any
    (("bufsize",), ".:53", "bufsize", BufsizeConfig(1232, origin=O2)),
    (("bufsize 512",), ".:53", "bufsize", BufsizeConfig(512, origin=O2)),
    (("bufsize 4096",), ".:53", "bufsize", BufsizeConfig(4096, origin=O2)),
    (("any",), ".:53", "any", AnyConfig(origin=O2)),
    # hosts: /etc/hosts and the block's zones by default
    (("hosts",), "example.org:53", "hosts", HostsConfig(zones=("example.org.",), origin=O2)),
    (
        ("hosts /etc/coredns/NodeHosts example.org 10.0.0.0/8 {", "  ttl 60", "  no_reverse",
         "  reload 0", "  fallthrough in-addr.arpa", "  fallthrough_unsupported", "}"),
        ".:53",
        "hosts",
        HostsConfig(
            path=Path("/etc/coredns/NodeHosts"),
            zones=("example.org.", "10.in-addr.arpa."),
            ttl=60,
            reverse=False,
            reload=0.0,
            fallthrough=("in-addr.arpa.",),
            fallthrough_unsupported=True,
            origin=O2,
        ),
    ),
    (
        ("hosts {", "  10.0.0.1 example.org www.example.org", "  fd00::1%eth0 v6.example.org",
         "  fallthrough", "}"),
        ".:53",
        "hosts",
        HostsConfig(
            inline=("10.0.0.1 example.org www.example.org", "fd00::1%eth0 v6.example.org"),
            fallthrough=(),
            origin=O2,
        ),
    ),
    (
        ("hosts {", "  192.0.2.1 *.apps.example.org", "  reload 1m30s", "}"),
        ".:53",
        "hosts",
        HostsConfig(inline=("192.0.2.1 *.apps.example.org",), reload=90.0, origin=O2),
    ),
    # rewrite: each line one rule; names normalized as CoreDNS's Normalize()
    (
        ("rewrite name Foo.Example.ORG foo.default.svc.cluster.local",),
        ".:53",
        "rewrite",
        rules(RewriteName(exact("foo.example.org."), "foo.default.svc.cluster.local.", auto=True)),
    ),
    (
        ("rewrite continue name suffix .schmoogle.com. .google.com. answer auto",
         "rewrite stop name prefix foo bar answer name ^bar\\.(.*) foo.{1}",
         "rewrite name substring us-west-1.example.org us-west-1.consul"),
        ".:53",
        "rewrite",
        RewriteConfig(
            rules=(
                RewriteRule(
                    RewriteName(NameMatch(RewriteMatch.SUFFIX, ".schmoogle.com."), ".google.com.",
                                auto=True),
                    stop=False, origin=O2,
                ),
                RewriteRule(
                    RewriteName(NameMatch(RewriteMatch.PREFIX, "foo."), "bar.",
                                answers=(AnswerRule("name", "^bar\\.(.*)", "foo.{1}."),)),
                    origin=O3,
                ),
                RewriteRule(
                    RewriteName(NameMatch(RewriteMatch.SUBSTRING, "us-west-1.example.org."),
                                "us-west-1.consul."),
                    origin=Origin("Corefile", 4),
                ),
            ),
            origin=O2,
        ),
    ),
    (
        ("rewrite stop {", "  name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul",
         "  answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks",
         "  answer value (.*)\\.service\\.consul\\. {1}.coredns.rocks.", "}"),
        ".:53",
        "rewrite",
        rules(
            RewriteName(
                NameMatch(RewriteMatch.REGEX, "(.*)-(us-west-1)\\.coredns\\.rocks"),
                "{1}.service.{2}.consul.",
                answers=(
                    AnswerRule("name", "(.*)\\.service\\.(us-west-1)\\.consul",
                               "{1}-{2}.coredns.rocks."),
                    AnswerRule("value", "(.*)\\.service\\.consul\\.", "{1}.coredns.rocks."),
                ),
            )
        ),
    ),
    (
        ("rewrite type ANY hinfo", "rewrite ttl example.com. 30-300",
         "rewrite ttl regex (.*)\\.example\\.com -30", "rewrite ttl suffix example.com 30-",
         "rewrite rcode regex (.*)\\.coredns\\.rocks SERVFAIL NOERROR",
         "rewrite rcode example.org 3 0"),
        ".:53",
        "rewrite",
        rules(
            RewriteType(255, 13),
            RewriteTtl(exact("example.com."), 30, 300),
            RewriteTtl(NameMatch(RewriteMatch.REGEX, "(.*)\\.example\\.com"), 0, 30),
            RewriteTtl(NameMatch(RewriteMatch.SUFFIX, "example.com."), 30, 2147483647),
            RewriteRcode(NameMatch(RewriteMatch.REGEX, "(.*)\\.coredns\\.rocks"), 2, 0),
            RewriteRcode(exact("example.org."), 3, 0),
        ),
    ),
    (
        ("rewrite edns0 local set 0xffee 0x61626364", "rewrite edns0 local append 0xffee abcd",
         "rewrite edns0 local replace 0xffee {client_ip} revert", "rewrite edns0 nsid set",
         "rewrite edns0 subnet set 24 56", "rewrite edns0 subnet unset",
         "rewrite edns0 local unset 0xffee"),
        ".:53",
        "rewrite",
        rules(
            RewriteEdns0("local", "set", code=0xFFEE, data=b"abcd"),
            RewriteEdns0("local", "append", code=0xFFEE, data=b"abcd"),
            RewriteEdns0("local", "replace", code=0xFFEE, variable="{client_ip}", revert=True),
            RewriteEdns0("nsid", "set", code=3),
            RewriteEdns0("subnet", "set", code=8, v4_bits=24, v6_bits=56),
            RewriteEdns0("subnet", "unset", code=8),
            RewriteEdns0("local", "unset", code=0xFFEE),
        ),
    ),
    # template: every line one template, in order
    (
        ("template ANY AAAA {", "  rcode NOERROR", "}"),
        ".:53",
        "template",
        TemplateConfig(templates=(Template("ANY", 28, origin=O2),), origin=O2),
    ),
    (
        ("template IN A example 10.0.0.0/8 {",
         "  match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)[.]example[.]$ ^x$",
         '  answer "{{ .Name }} 60 IN A 10.0.{{ .Group.a }}.{{ .Group.b }}"',
         '  authority "example. 60 IN NS ns0.example." "example. 60 IN NS ns1.example."',
         '  additional "ns0.example. 60 IN A 203.0.113.8"',
         "  rcode NXDOMAIN", "  fallthrough example", "}",
         "template IN PTR in-addr.arpa"),
        ".:53",
        "template",
        TemplateConfig(
            templates=(
                Template(
                    "IN", 1, zones=("example.", "10.in-addr.arpa."),
                    regexes=("(^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)[.]example[.]$", "^x$"),
                    answer=("{{ .Name }} 60 IN A 10.0.{{ .Group.a }}.{{ .Group.b }}",),
                    authority=("example. 60 IN NS ns0.example.", "example. 60 IN NS ns1.example."),
                    additional=("ns0.example. 60 IN A 203.0.113.8",),
                    rcode=3, fallthrough=("example.",), origin=O2,
                ),
                Template("IN", 12, zones=("in-addr.arpa.",), origin=Origin("Corefile", 10)),
            ),
            origin=O2,
        ),
    ),
    # file: reload is read (and honoured by the plugin)
    (
        ("file db.example.org {", "  reload 30s", "}"),
        "example.org:53",
        "file",
        FileConfig(paths=(Path("db.example.org"),), zones=("example.org.",), reload=30.0,
                   origin=O2),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "key", "name", "expected"), ACCEPTED)
def test_accepted(lines: tuple[str, ...], key: str, name: str, expected: PluginConfig) -> None:
    assert plugin(name, *lines, key=key) == expected


def test_plugins_take_their_plugin_cfg_places() -> None:
    text = block("forward . 10.0.0.1", "hosts", "template ANY AAAA", "cache", "rewrite type A A",
                 "loadbalance", "any", "log", "errors", "bufsize", "reload")  # fmt: skip
    assert load(text).blocks[0].chain_names() == [
        "reload", "bufsize", "errors", "log", "any", "loadbalance", "rewrite", "cache",
        "template", "hosts", "forward",
    ]  # fmt: skip


# ---- refused -----------------------------------------------------------------------------

REFUSED: list[tuple[tuple[str, ...], list[str]]] = [
    # bufsize and any
    (("bufsize 511",), ["Corefile:2: bufsize: SIZE must be from 512 to 4096, not 511"]),
    (("bufsize 1232 1232",),
     ["Corefile:2: bufsize takes one SIZE at most: `bufsize [SIZE]`, e.g. 1232"]),
    (("bufsize big",), ["Corefile:2: bufsize: SIZE must be a whole number, not 'big'"]),
    (("any all",), ["Corefile:2: any takes no arguments: write `any`"]),
    (("any {", "  hinfo", "}"), ["Corefile:3: any: unknown option 'hinfo'; any takes no options"]),
    # hosts
    (("hosts {", "  ttl 0", "}"), ["Corefile:3: hosts: ttl must be from 1 to 65535, not 0"]),
    (("hosts {", "  reload -1s", "}"),
     ["Corefile:3: hosts: the reload DURATION cannot be negative"]),
    (("hosts {", "  no_revers", "}"),
     ["Corefile:3: hosts: 'no_revers' is neither an option nor a hosts line (`IP NAME...`); "
      "hosts takes inline `IP NAME...` lines, `ttl SECONDS`, `no_reverse`, `reload DURATION`, "
      "`fallthrough [ZONES...]` and `fallthrough_unsupported`"]),
    (("hosts {", "  fallthrough", "  10.0.0.1 a.example.org", "}"),
     ["Corefile:4: hosts: unknown option '10.0.0.1' (after fallthrough, lines are options, not "
      "hosts lines); hosts takes inline `IP NAME...` lines, `ttl SECONDS`, `no_reverse`, "
      "`reload DURATION`, `fallthrough [ZONES...]` and `fallthrough_unsupported`"]),
    (("hosts /etc/hosts example.org {", "  10.0.0.1 db.example.net", "}"),
     ["Corefile:3: hosts: db.example.net is outside the zones hosts serves (example.org.), so it "
      "would never be answered; list it under a zone of this plugin"]),
    (("hosts {", "  fallthrough_unsupported", "}"),
     ["Corefile:3: hosts: fallthrough_unsupported requires fallthrough; add `fallthrough`"]),
    (("hosts", "hosts /etc/other"),
     ["Corefile:3: hosts is given twice in this server block (first at Corefile:2); CoreDNS "
      "allows hosts once per server block: keep one"]),
    (("hosts /etc/hosts example.net",),
     ["Corefile:2: hosts: zone example.net. is outside this server block's zones (example.org.); "
      "list zones inside them, or add a server block for it"]),
    # rewrite
    (("rewrite class CH IN",),
     ["Corefile:2: rewrite: class rules are not supported: kdns answers class IN only (queries "
      "of other classes are REFUSED before any plugin runs, and its plugins serve nothing else)"]),
    (("rewrite cname exact a.example. b.example.",),
     ["Corefile:2: rewrite: cname rules are not implemented in kdns yet"]),
    (("rewrite name a.example.org",),
     ["Corefile:2: rewrite: too few arguments for a name rule: write `name [MATCH] FROM TO`"]),
    (("rewrite name fuzzy a b",),
     ["Corefile:2: rewrite: name rule supports only exact, prefix, suffix, substring, and regex "
      "name matching, received: fuzzy"]),
    (("rewrite name regex (.*)\\.example {1}.{2}.consul",),
     ["Corefile:2: rewrite: name regex: the rewrite pattern '{1}.{2}.consul' uses more groups "
      "than '(.*)\\\\.example' has (1)"]),
    (("rewrite name regex ([[:digit:]]+) {1}.x",), []),  # POSIX classes translate
    (("rewrite name regex [0-9]+ {0}.x",),  # CoreDNS counts {0} as a group too
     ["Corefile:2: rewrite: name regex: the rewrite pattern '{0}.x' uses more groups than "
      "'[0-9]+' has (0)"]),
    (("rewrite name regex \\pL+ x",),
     ["Corefile:2: rewrite: name regex: Unicode classes (\\p) are not supported by kdns; write "
      "the characters out"]),
    (("rewrite name suffix .a. .b. answer name x",),
     ["Corefile:2: rewrite: name answer rule for suffix rule: 2 arguments required"]),
    (("rewrite name suffix .a. .b. answer auto answer name x y",),
     ["Corefile:2: rewrite: auto name answer rule cannot be combined with explicit name answer "
      "rules"]),
    (("rewrite name suffix .a. .b. auto",),
     ["Corefile:2: rewrite: invalid arguments for suffix rule: write e.g. `answer auto`"]),
    (("rewrite answer name a b",),
     ["Corefile:2: rewrite: response rewrites must begin with a name rule"]),
    (("rewrite type A",),
     ["Corefile:2: rewrite: type rules must have exactly two arguments: `type FROM TO`"]),
    (("rewrite type A BOGUS",), ["Corefile:2: rewrite: invalid type 'BOGUS'"]),
    (("rewrite type AXFR A",),
     ["Corefile:2: rewrite: type AXFR never reaches a plugin in kdns; use another type"]),
    (("rewrite ttl example.com. 300-30",),
     ["Corefile:2: rewrite: invalid TTL '300-30' for a ttl rule: write SECONDS or MIN-MAX"]),
    (("rewrite ttl example.com. -",),
     ["Corefile:2: rewrite: invalid TTL '-' for a ttl rule: write SECONDS or MIN-MAX"]),
    (("rewrite rcode example.org NOERROR NOTAUTH",),
     ["Corefile:2: rewrite: replacement RCODE NOTAUTH is not one kdns answers with; it takes "
      "NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED"]),
    (("rewrite rcode example.org NOERROR OOPS",),
     ["Corefile:2: rewrite: invalid replacement RCODE 'OOPS' for a rcode rule"]),
    (("rewrite edns0 local set 0xffee {server_ip}",),
     ["Corefile:2: rewrite: edns0 local: variable {server_ip} is not supported by kdns; it takes "
      "{qname}, {qtype}, {client_ip}, {client_port}, {protocol}"]),
    (("rewrite edns0 subnet set 33 56",), ["Corefile:2: rewrite: invalid IPv4 bit mask length 33"]),
    (("rewrite edns0 cookie set 1",),
     ["Corefile:2: rewrite: invalid rule type 'cookie'; edns0 takes local, nsid and subnet"]),
    (("rewrite edns0 local flip 0xffee 1",),
     ["Corefile:2: rewrite: invalid action: 'flip'; write set, append, replace or unset"]),
    (("rewrite continue",),
     ["Corefile:2: rewrite: a continue rule must begin with a rule type (name, type, ttl, ...)"]),
    (("rewrite name a.example b.example {", "  answer auto", "}"),
     ["Corefile:2: rewrite: a rule written on the rewrite line takes no { } block (CoreDNS reads "
      "a block only after `rewrite`, `rewrite stop` or `rewrite continue`)"]),
    # template
    (("template CH TXT",),
     ["Corefile:2: template: class CH is not served by kdns, which answers class IN only (queries "
      "of other classes are REFUSED before plugins run): write IN or ANY"]),
    (("template in A",),
     ["Corefile:2: template: invalid query class in (write IN or ANY, upper-case)"]),
    (("template IN",),
     ["Corefile:2: template takes CLASS TYPE [ZONES...], e.g. `template IN A example.org`"]),
    (("template IN A {", "  upstream", "}"),
     ["Corefile:3: template: upstream is deprecated (CoreDNS ignores it): remove it; CNAME "
      "answers to A and AAAA queries are resolved through the rest of the chain"]),
    (("template IN A {", "  var ip group('ip')", "}"),
     ["Corefile:3: template: option var: expressions are not implemented in kdns yet; template "
      "takes `match REGEX...`, `answer RR...`, `additional RR...`, `authority RR...`, `rcode "
      "CODE` and `fallthrough [ZONES...]`"]),
    (("template IN A {", '  ederror 21 "blocked"', "}"),
     ["Corefile:3: template: option ederror: extended DNS errors are not implemented in kdns yet; "
      "template takes `match REGEX...`, `answer RR...`, `additional RR...`, `authority RR...`, "
      "`rcode CODE` and `fallthrough [ZONES...]`"]),
    (("template IN A {", "  rcode BADCOOKIE", "}"),
     ["Corefile:3: template: rcode BADCOOKIE is not one kdns answers with; it takes NOERROR, "
      "FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED"]),
    (("template IN A {", '  answer "{{ .Name }} 60 IN A {{ .Meta \\"x\\" }}"', "}"),
     ['Corefile:3: template: answer: {{ .Meta "x" }} uses .Meta (metadata (kdns has no metadata '
      "plugin)), which kdns does not support"]),
    (("template IN A {", '  answer "{{ .Name | printf \\"%s\\" }} A 10.0.0.1"', "}"),
     ['Corefile:3: template: answer: {{ .Name | printf "%s" }} uses pipelines, which kdns does '
      "not support"]),
    (("template IN HTTPS {", '  answer "{{ .Name }} 60 IN HTTPS 1 . alpn=h2"', "}"),
     ["Corefile:3: template: answer: HTTPS records cannot be written by kdns; kdns writes A, "
      "AAAA, CNAME, NS, PTR, MX, TXT, SRV, SOA"]),
    (("template IN A {", '  answer "{{ .Name }} 60 CH A 10.0.0.1"', "}"),
     ["Corefile:3: template: answer: class CH records are not served by kdns (class IN only)"]),
    (("template IN A {", "  match (unclosed", "}"),
     ["Corefile:3: template: match: '(unclosed' is not a valid regular expression: missing ), "
      "unterminated subpattern at position 0"]),
    (("template IN A {", "  fallthrough", "  answer", "}"),
     ["Corefile:4: template: answer takes one or more RR templates"]),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "expected"), REFUSED)
def test_refused(lines: tuple[str, ...], expected: list[str]) -> None:
    key = "example.org:53" if lines[0].startswith("hosts /etc/hosts example.net") else ".:53"
    if not expected:
        assert load(block(*lines, key=key)).blocks  # accepted
        return
    assert refused(*lines, key=key) == expected
