"""The command-line contract: flag names, env twins, one-line errors naming flag and fix."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from kdns.cli import build_parser, main, serve_settings
from kdns.config.options import OPTIONS, UsageError, flag_table, parse_hostport
from kdns.config.settings import HostPort, PodMode, Settings

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "deploy" / "examples" / "seed"


def settings(argv: list[str]) -> Settings:
    import os

    ns = build_parser().parse_args(["serve", *argv])
    return serve_settings(ns, os.environ)


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
    assert parse_hostport(text, "--dns-addr") == expected


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
        (["--zone", "bad zone"], "--zone"),
        (["--zone", "under_score.local"], "--zone"),
        (["--upstream", "127.0.0.1", "--upstream", "127.0.0.1:53"], "given twice"),
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


def test_only_real_flags_count_as_environment_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kubelet's service links for Services named kdns and kdns-metrics in the pod's
    # namespace: not flags, so not ours.
    monkeypatch.setenv("KDNS_SERVICE_HOST", "10.96.0.20")
    monkeypatch.setenv("KDNS_PORT", "udp://10.96.0.20:53")
    monkeypatch.setenv("KDNS_METRICS_PORT", "tcp://10.96.0.21:9153")
    monkeypatch.setenv("KDNS_METRICS_PORT_9153_TCP_ADDR", "10.96.0.21")
    s = settings(["--manifests", str(SEED)])
    assert s.metrics_addr == Settings().metrics_addr


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDNS_TTL", "abc")
    with pytest.raises(UsageError, match=r"^KDNS_TTL: 'abc'"):
        settings(["--manifests", str(SEED)])


@pytest.mark.parametrize(
    ("flag", "directive"),
    [
        (["--ttl", "30"], "kubernetes { ttl N }"),
        (["--upstream", "127.0.0.1"], "forward . UPSTREAM..."),
        (["--health-addr", ":8080"], "health HOST:PORT"),
        (["--zone-file", str(ROOT / "zones")], "file DBFILE"),
    ],
)
def test_flags_the_corefile_replaces_name_the_directive(
    tmp_path: Path, flag: list[str], directive: str
) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n    forward . 127.0.0.1\n}\n")
    with pytest.raises(UsageError, match="cannot be combined with --corefile") as info:
        settings(["--corefile", str(corefile), *flag])
    assert directive in str(info.value)
    assert str(info.value).count("\n") == 0


def test_flags_that_feed_the_corefile_are_accepted(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n    forward . 127.0.0.1\n}\n")
    argv = ["--corefile", str(corefile), "--manifests", str(SEED), "--dns-port", "1053"]
    s = settings([*argv, "--workers", "2", "--log-level", "debug"])
    assert (s.corefile, s.manifests, s.dns_addr.port) == (corefile, (SEED,), 1053)
    assert (s.workers, s.log_level) == (2, "debug")


def test_dns_port_goes_with_the_corefile() -> None:
    with pytest.raises(UsageError, match="--dns-port goes with --corefile"):
        settings(["--manifests", str(SEED), "--dns-port", "53"])


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
    for option in OPTIONS:
        assert option.flag in out
        assert option.env in out


def test_the_readme_flag_table_is_the_help() -> None:
    """The README's table is derived from the same option table as `kdns serve --help`."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- flags:start -->") + len("<!-- flags:start -->")
    end = readme.index("<!-- flags:end -->")
    assert readme[start:end].strip() == flag_table()
    out = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flat = " ".join(out.split())
    for option in OPTIONS:
        assert " ".join(option.help.split()) in flat, option.flag
        assert f"`{option.flag} {option.metavar}`".replace("|", "\\|") in readme


def test_every_subcommand_has_help_text() -> None:
    for command in ("serve", "corefile", "manifests", "explain"):
        out = subprocess.run(
            [sys.executable, "-m", "kdns", command, "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "positional arguments" in out or "options" in out
        for line in out.splitlines():
            if line.startswith("  ") and line.strip().startswith(("PATH", "path")):
                assert len(line.split()) > 1, f"{command}: {line!r} has no help"


def test_hardening_flags() -> None:
    flags = ["--rrl-responses-per-second", "100", "--rrl-slip", "0",
             "--tcp-idle-timeout", "2.5", "--tcp-max-connections", "50"]  # fmt: skip
    s = settings(["--manifests", str(SEED), *flags])
    assert (s.rrl_responses_per_second, s.rrl_slip) == (100, 0)
    assert (s.tcp_idle_seconds, s.tcp_max_connections) == (2.5, 50)
    assert settings(["--manifests", str(SEED)]).rrl_responses_per_second == 0  # off by default
