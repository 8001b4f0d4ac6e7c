"""End to end, docs/operations.md: kdns beside a real upstream (Debian's dnsmasq on loopback) and a
zone file; metrics, health, and lameduck on SIGTERM, all against `kdns serve`."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.kdns_process import ROOT, Kdns, dig, free_port, run_kdns

pytestmark = pytest.mark.e2e

CLUSTER = ROOT / "tests" / "data" / "e2e-cluster"
ZONES = ROOT / "zones"


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(exe).exists():
        pytest.skip("dnsmasq not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("dnsmasq") / "queries.log"
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--user=root", "--log-queries", f"--log-facility={log}",
         "--address=/upstream.example/192.0.2.7",
         "--ptr-record=7.2.0.192.in-addr.arpa,upstream.example",
         "--local-ttl=60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # bounded: dnsmasq binds within a few ms
            if dig(port, "upstream.example").status == "NOERROR":
                break
            time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(scope="module")
def kdns(dnsmasq: tuple[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdns]:
    port, _ = dnsmasq
    tmp = tmp_path_factory.mktemp("kdns-ops")
    args = [
        "--manifests",
        str(CLUSTER),
        "--upstream",
        f"127.0.0.1:{port}",
        "--zone-file",
        str(ZONES),
    ]
    with run_kdns(args, tmp_path=tmp) as k:
        yield k


def _upstream_queries(log: Path, name: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if f"query[A] {name} " in line)


def test_external_names_resolve_through_the_upstream_and_are_cached(
    kdns: Kdns, dnsmasq: tuple[int, Path]
) -> None:
    _, log = dnsmasq
    first = dig(kdns.dns_port, "upstream.example")
    assert first.status == "NOERROR"
    assert first.answer == ["upstream.example. 30 IN A 192.0.2.7"]  # TTL 60 capped at 30
    before = _upstream_queries(log, "upstream.example")
    again = dig(kdns.dns_port, "UPSTREAM.example")
    assert [line.split()[-1] for line in again.answer] == ["192.0.2.7"]
    assert _upstream_queries(log, "upstream.example") == before  # served from the cache


def test_reverse_lookups_of_unknown_addresses_come_from_the_upstream(
    kdns: Kdns, dnsmasq: tuple[int, Path]
) -> None:
    r = dig(kdns.dns_port, "7.2.0.192.in-addr.arpa", "PTR")
    assert [line.split()[-1] for line in r.answer] == ["upstream.example."]
    inside = dig(kdns.dns_port, "99.99.96.10.in-addr.arpa", "PTR")  # the service CIDR: ours
    assert (inside.status, [line.split()[0] for line in inside.authority]) == (
        "NXDOMAIN",
        ["in-addr.arpa."],
    )
    known = dig(kdns.dns_port, "20.0.96.10.in-addr.arpa", "PTR")  # still ours (R14)
    assert [line.split()[-1] for line in known.answer] == ["web.testns.svc.cluster.local."]
    assert "aa" in known.flags
    assert "99.99.96.10" not in dnsmasq[1].read_text()  # cluster ranges never leave kdns


def test_cluster_misses_are_never_forwarded(kdns: Kdns, dnsmasq: tuple[int, Path]) -> None:
    _, log = dnsmasq
    r = dig(kdns.dns_port, "missing.testns.svc.cluster.local")
    assert r.status == "NXDOMAIN"
    assert "missing.testns" not in log.read_text()


def test_the_zone_file_is_served_authoritatively(kdns: Kdns) -> None:
    www = dig(kdns.dns_port, "www.example.internal")
    assert "aa" in www.flags
    assert [line.split()[3] for line in www.answer] == ["CNAME", "A", "A"]
    assert sorted(line.split()[-1] for line in www.answer[1:]) == ["192.0.2.80", "192.0.2.81"]
    mx = dig(kdns.dns_port, "example.internal", "MX")
    assert [" ".join(line.split()[4:]) for line in mx.answer] == ["10 mail.example.internal."]
    nx = dig(kdns.dns_port, "nope.example.internal")
    assert nx.status == "NXDOMAIN"
    assert [line.split()[0] for line in nx.authority] == ["example.internal."]


def _counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_parse_and_request_counters_move_with_queries(kdns: Kdns) -> None:
    status, text = kdns.http(kdns.metrics_port, "/metrics")
    assert status == 200
    before = _counter(text, "coredns_dns_requests_total", zone="cluster.local.", type="A")
    for _ in range(7):
        dig(kdns.dns_port, "web.testns.svc.cluster.local")
    _, text = kdns.http(kdns.metrics_port, "/metrics")
    after = _counter(text, "coredns_dns_requests_total", zone="cluster.local.", type="A")
    assert after - before == 7
    assert _counter(text, "coredns_dns_responses_total", rcode="NOERROR") >= 7
    assert any(
        f.name == "coredns_dns_request_duration_seconds"
        for f in text_string_to_metric_families(text)
    )
    assert _counter(text, "coredns_build_info") == 1


def test_health_is_200(kdns: Kdns) -> None:
    assert kdns.http(kdns.health_port, "/health") == (200, "OK")


def test_sigterm_lameduck_ready_503_while_dns_answers_then_clean_exit(tmp_path: Path) -> None:
    args = ["--manifests", str(CLUSTER), "--upstream", "none", "--lameduck", "2"]
    with run_kdns(args, tmp_path=tmp_path) as k:
        assert k.ready()[0] == 200
        k.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.5
        saw_503 = saw_answer = False
        while time.monotonic() < deadline and not (saw_503 and saw_answer):
            saw_503 = saw_503 or k.ready()[0] == 503
            saw_answer = saw_answer or dig(k.dns_port, "web.testns.svc.cluster.local").answer == [
                "web.testns.svc.cluster.local. 5 IN A 10.96.0.20"
            ]
        assert saw_503, "/ready did not turn 503 during lameduck"
        assert saw_answer, "DNS stopped answering during lameduck"
        assert k.proc.wait(30) == 0  # (2 s of lameduck; slack for a loaded CI machine)
        assert "lameduck" in k.log()


def test_workers_share_the_port_and_metrics_add_up(tmp_path: Path) -> None:
    args = ["--manifests", str(CLUSTER), "--upstream", "none", "--workers", "2", "--lameduck", "0"]
    with run_kdns(args, tmp_path=tmp_path) as k:
        time.sleep(0.5)  # let worker 1 bind too (SO_REUSEPORT)
        for _ in range(30):  # fresh source ports: the kernel spreads them over both workers
            assert dig(k.dns_port, "web.testns.svc.cluster.local").answer
        deadline = time.monotonic() + 5
        total = 0.0
        while time.monotonic() < deadline and total < 30:  # snapshots arrive once a second
            _, text = k.http(k.metrics_port, "/metrics")
            total = _counter(text, "coredns_dns_requests_total", zone="cluster.local.", type="A")
            time.sleep(0.2)
        assert total == 30
        assert k.log().count("listening for DNS") == 2


def test_rrl_limits_one_client_and_slips_truncated_replies(tmp_path: Path) -> None:
    import socket

    from dnslib import DNSRecord

    args = ["--manifests", str(CLUSTER), "--upstream", "none", "--lameduck", "0",
            "--rrl-responses-per-second", "5", "--rrl-slip", "2"]  # fmt: skip
    with run_kdns(args, tmp_path=tmp_path) as k:
        got, truncated = 0, 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            for i in range(40):  # one client, far over 5 replies/s
                q = DNSRecord.question("web.testns.svc.cluster.local", "A")
                q.header.id = i
                sock.sendto(q.pack(), ("127.0.0.1", k.dns_port))
            for _ in range(40):
                try:
                    reply = DNSRecord.parse(sock.recv(4096))
                except TimeoutError:
                    break
                got += 1
                truncated += reply.header.tc
        assert 0 < got < 40  # limited, not silenced
        assert truncated > 0  # slip: some limited replies tell the client to use TCP
        assert dig(k.dns_port, "web.testns.svc.cluster.local", tcp=True).answer  # TCP unlimited
        _, text = k.http(k.metrics_port, "/metrics")
        assert _counter(text, "kdns_rrl_responses_total", outcome="slipped") > 0


def test_idle_tcp_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    import socket

    args = ["--manifests", str(CLUSTER), "--upstream", "none", "--lameduck", "0",
            "--tcp-idle-timeout", "1"]  # fmt: skip
    with (
        run_kdns(args, tmp_path=tmp_path) as k,
        socket.create_connection(("127.0.0.1", k.dns_port), timeout=5) as conn,
    ):
        conn.sendall(b"\x00")  # half a length prefix, then silence
        started = time.monotonic()
        assert conn.recv(1) == b""  # the server closed it (RFC 7766 §6.2.3)
        assert time.monotonic() - started < 4


def _wait_for(check: Callable[[], bool], what: str, k: Kdns, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen after {timeout} s:\n{k.log()}")
        time.sleep(0.1)


def test_a_broken_manifest_edit_sets_reload_failed_and_a_fix_clears_it(tmp_path: Path) -> None:
    """docs/operations.md: a failing manifests reload keeps the last good data served and
    says so in kdns_source_reload_failed{source="manifests"}; the next good edit clears it."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    shutil.copy(CLUSTER / "cluster.yaml", folder / "cluster.yaml")
    extra = folder / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: extra}\n")
    args = ["--manifests", str(folder), "--upstream", "none", "--lameduck", "0"]
    with run_kdns(args, tmp_path=tmp_path) as k:

        def metric(name: str) -> float:
            _, text = k.http(k.metrics_port, "/metrics")
            found = [
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == name and s.labels.get("source") == "manifests"
            ]
            assert len(found) == 1, f"{name}{{source=manifests}} not exported once: {found}"
            return found[0]

        assert metric("kdns_source_reload_failed") == 0
        first = metric("kdns_source_last_success_timestamp_seconds")
        assert first > 0

        extra.write_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: testns}\n"
            "spec: {clusterIP: not-an-ip, ports: [{port: 80}]}\n"
        )
        _wait_for(lambda: metric("kdns_source_reload_failed") == 1, "reload_failed 1", k)
        assert metric("kdns_source_last_success_timestamp_seconds") == first
        # The last good data is still served; the broken Service is not.
        assert dig(k.dns_port, "web.testns.svc.cluster.local").answer == [
            "web.testns.svc.cluster.local. 5 IN A 10.96.0.20"
        ]
        assert dig(k.dns_port, "late.testns.svc.cluster.local").status == "NXDOMAIN"

        extra.write_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: testns}\n"
            "spec: {clusterIP: 10.96.0.77, ports: [{port: 80}]}\n"
        )
        _wait_for(lambda: metric("kdns_source_reload_failed") == 0, "reload_failed 0", k)
        assert metric("kdns_source_last_success_timestamp_seconds") > first
        assert dig(k.dns_port, "late.testns.svc.cluster.local").answer == [
            "late.testns.svc.cluster.local. 5 IN A 10.96.0.77"
        ]
