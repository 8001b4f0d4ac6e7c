"""Start-up and shutdown as an operator sees them: every failure is one line on stderr and
exit 1, nothing is left un-awaited (no RuntimeWarning, no tracemalloc hint), once even with
--workers 2; a forwarding loop through another forwarder stops kdns; an upstream that never
answers delays nothing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.kdns_process import ROOT, free_port, require_tool, run_kdns

pytestmark = pytest.mark.e2e

SEED = ROOT / "deploy" / "examples" / "seed"
NOISE = ("RuntimeWarning", "never awaited", "tracemalloc", "Traceback")


def serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    http = [f"--{n}-addr=127.0.0.1:{free_port()}" for n in ("health", "ready", "metrics")]
    cmd = [sys.executable, "-m", "kdns", "serve", "--manifests", str(SEED), *http, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_one_error_line(out: subprocess.CompletedProcess[str], needle: str) -> None:
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("kdns: ")]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0]
    for noise in NOISE:
        assert noise not in out.stderr, out.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line(workers: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = serve(f"--dns-addr=127.0.0.1:{port}", "--upstream=none", f"--workers={workers}")
    assert_one_error_line(out, f"127.0.0.1:{port}")


def test_a_bad_zone_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN example.test.\n@ 3600 IN SOA ns hostmaster 1 2 3 4\nwww IN A nope\n")
    out = serve(f"--dns-addr=127.0.0.1:{free_port()}", "--upstream=none", f"--zone-file={bad}")
    assert_one_error_line(out, str(bad))


def test_a_zone_file_that_would_hide_the_cluster_is_refused(tmp_path: Path) -> None:
    shadow = tmp_path / "cluster.zone"
    shadow.write_text(
        "$ORIGIN default.svc.cluster.local.\n"
        "@ 3600 IN SOA ns hostmaster 1 7200 1800 86400 30\n"
        "@ 3600 IN NS ns\nns 3600 IN A 192.0.2.1\n"
    )
    out = serve(f"--dns-addr=127.0.0.1:{free_port()}", "--upstream=none", f"--zone-file={shadow}")
    assert_one_error_line(out, "cluster.local")


def test_a_loop_through_another_forwarder_stops_kdns(tmp_path: Path) -> None:
    require_tool("dig")
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        pytest.fail("dnsmasq is required")
    kdns_port, relay_port = free_port(), free_port()
    relay = subprocess.Popen(
        [dnsmasq, "--no-daemon", "--conf-file=/dev/null", f"--port={relay_port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--user=root", f"--server=127.0.0.1#{kdns_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = time.monotonic()
        out = serve(f"--dns-addr=127.0.0.1:{kdns_port}", f"--upstream=127.0.0.1:{relay_port}")
    finally:
        relay.terminate()
        relay.wait(5)
    assert out.returncode == 1, out.stderr
    assert "loop" in out.stderr
    assert f"127.0.0.1:{kdns_port}" in out.stderr
    assert time.monotonic() - started < 30
    for noise in NOISE:
        assert noise not in out.stderr, out.stderr


def test_a_silent_upstream_delays_nothing_and_is_named(tmp_path: Path) -> None:
    # A UDP socket that never answers: HTTP must come up at once, and the upstream gets a
    # log line naming it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        with run_kdns(["--manifests", str(SEED), f"--upstream=127.0.0.1:{port}"],
                      tmp_path=tmp_path, timeout=10) as kdns:  # fmt: skip
            assert time.monotonic() - started < 3  # /ready answered 200 within this
            assert kdns.http(kdns.health_port, "/health")[0] == 200
            deadline = time.monotonic() + 15
            while f"127.0.0.1:{port}" not in kdns.log():
                assert time.monotonic() < deadline, kdns.log()
                time.sleep(0.2)
            # The loop probe keeps timing out meanwhile: slow tries are no loop (CoreDNS
            # starts the count again after each), so kdns must still be serving.
            time.sleep(10)
            assert kdns.proc.poll() is None, kdns.log()
            assert "detected" not in kdns.log()
    assert "never awaited" not in kdns.log()


def test_a_dead_upstream_does_not_flood_the_log(tmp_path: Path) -> None:
    # 300 queries for external names while the only upstream never answers: one warning
    # that names it, and the failures consolidated (errors { consolidate } in the flags'
    # chain) into a line per 10 s with a count, not a line or two per query.
    from dnslib import DNSRecord

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with run_kdns(["--manifests", str(SEED), f"--upstream=127.0.0.1:{port}"],
                      tmp_path=tmp_path, timeout=10) as kdns:  # fmt: skip
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for i in range(300):
                    query = DNSRecord.question(f"n{i}.example.test", "A")
                    client.sendto(query.pack(), ("127.0.0.1", kdns.dns_port))
                    time.sleep(0.005)
            time.sleep(20)  # every forward gives up within 5 s; then one 10 s period
            lines = kdns.log().splitlines()
    failures = [line for line in lines if "errors like" in line]
    assert failures, "\n".join(lines)
    assert sum(int(line.split(" errors like")[0].rsplit(" ", 1)[1]) for line in failures) >= 300
    assert any(f"127.0.0.1:{port}" in line for line in lines)
    assert len(lines) < 40, "\n".join(lines[-20:])
    assert not any("loop" in line and "detected" in line for line in lines), "\n".join(lines)
