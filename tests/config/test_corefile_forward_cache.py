"""`forward`'s and `cache`'s options as CoreDNS's README and setup.go give them: except,
policy, max_fails, health_check, force_tcp/prefer_udp, expire, read_timeout, tls://
upstreams with tls and tls_servername; prefetch, serve_stale and keepttl."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config.corefile import render
from kdns.config.model import (
    CacheConfig,
    ForwardConfig,
    ForwardPolicy,
    Origin,
    StaleRefresh,
    TlsFiles,
    Upstream,
)
from kdns.config.settings import HostPort
from tests.config.corefiles import block, load, problems

O2 = Origin("Corefile", 2)


def forward(*lines: str) -> ForwardConfig:
    config = load(block(*lines)).blocks[0].plugins["forward"]
    assert isinstance(config, ForwardConfig)
    return config


def cache(*options: str) -> CacheConfig:
    config = load(block("cache {", *options, "}")).blocks[0].plugins["cache"]
    assert isinstance(config, CacheConfig)
    return config


def refused(*lines: str) -> list[str]:
    return problems(block(*lines))


# ---- forward ----------------------------------------------------------------------------


def test_forward_defaults_are_corednss() -> None:
    config = forward("forward . 10.0.0.1")
    assert (config.policy, config.max_fails, config.health_check) == (
        ForwardPolicy.RANDOM, 2, 0.5,
    )  # fmt: skip
    assert (config.health_check_domain, config.health_check_rd) == (".", True)
    assert (config.expire, config.read_timeout, config.force_tcp, config.prefer_udp) == (
        10.0, 2.0, False, False,
    )  # fmt: skip
    assert (config.except_zones, config.tls, config.tls_servername) == ((), None, None)


def test_every_forward_option() -> None:
    config = forward(
        "forward . 10.0.0.1 10.0.0.2 {",
        "  except internal.example 10.0.0.0/8",
        "  policy sequential",
        "  max_fails 0",
        "  health_check 2s no_rec domain example.org",
        "  force_tcp",
        "  prefer_udp",
        "  expire 30s",
        "  read_timeout 500ms",
        "  max_concurrent 100",
        "}",
    )
    assert config == ForwardConfig(
        from_zone=".",
        to=(Upstream(HostPort("10.0.0.1", 53)), Upstream(HostPort("10.0.0.2", 53))),
        to_text=("10.0.0.1", "10.0.0.2"),
        except_zones=("internal.example.", "10.in-addr.arpa."),
        policy=ForwardPolicy.SEQUENTIAL,
        max_fails=0,
        health_check=2.0,
        health_check_rd=False,
        health_check_domain="example.org.",
        force_tcp=True,
        prefer_udp=True,
        expire=30.0,
        read_timeout=0.5,
        max_concurrent=100,
        origin=O2,
    )


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("tls://9.9.9.9", Upstream(HostPort("9.9.9.9", 853), tls=True)),  # RFC 7858 §3.1
        ("tls://9.9.9.9:8853", Upstream(HostPort("9.9.9.9", 8853), tls=True)),
        ("tls://9.9.9.9%dns.quad9.net",
         Upstream(HostPort("9.9.9.9", 853), tls=True, server_name="dns.quad9.net")),
        ("tls://9.9.9.9%dns.quad9.net:10853",
         Upstream(HostPort("9.9.9.9", 10853), tls=True, server_name="dns.quad9.net")),
        ("tls://[2620:fe::fe]:853", Upstream(HostPort("2620:fe::fe", 853), tls=True)),
        ("tls://[2620:fe::fe%dns.quad9.net]:853",
         Upstream(HostPort("2620:fe::fe", 853), tls=True, server_name="dns.quad9.net")),
    ],
)  # fmt: skip
def test_tls_upstreams(to: str, expected: Upstream) -> None:
    assert forward(f"forward . {to}").to == (expected,)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", TlsFiles()),  # the system's CAs
        ("ca.pem", TlsFiles(ca=Path("ca.pem"))),
        ("cert.pem key.pem", TlsFiles(cert=Path("cert.pem"), key=Path("key.pem"))),
        ("cert.pem key.pem ca.pem",
         TlsFiles(cert=Path("cert.pem"), key=Path("key.pem"), ca=Path("ca.pem"))),
    ],
)  # fmt: skip
def test_the_tls_option_names_the_files_as_corednss_does(
    args: str, expected: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("PEM\n")
    config = forward(
        "forward . tls://9.9.9.9 {", f"  tls {args}".rstrip(), "  tls_servername dns.quad9.net", "}"
    )
    assert (config.tls, config.tls_servername) == (expected, "dns.quad9.net")


REFUSED = [
    (("forward . 10.0.0.1 {", "  policy fastest", "}"),
     ["Corefile:3: forward: unknown policy 'fastest'; use random, round_robin or sequential"]),
    (("forward . 10.0.0.1 {", "  max_fails -1", "}"),
     ["Corefile:3: forward: max_fails cannot be negative"]),
    (("forward . 10.0.0.1 {", "  health_check 0s", "}"),
     ["Corefile:3: forward: health_check must be above 0s; to never mark an upstream down "
      "(and never check it), write `max_fails 0`"]),
    (("forward . 10.0.0.1 {", "  health_check 1s rec", "}"),
     ["Corefile:3: forward: health_check takes DURATION [no_rec] [domain FQDN], e.g. "
      "`health_check 1s`; 'rec' is not one of them"]),
    (("forward . 10.0.0.1 {", "  expire -1s", "}"),
     ["Corefile:3: forward: expire cannot be negative, not -1s"]),
    (("forward . 10.0.0.1 {", "  read_timeout 0s", "}"),
     ["Corefile:3: forward: read_timeout must be above 0, not 0s"]),
    (("forward . 10.0.0.1 {", "  force_tcp yes", "}"),
     ["Corefile:3: forward: force_tcp takes no arguments"]),
    (("forward . 10.0.0.1 {", "  except", "}"),
     ["Corefile:3: forward: except takes the names to leave out"]),
    (("forward . 10.0.0.1 {", "  tls /nonexistent/ca.pem", "}"),
     ["Corefile:3: forward: tls file /nonexistent/ca.pem does not exist (or is not a file); "
      "give the path of a PEM file"]),
    (("forward . tls://9.9.9.9%dns.quad9.net {", "  tls_servername dns.quad9.net", "}"),
     ["Corefile:3: forward: tls_servername dns.quad9.net and the server name in "
      "tls://9.9.9.9%dns.quad9.net both name the TLS server; keep one"]),
    (("forward . tls://dns.quad9.net",),
     ["Corefile:2: forward: TO 'tls://dns.quad9.net': a tls:// upstream is an IP address, e.g. "
      "tls://9.9.9.9%dns.quad9.net or tls://[2620:fe::fe]:853"]),
    (("forward . https://9.9.9.9",),
     ["Corefile:2: forward: https:// (DNS over HTTPS) upstreams are not implemented in kdns "
      "yet; use DNS over TLS, tls://9.9.9.9, or plain DNS, dns://9.9.9.9"]),
    (("forward . 10.0.0.1 {", "  failover SERVFAIL", "}"),
     ["Corefile:3: forward: option failover is not implemented in kdns yet; forward takes "
      "`except NAMES...`, `force_tcp`, `prefer_udp`, `expire DURATION`, `max_fails N`, "
      "`health_check DURATION [no_rec] [domain FQDN]`, `tls [CERT KEY] [CA]`, "
      "`tls_servername NAME`, `policy random|round_robin|sequential`, `read_timeout "
      "DURATION` and `max_concurrent N`"]),
    (("forward . 10.0.0.1 {", "  policy random", "  policy sequential", "}"),
     ["Corefile:4: forward: option policy is given twice (first at Corefile:3); keep one"]),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "expected"), REFUSED, ids=lambda v: str(v)[:60])
def test_forward_refused(lines: tuple[str, ...], expected: list[str]) -> None:
    assert refused(*lines) == expected


def test_the_report_says_how_forward_behaves(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM\n")
    text = render(load(block(
        "forward . tls://9.9.9.9%dns.quad9.net 10.0.0.1 {",
        f"  tls {ca}", "  policy sequential", "  max_fails 0", "  force_tcp",
        "  except corp.example", "}",
    )))  # fmt: skip
    assert (
        "    forward      . -> tls://9.9.9.9:853 (dns.quad9.net) 10.0.0.1:53  (Corefile:2)\n"
        "                 (from tls://9.9.9.9%dns.quad9.net 10.0.0.1)\n"
        "                 except corp.example. (to the next plugin)\n"
        "                 policy sequential, TCP always, read timeout 2s, connections reused "
        "for 10s\n"
        "                 max_fails 0: never marked down, never health checked\n"
        f"                 TLS: certificates verified against {ca}"
    ) in text


# ---- cache ------------------------------------------------------------------------------


def test_prefetch_and_its_defaults() -> None:
    assert (cache("prefetch 10").prefetch, cache("prefetch 10").prefetch_gap) == (10, 60.0)
    config = cache("prefetch 5 30s 25%")
    assert (config.prefetch, config.prefetch_gap, config.prefetch_percentage) == (5, 30.0, 25)
    assert cache().prefetch_percentage == 10


@pytest.mark.parametrize(
    ("option", "stale", "refresh", "timeout", "ttl", "recheck"),
    [
        ("serve_stale", 3600.0, StaleRefresh.IMMEDIATE, 0.0, 0, 0.0),  # CoreDNS: 1h
        ("serve_stale 10m", 600.0, StaleRefresh.IMMEDIATE, 0.0, 0, 0.0),
        ("serve_stale 1h verify", 3600.0, StaleRefresh.VERIFY, 0.0, 0, 0.0),
        ("serve_stale 1h immediate 30s 30s", 3600.0, StaleRefresh.IMMEDIATE, 0.0, 30, 30.0),
        ("serve_stale 1h verify 100ms 30s 1m", 3600.0, StaleRefresh.VERIFY, 0.1, 30, 60.0),
        ("serve_stale 1h verify 0 30s", 3600.0, StaleRefresh.VERIFY, 0.0, 30, 0.0),
    ],
)
def test_serve_stale_forms(
    option: str,
    stale: float,
    refresh: StaleRefresh,
    timeout: float,
    ttl: int,
    recheck: float,
) -> None:
    config = cache(option)
    assert (
        config.stale,
        config.stale_refresh,
        config.stale_verify_timeout,
        config.stale_ttl,
        config.stale_recheck,
    ) == (stale, refresh, timeout, ttl, recheck)


def test_keepttl() -> None:
    assert cache("keepttl").keepttl
    assert not cache().keepttl


CACHE_REFUSED = [
    (("prefetch",), "Corefile:3: cache: prefetch takes AMOUNT [[DURATION] [PERCENTAGE%]]"),
    (("prefetch 10 1m 5%",), "Corefile:3: cache: prefetch PERCENTAGE must be 10% to 90%, not 5%"),
    (("prefetch 10 1m 50",),
     "Corefile:3: cache: prefetch PERCENTAGE is a whole number with a % sign, e.g. 10%, not "
     "'50'"),
    (("prefetch -1",), "Corefile:3: cache: prefetch AMOUNT cannot be negative, not -1"),
    (("serve_stale 1h later",),
     "Corefile:3: cache: serve_stale mode 'later' is not immediate or verify"),
    (("serve_stale 1h immediate 1.5s",),
     "Corefile:3: cache: serve_stale RESPONSE_TTL is whole seconds, 0 or more (RFC 8767 "
     "recommends 30s)"),
    (("serve_stale 1h immediate 30s 10m",),
     "Corefile:3: cache: serve_stale FAILURE_RECHECK must be 0s to 5m"),
    (("serve_stale 1h immediate 30s 30s 1s",),
     "Corefile:3: cache: serve_stale takes [DURATION [immediate [RESPONSE_TTL "
     "[FAILURE_RECHECK]] | verify [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]]"),
    (("keepttl now",), "Corefile:3: cache: keepttl takes no arguments"),
    (("serve_stale", "serve_stale 1m"),
     "Corefile:4: cache: option serve_stale is given twice (first at Corefile:3); keep one"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "expected"), CACHE_REFUSED, ids=lambda v: str(v)[:50])
def test_cache_refused(options: tuple[str, ...], expected: str) -> None:
    assert refused("cache {", *options, "}") == [expected]


def test_serve_stale_policy_is_not_implemented_yet() -> None:
    (problem,) = refused("cache {", "  serve_stale", "  serve_stale_policy prefer_positive", "}")
    assert problem.startswith(
        "Corefile:4: cache: option serve_stale_policy is not implemented in kdns yet"
    )


def test_the_report_says_what_cache_does() -> None:
    text = render(load(block("cache 30 {", "  prefetch 10", "  serve_stale 1h verify 100ms 30s",
                             "}")))  # fmt: skip
    assert (
        "                 prefetch entries asked 10 times without a 1m0s gap, at 10% of their "
        "TTL\n"
        "                 serve stale entries up to 1h0m0s after they expire with TTL 30 "
        "(verify: ask upstream first for at most 100ms)"
    ) in text
