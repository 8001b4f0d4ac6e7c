"""CI smoke of the benchmark harness (bench/run_bench.py --smoke), plus its pure parts.

The e2e test runs every named query mix (docs/benchmarking.md#workloads): NSD, dnsmasq
and kdns (once its app imports) for the cluster-name rows, dnsmasq, Unbound and kdns as
forwarders to a local Knot for the forwarding rows, all on 127.0.0.1 high ports. It checks
their answers and runs 0.5 s of dnsperf at -Q 1000 per server and mix, asserting equal
answers, zero lost queries and the response codes each mix must produce, never a QPS
figure (no timed performance assertions in tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench import check, dnsclient, servers, workload
from bench.run_bench import (
    Run,
    parse_dnsperf,
    parse_latency_line,
    percentile,
    ratios,
    summarize,
    without_results,
)
from bench.workload import MIXES

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


def test_the_documented_mixes_and_their_anchors() -> None:
    # docs/benchmarking.md#workloads: the rows and who anchors them
    anchors = {name: mix.anchors for name, mix in MIXES.items()}
    assert anchors == {
        "mix": ("nsd", "knot", "dnsmasq"),
        "mix-unique-misses": ("nsd",),
        "unique-misses": ("nsd",),
        "search-misses": ("nsd",),
        "mix-tcp": ("nsd",),
        "mix-do": ("nsd",),
        "forward-unique": ("dnsmasq", "unbound"),
        "forward-hits": ("dnsmasq", "unbound"),
    }
    assert MIXES["mix-tcp"].dnsperf[:2] == ("-m", "tcp")
    assert "-D" in MIXES["mix-do"].dnsperf
    assert {n for n, m in MIXES.items() if m.forward} == {"forward-unique", "forward-hits"}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_unique_files_never_repeat_a_name_and_differ_between_runs(tmp_path: Path) -> None:
    wl = workload.build(100, seed=2)
    workload.make_queries(wl, count=1000)
    for names in ("unique-misses", "search-misses", "forward-unique"):
        a, b = tmp_path / f"{names}-a", tmp_path / f"{names}-b"
        assert workload.write_unique_queries(a, names, lines=250_000, tag="t1", workload=wl)
        workload.write_unique_queries(b, names, lines=1000, tag="t2", workload=wl)
        first = _lines(a)
        assert len(first) == 250_000
        assert len(set(first)) == len(first)
        assert not set(first) & set(_lines(b))
        zone = {"unique-misses": "default.svc.cluster.local. A", "forward-unique": "ext.test. A"}
        assert all(line.endswith(zone.get(names, ".cluster.local. A")) for line in first)
    # search-misses: each new external name under the three search domains in turn
    lines = _lines(tmp_path / "search-misses-b")[:6]
    label = lines[0].split(".")[0]
    assert lines[:3] == [
        f"{label}.example.com.default.svc.cluster.local. A",
        f"{label}.example.com.svc.cluster.local. A",
        f"{label}.example.com.cluster.local. A",
    ]
    assert lines[3].split(".")[0] != label


def test_mix_unique_misses_is_the_mix_with_each_miss_renamed(tmp_path: Path) -> None:
    wl = workload.build(100, seed=2)
    base = workload.make_queries(wl, count=1000)
    path = tmp_path / "q"
    workload.write_unique_queries(path, "mix-unique-misses", lines=3000, tag="t", workload=wl)
    lines = _lines(path)
    misses = [line for line in lines if line.startswith("t-")]
    assert len(misses) == 3 * sum(1 for n, _ in base if n.startswith("missing-"))
    assert len(set(misses)) == len(misses)
    for i, line in enumerate(lines):
        name, qtype = base[i % len(base)]
        if not name.startswith("missing-"):
            assert line == f"{name} {qtype}"


def test_upstream_zone_has_a_wildcard_so_every_external_name_exists() -> None:
    text = workload.ext_zone_text()
    assert f"* IN A {workload.EXT_ADDRESS}" in text
    assert "$ORIGIN ext.test." in text
    hits = workload.forward_hit_queries(1, count=20_000)
    assert len({n for n, _ in hits}) == workload.EXT_NAMES  # 20 draws per name: all appear


def test_query_with_do_carries_an_opt_record_and_the_reply_do_bit_is_read() -> None:
    packet = dnsclient.build_query("a.b.", "A", qid=1, edns_do=True)
    assert struct.unpack_from("!H", packet, 10)[0] == 1  # ARCOUNT: the OPT record
    opt = packet[-11:]
    assert opt[0] == 0  # root owner
    assert struct.unpack("!HHIH", opt[1:]) == (41, 1232, 0x8000, 0)
    plain = dnsclient.build_query("a.b.", "A", qid=1)
    assert dnsclient.parse(plain).edns_do is None
    reply = bytearray(packet)
    reply[2] |= 0x80  # QR
    assert dnsclient.parse(bytes(reply)).edns_do is True
    no_do = dnsclient.build_query("a.b.", "A", qid=1, edns_do=False)
    assert dnsclient.parse(no_do).edns_do is False


def test_latency_lines_of_dnsperf_v() -> None:
    assert parse_latency_line("> NOERROR svc-1.default.svc.cluster.local A 0.000123\n") == (
        pytest.approx(0.123)
    )
    assert parse_latency_line("  Queries sent: 5\n") is None
    assert parse_latency_line("> garbage\n") is None


def _run(server: str, round_no: int, qps: float, cpu: float) -> Run:
    return Run(
        workload="forward-hits",
        mode="pinned",
        server=server,
        round=round_no,
        seconds=1.0,
        qps=qps,
        sent=1,
        completed=1,
        lost=0,
        avg_ms=0.1,
        rcodes="",
        cpu_pct=100.0,
        cpu_ms_per_1k=cpu,
        rss_kb=1,
        pss_kb=1,
        foreign_pct=0.0,
    )


def test_ratios_are_medians_of_per_round_ratios_against_each_anchor_of_the_row() -> None:
    runs = [
        _run("kdns-1", 1, 100.0, 1.0),
        _run("dnsmasq", 1, 50.0, 1.0),
        _run("unbound-1", 1, 200.0, 1.0),
        _run("kdns-1", 2, 90.0, 1.0),
        _run("dnsmasq", 2, 30.0, 1.0),
        _run("unbound-1", 2, 100.0, 1.0),
        _run("kdns-1", 3, 120.0, 1.0),
        _run("dnsmasq", 3, 60.0, 1.0),
        _run("unbound-1", 3, 100.0, 1.0),
    ]
    got = ratios(runs)["forward-hits"]["pinned"]["kdns-1"]
    assert got == {"dnsmasq": 2.0, "unbound": 0.9}  # medians of (2, 3, 2) and (0.5, 0.9, 1.2)


def test_cpu_times_tell_user_time_from_kernel_time() -> None:
    """A child that only computes gains user time; one that only makes system calls gains
    mostly system time (the split run_bench reports as "kernel")."""
    spin = (
        "import time\nt = time.process_time() + 0.3\n"
        "while time.process_time() < t: sum(range(99999))\n"
    )
    calls = (  # (1 MiB from /dev/zero per call: the kernel's copy dwarfs the interpreter)
        "import os, time\nt = time.process_time() + 0.3\nz = os.open('/dev/zero', os.O_RDONLY)\n"
        "while time.process_time() < t: os.read(z, 1 << 20)\n"
    )
    for code, user_heavy in ((spin, True), (calls, False)):
        argv = [sys.executable, "-c", code + "input()"]
        with subprocess.Popen(argv, stdin=subprocess.PIPE) as child:
            waited = 0.0
            while True:  # until the loop is done (its CPU stops growing past 0.3 s)
                user, system = servers.cpu_times(child.pid)
                if user + system >= 0.3 or waited > 20:
                    break
                subprocess.run(["sleep", "0.1"], check=True)
                waited += 0.1
            assert user + system == pytest.approx(servers.cpu_seconds(child.pid), abs=0.02)
            assert (user > system) is user_heavy, (code, user, system)
            child.kill()
    assert servers.cpu_times(2**22 + 7) == (0.0, 0.0)  # (no such process: nothing, no error)


def test_summary_keeps_the_kernel_share_of_cpu_per_query() -> None:
    runs = [_run("kdns-1", r, 100.0, 7.0) for r in (1, 2, 3)]
    for run, kernel in zip(runs, (5.0, 5.5, 4.0), strict=True):
        run.kernel_ms_per_1k = kernel
    row = summarize(runs)["forward-hits"]["pinned"]["kdns-1"]
    assert row["cpu_ms_per_1k_median"] == 7.0
    assert row["kernel_ms_per_1k_median"] == 5.0
    old = summarize([_run("kdns-1", 1, 100.0, 7.0)])["forward-hits"]["pinned"]["kdns-1"]
    assert old["kernel_ms_per_1k_median"] is None  # (a run that did not measure it)


def _kdns_works() -> bool:
    res = subprocess.run(
        [sys.executable, "-c", "import kdns.app, kdns.cli"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return res.returncode == 0


def test_the_recorded_command_leaves_out_where_the_results_were_written() -> None:
    argv = ["--mode", "fixed", "--results", "/srv/x", "-v", "--results=/srv/y", "--rounds", "1"]
    assert without_results(argv) == ["--mode", "fixed", "-v", "--rounds", "1"]


# A path in a results file: absolute outside the system's own directories (the binaries and
# /proc the harness names), or up out of the directory it is read in.
_FOREIGN_PATH = re.compile(
    r"(?<![\w.:/])/(?!(?:usr|etc|proc|sys|dev|bin|sbin|lib)/)[\w.-]+/|(?<![\w.])\.\./"
)


def test_committed_results_name_no_path_of_the_machine_that_wrote_them() -> None:
    # A clone has neither the author's checkout nor their scratch directories: results
    # files are read elsewhere, so such a path in them points at nothing.
    outside = [f"kept in {os.path.join('/srv', 'run', 'x.json')}", os.path.join("..", "up", "y")]
    assert all(_FOREIGN_PATH.search(text) for text in outside)
    ours = "`/proc/stat`, /usr/sbin/nsd, 6.3 ms/1k q, 124k q/s, p50 / p99, https://x.org/a"
    assert not _FOREIGN_PATH.search(ours)
    for path in sorted((REPO / "bench" / "results").iterdir()):
        found = _FOREIGN_PATH.search(path.read_text(errors="replace"))
        assert found is None, f"{path.name} names {found.group(0) if found else ''}"


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_every_mix_answers_equal_and_nothing_lost(tmp_path: Path) -> None:
    for tool in ("dnsperf", "nsd", "dnsmasq", "knotd", "unbound"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} not installed (make tools)")
    names = ["nsd", "dnsmasq", "unbound"] + (["kdns"] if _kdns_works() else [])
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
        timeout=150,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["check"]["ok"]
    checked = result["check"]["workloads"]
    assert set(checked) == set(MIXES)
    for mix_name, by_server in checked.items():
        kinds = {label.split("-")[0] for label in by_server}
        expected = {k for k in ("kdns", *MIXES[mix_name].anchors) if k in names}
        assert kinds == expected, mix_name
        assert all(not s["failures"] for s in by_server.values()), mix_name
    runs = result["runs"]
    assert {(r["workload"], r["server"]) for r in runs} == {
        (w, label) for w, by_server in checked.items() for label in by_server
    }
    assert all(r["lost"] == 0 for r in runs)
    assert all(r["completed"] > 0 for r in runs)
    assert not any(r["names_repeated"] for r in runs)
    latency = [r for r in runs if r["round"] == 0]  # the dnsperf -v run of each server
    assert len(latency) == len(runs) // 2
    assert all(r["p50_ms"] is not None and r["p99_ms"] >= r["p50_ms"] for r in latency)
    for r in runs:  # each mix sends what it says
        codes = {part.split()[0] for part in r["rcodes"].split(", ")}
        if r["workload"] in ("unique-misses", "search-misses"):
            assert codes == {"NXDOMAIN"}, r
        elif MIXES[r["workload"]].forward:
            assert codes == {"NOERROR"}, r
        else:
            assert codes == {"NOERROR", "NXDOMAIN"}, r
    forwarded = [r for r in runs if MIXES[r["workload"]].forward]
    assert all(r["upstream_cpu_pct"] is not None for r in forwarded)
    assert {(row["workload"], row["anchor"].split("-")[0]) for row in result["rows"]} == {
        (w, a) for w in MIXES for a in MIXES[w].anchors if a in names
    }
