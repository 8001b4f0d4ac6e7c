"""kind's stock Corefile, unchanged, served by `kdns serve --corefile` on port 53 in a
pod-like sandbox (private network and /etc/resolv.conf), fed by `--manifests`, with
dnsmasq as the upstream that /etc/resolv.conf names. Expected behaviour is CoreDNS's for
each directive (see docs/operations.md, "Corefile")."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.kdns_process import ROOT, require_tool
from tests.e2e.sandbox import Sandbox, dnsmasq

pytestmark = pytest.mark.e2e

DATA = ROOT / "tests" / "data"
CLUSTER = DATA / "e2e-cluster"
KIND = DATA / "e2e-corefile" / "kind.Corefile"
KIND_STUB = DATA / "e2e-corefile" / "kind-stub.Corefile"
# Upstreams on IPv6 addresses of the sandbox's loopback: `.:53` binds the IPv4 wildcard,
# which a resolver listening on 127.0.0.x:53 (TCP) would collide with, as in a pod.
UPSTREAM = "::1"  # what the sandbox's /etc/resolv.conf names
CORP = "fd00::53"  # the stub domain's own upstream (kind-stub.Corefile)
UPSTREAM_OPTIONS = (
    "--address=/upstream.test/192.0.2.7",
    "--ptr-record=7.2.0.192.in-addr.arpa,host.upstream.test",
    "--local-ttl=300",
)


@dataclass
class Running:
    box: Sandbox
    proc: subprocess.Popen[bytes]
    log: Path
    corefile: Path

    def dig(self, *args: str) -> str:
        out = self.box.run(["dig", "@127.0.0.1", "+time=2", "+tries=1", *args]).stdout
        return out

    def answers(self, *args: str) -> list[list[str]]:
        out = self.dig("+noall", "+answer", *args)
        return [line.split() for line in out.splitlines() if line.strip()]

    def metric(self, family: str, **labels: str) -> float:
        _, text = self.box.http("http://127.0.0.1:9153/metrics")
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(family + "{") and not line.startswith(family + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def serve(box: Sandbox, corefile: Path) -> Running:
    log = box.tmp_path / "kdns.log"
    cmd = [sys.executable, "-m", "kdns", "serve", "--corefile", str(corefile),
           "--manifests", str(CLUSTER)]  # fmt: skip
    proc = box.start(cmd, log=log)
    try:
        box.wait_http("http://127.0.0.1:8181/ready")
    except AssertionError:
        raise AssertionError(log.read_text()) from None
    return Running(box, proc, log, corefile)


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    require_tool("dig")
    require_tool("dnsmasq")
    tmp = tmp_path_factory.mktemp("kind")
    with (
        Sandbox(
            tmp, resolv_conf=f"nameserver {UPSTREAM}\noptions ndots:5\n", addresses=[f"{CORP}/128"]
        ) as box,
        dnsmasq(box, UPSTREAM, *UPSTREAM_OPTIONS),
    ):
        running = serve(box, KIND)
        yield running
        box.stop(running.proc)


def test_cluster_answers_carry_the_corefiles_ttl(kind: Running) -> None:
    rows = kind.answers("web.testns.svc.cluster.local")
    assert rows == [["web.testns.svc.cluster.local.", "30", "IN", "A", "10.96.0.20"]]
    assert " aa" in kind.dig("web.testns.svc.cluster.local").split("flags:")[1].split(";")[0]


def test_pod_records_with_pods_insecure(kind: Running) -> None:
    rows = kind.answers("10-244-0-5.testns.pod.cluster.local")
    assert [r[4] for r in rows] == ["10.244.0.5"]


def test_cluster_reverse_names_are_answered_here(kind: Running) -> None:
    rows = kind.answers("-x", "10.96.0.20")
    assert [r[4] for r in rows] == ["web.testns.svc.cluster.local."]


def test_other_reverse_names_fall_through_to_forward(kind: Running) -> None:
    rows = kind.answers("-x", "192.0.2.7")
    assert [r[4] for r in rows] == ["host.upstream.test."]


def test_forwarded_answers_are_capped_at_the_cache_ttl(kind: Running) -> None:
    direct = kind.box.run(["dig", f"@{UPSTREAM}", "+noall", "+answer", "a.upstream.test"]).stdout
    assert direct.split()[1] == "300"  # what the upstream says
    rows = kind.answers("a.upstream.test")
    assert rows[0][4] == "192.0.2.7"
    assert int(rows[0][1]) <= 30  # cache 30 caps it


def test_a_cluster_miss_is_nxdomain_and_never_forwarded(kind: Running) -> None:
    out = kind.dig("nope.testns.svc.cluster.local")
    assert "status: NXDOMAIN" in out


def test_health_ready_and_metrics_on_the_corefiles_addresses(kind: Running) -> None:
    assert kind.box.http("http://127.0.0.1:8080/health") == (200, "OK")
    assert kind.box.http("http://127.0.0.1:8181/ready")[0] == 200
    kind.dig("web.testns.svc.cluster.local")
    assert kind.metric("coredns_dns_requests_total") >= 1
    for plugin in ("cache", "errors", "forward", "kubernetes", "loadbalance", "loop"):
        assert kind.metric("coredns_plugin_enabled", name=plugin) == 1, plugin
    assert kind.metric("coredns_plugin_enabled", name="rewrite") == 0


def test_loadbalance_rotates_a_headless_services_answers(kind: Running) -> None:
    orders = [tuple(r[4] for r in kind.answers("hdls.testns.svc.cluster.local")) for _ in range(4)]
    assert len(orders[0]) >= 2
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert len({o[0] for o in orders}) >= 2  # the first record changes from query to query


# ---- stub domains, reload, lameduck: each with a kdns of its own ---------------------------


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Running]:
    require_tool("dig")
    require_tool("dnsmasq")
    corefile = tmp_path / "Corefile"
    shutil.copy(KIND_STUB, corefile)
    with (
        Sandbox(tmp_path, resolv_conf=f"nameserver {UPSTREAM}\n", addresses=[f"{CORP}/128"]) as box,
        dnsmasq(box, UPSTREAM, *UPSTREAM_OPTIONS),
        dnsmasq(box, CORP, "--address=/corp.example/192.0.2.99"),
    ):
        running = serve(box, corefile)
        yield running
        box.stop(running.proc)


def test_a_stub_domain_goes_to_its_own_upstream(stub: Running) -> None:
    assert [r[4] for r in stub.answers("app.corp.example")] == ["192.0.2.99"]
    assert [r[4] for r in stub.answers("a.upstream.test")] == ["192.0.2.7"]
    # The corp upstream only knows corp.example, so the answer above came from the other.
    assert "192.0.2.7" not in stub.box.run(["dig", f"@{CORP}", "a.upstream.test"]).stdout


def _edit_ttl(corefile: Path, ttl: int) -> None:
    text = re.sub(r"ttl \d+", f"ttl {ttl}", corefile.read_text())
    corefile.write_text(text)


def _ttl(running: Running) -> int:
    return int(running.answers("web.testns.svc.cluster.local")[0][1])


def _eventually(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_reload_after_an_edit_and_after_sighup(stub: Running) -> None:
    assert _ttl(stub) == 30
    _edit_ttl(stub.corefile, 10)  # `reload 2s 1s` notices the change
    _eventually(lambda: _ttl(stub) == 10)
    _edit_ttl(stub.corefile, 20)
    stub.proc.send_signal(signal.SIGHUP)  # nsenter passes signals on to kdns
    _eventually(lambda: _ttl(stub) == 20, timeout=3)
    assert stub.proc.poll() is None  # SIGHUP reloads; it does not kill


def test_a_bad_edit_is_kept_out_and_counted(stub: Running) -> None:
    before = stub.metric("coredns_reload_failed_total")
    stub.corefile.write_text(stub.corefile.read_text().replace("ttl 30", "ttl 30\n  nonsense {"))
    stub.proc.send_signal(signal.SIGHUP)
    _eventually(lambda: stub.metric("coredns_reload_failed_total") == before + 1)
    assert _ttl(stub) == 30
    assert f"{stub.corefile}:" in stub.log.read_text()
    assert stub.proc.poll() is None


def test_lameduck_keeps_answering_with_ready_503(stub: Running) -> None:
    stub.proc.send_signal(signal.SIGTERM)
    _eventually(lambda: stub.box.http("http://127.0.0.1:8181/ready")[0] == 503, timeout=3)
    assert stub.box.http("http://127.0.0.1:8080/health")[0] == 200
    assert _ttl(stub) == 30  # still answering
    started = time.monotonic()
    assert stub.proc.wait(15) == 0
    assert time.monotonic() - started > 3  # lameduck 5s
