"""The command-line contract: flag names, env twins, one-line errors naming flag and fix."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from kdns.cli import (
    UsageError,
    _build_parser,
    _env_defaults,
    main,
    parse_hostport,
    settings_from_args,
)
from kdns.config.settings import HostPort, PodMode, Settings

SEED = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "seed"


def settings(argv: list[str]) -> Settings:
    ns = _build_parser().parse_args(_env_defaults(["serve", *argv]))
    return settings_from_args(ns)


def test_defaults_are_coredns_ones() -> None:
    s = settings(["--manifests", str(SEED)])
    assert s.dns_addr == HostPort("0.0.0.0", 53)
    assert (s.zone, s.ttl, s.pods) == ("cluster.local", 5, PodMode.INSECURE)
    assert (s.health_addr.port, s.ready_addr.port, s.metrics_addr.port) == (8080, 8181, 9153)
    assert s.upstreams is None  # /etc/resolv.conf
    assert s.lameduck_seconds == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:1053", HostPort("127.0.0.1", 1053)),
        (":8080", HostPort("", 8080)),
        ("[::1]:53", HostPort("::1", 53)),
    ],
)
def test_host_port_forms(text: str, expected: HostPort) -> None:
    assert parse_hostport(text, flag="--dns-addr") == expected


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--ttl", "5000"], "--ttl"),
        (["--ttl", "x"], "--ttl"),
        (["--pods", "maybe"], "--pods"),
        (["--dns-addr", "::1:53"], "--dns-addr"),
        (["--dns-addr", "127.0.0.1"], "--dns-addr"),
        (["--dns-addr", "127.0.0.1:99999"], "--dns-addr"),
        (["--upstream", "none", "--upstream", "127.0.0.1"], "--upstream"),
        (["--upstream", "dns.example"], "--upstream"),
        (["--zone", "a..b"], "--zone"),
        (["--manifests", "/nonexistent/x.yaml"], "--manifests"),
        (["--service-cidr", "10.96.0.1/16"], "--service-cidr"),
    ],
)
def test_bad_flags_name_the_flag(argv: list[str], needle: str) -> None:
    base = [] if "--manifests" in argv else ["--manifests", str(SEED)]
    with pytest.raises(UsageError, match=needle):
        settings([*base, *argv])


def test_environment_twins_are_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDNS_TTL", "30")
    monkeypatch.setenv("KDNS_ZONE", "example.cluster")
    monkeypatch.setenv("KDNS_MANIFESTS", str(SEED))
    monkeypatch.setenv("KDNS_UPSTREAM", "127.0.0.1:5353,127.0.0.2")
    s = settings(["--zone", "other.local"])
    assert (s.ttl, s.zone) == (30, "other.local")
    assert s.manifests == (SEED,)
    assert s.upstreams == (HostPort("127.0.0.1", 5353), HostPort("127.0.0.2", 53))


def test_no_data_source_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UsageError, match="--manifests"):
        settings([])


def test_upstream_none_means_refused_and_cidrs_parse() -> None:
    s = settings(["--manifests", str(SEED), "--upstream", "none", "--service-cidr", "10.0.0.0/24"])
    assert s.upstreams == ()
    assert s.service_cidrs == (ipaddress.ip_network("10.0.0.0/24"),)


def test_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--manifests", str(SEED), "--ttl", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("kdns: --ttl")


def test_help_lists_every_flag_with_its_env_twin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--dns-addr", "--zone", "--ttl", "--pods", "--manifests", "--kubeconfig",
                 "--upstream", "--health-addr", "--ready-addr", "--metrics-addr"):  # fmt: skip
        assert flag in out
        assert "KDNS_" + flag[2:].replace("-", "_").upper() in out


def test_hardening_flags() -> None:
    flags = ["--rrl-responses-per-second", "100", "--rrl-slip", "0",
             "--tcp-idle-timeout", "2.5", "--tcp-max-connections", "50"]  # fmt: skip
    s = settings(["--manifests", str(SEED), *flags])
    assert (s.rrl_responses_per_second, s.rrl_slip) == (100, 0)
    assert (s.tcp_idle_seconds, s.tcp_max_connections) == (2.5, 50)
    assert settings(["--manifests", str(SEED)]).rrl_responses_per_second == 0  # off by default
