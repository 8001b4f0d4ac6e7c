"""CI smoke of the benchmark harness (bench/run_bench.py --smoke), plus its pure parts.

The e2e test starts NSD and dnsmasq (and kdns once its app imports) on 127.0.0.1 high
ports, checks their answers against the generated workload and runs 2 s of dnsperf at
-Q 2000 per server. It asserts equal answers and zero lost queries, never a QPS figure
(no timed performance assertions in tests).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench import check, dnsclient, workload
from bench.run_bench import parse_dnsperf, percentile

REPO = Path(__file__).resolve().parent.parent


def test_workload_is_deterministic_and_has_the_documented_mix() -> None:
    first = workload.build(300, seed=5)
    second = workload.build(300, seed=5)
    q1 = workload.make_queries(first, count=20_000)
    assert q1 == workload.make_queries(second, count=20_000)
    srv = sum(1 for _, t in q1 if t == "SRV") / len(q1)
    missing = sum(1 for n, _ in q1 if n.startswith("missing-")) / len(q1)
    # docs/benchmarking.md: 85 % A, 10 % SRV, 5 % NXDOMAIN; 20k draws: +-1 % is > 4 sigma
    assert 0.09 < srv < 0.11
    assert 0.04 < missing < 0.06


def test_zone_file_holds_one_a_and_one_srv_per_clusterip_service() -> None:
    wl = workload.build(3, seed=1)
    zone = workload.zone_text(wl)
    assert "svc-2.default.svc.cluster.local. 5 IN A 10.96.0.12" in zone
    srv = "_http._tcp.svc-0.default.svc.cluster.local. 5 IN SRV 0 100 80 "
    assert srv + "svc-0.default.svc.cluster.local." in zone
    # CoreDNS's SOA (docs/rules.md D7):
    # ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>
    assert "IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5" in zone


def test_headless_srv_weight_is_floor_100_over_n() -> None:
    wl = workload.build(50, seed=3, headless_fraction=1.0)
    svc = wl.services[0]
    assert svc.cluster_ip == ""
    assert [r.split()[:3] for r in svc.srv_rdata()] == [["0", "50", "80"], ["0", "50", "80"]]
    assert "kind: EndpointSlice" in workload.manifests_text(wl)


def test_client_parses_a_compressed_reply() -> None:
    question = dnsclient.encode_name("A.b.") + struct.pack("!HH", 1, 1)
    header = struct.pack("!HHHHHH", 7, 0x8403, 1, 0, 1, 0)  # QR AA NXDOMAIN, 1 authority
    soa_rdata = b"\xc0\x0e" + b"\x00" + struct.pack("!IIIII", 1, 2, 3, 4, 5)  # mname -> "b."
    authority = b"\xc0\x0e" + struct.pack("!HHIH", 6, 1, 5, len(soa_rdata)) + soa_rdata
    reply = dnsclient.parse(header + question + authority)
    assert reply.rcode == "NXDOMAIN"
    assert reply.aa
    assert reply.question == question
    assert reply.authority[0] == dnsclient.RR("b.", "SOA", 5, "b. . 1 2 3 4 5")


def test_mixed_case_changes_case_only() -> None:
    name = "svc-1.default.svc.cluster.local."
    mixed = check.mixed_case(name, seed=2)
    assert mixed != name
    assert mixed.lower() == name


def test_dnsperf_summary_and_percentiles() -> None:
    text = (
        "  Queries sent:         100\n  Queries completed:    98 (98.00%)\n"
        "  Queries lost:         2 (2.00%)\n  Response codes:       NOERROR 98 (100.00%)\n"
        "  Queries per second:   99.5\n  Average Latency (s):  0.000086 (min 0.000019)\n"
    )
    stats = parse_dnsperf(text)
    assert (stats["sent"], stats["completed"], stats["lost"]) == (100, 98, 2)
    assert stats["avg_ms"] == pytest.approx(0.086)
    from array import array

    values = array("d", [float(i) for i in range(1, 101)])
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0


def _kdns_works() -> bool:
    res = subprocess.run(
        [sys.executable, "-c", "import kdns.app, kdns.cli"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return res.returncode == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_answers_equal_and_nothing_lost(tmp_path: Path) -> None:
    for tool in ("dnsperf", "nsd", "dnsmasq"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} not installed")
    names = ["nsd", "dnsmasq"] + (["kdns"] if _kdns_works() else [])
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run_bench.py"),
            "--smoke",
            "--servers",
            ",".join(names),
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["check"]["ok"]
    assert set(result["check"]["servers"]) == {f"{n}-1" if n != "dnsmasq" else n for n in names}
    assert all(not s["failures"] for s in result["check"]["servers"].values())
    runs = result["runs"]
    assert {r["server"] for r in runs} == set(result["check"]["servers"])
    assert all(r["lost"] == 0 for r in runs)
    assert all(r["completed"] > 0 for r in runs)
