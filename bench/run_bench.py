"""kdns benchmark: kdns against NSD, Knot, dnsmasq and Unbound with dnsperf, on 127.0.0.1 only.

Owns the run order described in docs/benchmarking.md#the-harness: generate the workload; for
each named query mix (`--workload`, workload.MIXES) start kdns and the mix's anchors on their
own loopback ports (and, for a forwarding row, the local upstream they forward to), check
that their answers match, then run the dnsperf modes (pinned, fixed rate, and for `mix`
the whole machine) in interleaved rounds, and write a table with kdns/anchor ratios per
row to `bench/results/latest.{json,md}`. `--smoke` is the short CI variant: every mix,
0.5 s per server at a low fixed rate, one round, and a non-zero exit on mismatch or loss.

It must stop every process it started, by process group, in `finally` (also on Ctrl-C
and SIGTERM), and never send a packet anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run_bench.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import check, dnsclient, servers, workload
from bench.servers import HOST, Server
from bench.workload import MIXES, Mix

log = logging.getLogger("bench.run_bench")

MODES = ("pinned", "fixed", "whole")
WHOLE_MIXES = ("mix",)  # the whole-machine mode runs for these mixes only
# Unique-name files are sized for the rate a run can reach, so that no name repeats: the
# fixed rate, or in the unthrottled modes UNIQUE_CEILING queries/s, well above what one
# pinned dnsperf thread sends here (about 175k/s, docs/benchmarking.md). Sizing from the
# warm-up's rate was tried and failed: a disturbed warm-up undersized a later run's file.
UNIQUE_CEILING = 300_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FOREIGN_FLAG = 0.10  # flag runs where other processes used > 10 % of a core (docs/benchmarking.md)
QUIET_BELOW = 0.15  # wait for < 15 % of a core of foreign CPU before each run


@dataclass(slots=True)
class Run:
    """One dnsperf run against one server (docs/benchmarking.md#the-harness, step 5)."""

    workload: str
    mode: str
    server: str
    round: int
    seconds: float
    qps: float
    sent: int
    completed: int
    lost: int
    avg_ms: float
    rcodes: str
    cpu_pct: float  # server utime+stime over wall time, % of one core
    cpu_ms_per_1k: float  # server CPU ms per 1000 completed queries
    rss_kb: int
    pss_kb: int
    foreign_pct: float  # CPU of every other process, % of one core
    steal_pct: float = 0.0  # hypervisor steal over the box, % of one core
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    upstream_cpu_pct: float | None = None  # forwarding rows: the local upstream's CPU
    query_lines: int | None = None  # unique-name rows: lines in this run's own file
    names_repeated: bool = False  # dnsperf sent more than query_lines: names came round again
    kernel_ms_per_1k: float | None = None  # the part of cpu_ms_per_1k that is system time


# ---------------------------------------------------------------- dnsperf


_STAT_RE = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "avg": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
    "rcodes": re.compile(r"Response codes:\s+(.*)"),
}


def parse_dnsperf(text: str) -> dict[str, Any]:
    """The summary numbers of one dnsperf run; raises ValueError if it printed none."""
    out: dict[str, Any] = {}
    for key, rx in _STAT_RE.items():
        m = rx.search(text)
        if m is None:
            if key == "rcodes":
                out[key] = ""
                continue
            raise ValueError(f"dnsperf output lacks {key!r}:\n{text[-2000:]}")
        out[key] = m.group(1).strip()
    return {
        "sent": int(out["sent"]),
        "completed": int(out["completed"]),
        "lost": int(out["lost"]),
        "qps": float(out["qps"]),
        "avg_ms": float(out["avg"]) * 1000.0,
        "rcodes": out["rcodes"],
    }


def parse_latency_line(line: str) -> float | None:
    """The latency in ms of one `dnsperf -v` per-query line (`> NOERROR name A 0.000123`)."""
    if not line.startswith("> "):
        return None
    try:
        return float(line.rsplit(None, 1)[1]) * 1000.0
    except (ValueError, IndexError):
        return None


def percentile(sorted_values: array[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values) - 1e-9)))
    return sorted_values[rank - 1]


@dataclass(slots=True)
class Plan:
    """How one mode drives dnsperf and where the servers run."""

    mode: str
    dnsperf_args: list[str]
    client_cpus: str | None
    server_cpus: str | None
    workers: int
    rate: int | None = None  # dnsperf -Q


def plans(args: argparse.Namespace, mix: Mix) -> dict[str, Plan]:
    """The modes for one mix: the mix's dnsperf flags (TCP, DO) are added to each.

    The upstream of a forwarding row shares CPU 0 with dnsperf, so the server under test
    keeps CPU 1 to itself (docs/benchmarking.md#forwarding-rows).
    """
    pin = (os.cpu_count() or 1) >= 2
    client = "0" if pin else None
    server = "1" if pin else None
    base = ["-c", "8", "-q", "100", *mix.dnsperf]
    whole = ["-c", "32", "-q", "400", "-T", "2", *mix.dnsperf]
    return {
        "pinned": Plan("pinned", base, client, server, 1),
        "fixed": Plan("fixed", [*base, "-Q", str(args.rate)], client, server, 1, args.rate),
        "whole": Plan("whole", whole, None, None, args.workers),
    }


class Bench:
    """Runs the servers and dnsperf; remembers every child so `close()` can stop them."""

    def __init__(self, args: argparse.Namespace, files: workload.Files, workdir: Path) -> None:
        self.args = args
        self.files = files
        self.workdir = workdir
        self.wl: workload.Workload | None = None
        self.running: list[Server] = []
        self.upstream: Server | None = None
        self.dnsperf: subprocess.Popen[str] | None = None
        self.runs: list[Run] = []
        self.discarded: list[Run] = []  # FOREIGN runs that were measured again
        self.serial = 0  # tags the names of each unique-name file

    # -- processes

    def start_upstream(self, plan: Plan) -> Server:
        """The forwarding rows' authoritative upstream, pinned with the client."""
        server = servers.upstream_knot(self.files, self.workdir, cpus=plan.client_cpus)
        self.running.append(server)
        server.start()
        took = server.wait_ready(name=workload.ext_name(0), timeout=self.args.start_timeout)
        print(
            f"  {server.label:<13} ready on {HOST}:{server.port} after {took:.2f}s"
            f" (CPUs {plan.client_cpus or 'any'})",
            flush=True,
        )
        self.upstream = server
        return server

    def start(self, kinds: list[str], plan: Plan, mix: Mix, ready_name: str) -> list[Server]:
        started: list[Server] = []
        upstream = self.upstream.port if (mix.forward and self.upstream) else None
        for kind in kinds:
            server = servers.LAUNCHERS[kind](
                self.files,
                self.workdir,
                workers=plan.workers,
                cpus=plan.server_cpus,
                upstream=upstream,
            )
            self.running.append(server)
            server.start()
            started.append(server)
        for server in started:
            took = server.wait_ready(
                name=ready_name, timeout=self.args.start_timeout, rd=mix.forward
            )
            print(
                f"  {server.label:<13} ready on {HOST}:{server.port} after {took:.2f}s", flush=True
            )
        return started

    def stop(self, group: list[Server]) -> None:
        for server in group:  # signal all first: they shut down in parallel
            server.terminate()
        for server in group:
            server.stop()
            if server in self.running:
                self.running.remove(server)
            if server is self.upstream:
                self.upstream = None

    def close(self) -> None:
        if self.dnsperf is not None and self.dnsperf.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.dnsperf.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.dnsperf.wait(timeout=5)
        self.stop(list(self.running))

    # -- query files

    def query_file(self, mix: Mix, plan: Plan, seconds: float) -> tuple[Path, int | None]:
        """The dnsperf file for one run: the static file, or a fresh file of unique names
        sized so that dnsperf does not come round to its start (returns its line count)."""
        if not mix.unique:
            return (
                self.files.hits_queries if mix.names == "forward-hits" else self.files.queries
            ), None
        assert self.wl is not None
        qps = float(plan.rate) if plan.rate else float(UNIQUE_CEILING)
        lines = int(seconds * qps * 1.1) + 1000
        self.serial += 1
        tag = f"u{self.serial}"
        path = self.workdir / f"unique-{tag}.txt"
        workload.write_unique_queries(path, mix.names, lines=lines, tag=tag, workload=self.wl)
        return path, lines

    # -- measurement

    def wait_quiet(self, exclude: set[int]) -> float:
        """Wait (bounded by --quiet-wait) until other processes use < 15 % of a core."""
        deadline = time.monotonic() + self.args.quiet_wait
        share = 0.0
        while True:
            before = servers.all_cpu()
            time.sleep(0.5)
            share = servers.foreign_cpu(before, servers.all_cpu(), exclude) / 0.5
            if share < QUIET_BELOW or time.monotonic() >= deadline:
                return share

    def dnsperf_run(
        self,
        server: Server,
        plan: Plan,
        datafile: Path,
        *,
        seconds: float,
        verbose: bool = False,
    ) -> tuple[
        dict[str, Any], tuple[float, float], float, float, float, float | None, array[float]
    ]:
        """One dnsperf run: (stats, server CPU s (all, system), wall s, foreign CPU s, steal s,
        upstream CPU s or None, latencies)."""
        argv = [servers.BINARIES["dnsperf"], "-s", HOST, "-p", str(server.port)]
        argv += ["-d", str(datafile), "-l", f"{seconds:g}", *plan.dnsperf_args]
        if verbose:
            argv.append("-v")
        if plan.client_cpus:
            argv = ["taskset", "-c", plan.client_cpus, *argv]
        ours = {p for s in self.running for p in s.pids()} | {os.getpid()}
        upstream = self.upstream
        steal0 = servers.steal_seconds()
        up0 = upstream.cpu() if upstream else 0.0
        (user0, kernel0), all0, t0 = server.cpu_times(), servers.all_cpu(), time.monotonic()
        self.dnsperf = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        latencies: array[float] = array("d")
        tail: list[str] = []
        assert self.dnsperf.stdout is not None
        for line in self.dnsperf.stdout:
            if line.startswith("> "):
                value = parse_latency_line(line)
                if value is not None:
                    latencies.append(value)
            else:
                tail.append(line)
        self.dnsperf.wait(timeout=seconds + 60)
        wall = time.monotonic() - t0
        user, kernel = server.cpu_times()
        user, kernel = user - user0, kernel - kernel0
        cpu = user + kernel
        up_cpu = upstream.cpu() - up0 if upstream else None
        foreign = servers.foreign_cpu(all0, servers.all_cpu(), ours | {self.dnsperf.pid})
        steal = servers.steal_seconds() - steal0
        self.dnsperf = None
        stats = parse_dnsperf("".join(tail))
        return stats, (cpu, kernel), wall, foreign, steal, up_cpu, latencies

    def measure(
        self,
        mix: Mix,
        server: Server,
        plan: Plan,
        round_no: int,
        *,
        seconds: float,
        verbose: bool = False,
    ) -> Run:
        datafile, lines = self.query_file(mix, plan, seconds)
        try:
            others = {p for s in self.running for p in s.pids()} | {os.getpid()}
            if self.args.quiet_wait > 0 and round_no >= 0:  # not before a warm-up
                self.wait_quiet(others)
            stats, (cpu, kernel), wall, foreign, steal, up_cpu, lat = self.dnsperf_run(
                server, plan, datafile, seconds=seconds, verbose=verbose
            )
        finally:
            if lines is not None:
                datafile.unlink(missing_ok=True)
        rss, pss = server.memory()
        run = Run(
            workload=mix.name,
            mode=plan.mode,
            server=server.label,
            round=round_no,
            seconds=round(wall, 3),
            qps=stats["qps"],
            sent=stats["sent"],
            completed=stats["completed"],
            lost=stats["lost"],
            avg_ms=round(stats["avg_ms"], 4),
            rcodes=stats["rcodes"],
            cpu_pct=round(100.0 * cpu / wall, 1),
            cpu_ms_per_1k=round(1e6 * cpu / max(1, stats["completed"]), 4),
            rss_kb=rss,
            pss_kb=pss,
            foreign_pct=round(100.0 * foreign / wall, 1),
            steal_pct=round(100.0 * steal / wall, 1),
            upstream_cpu_pct=None if up_cpu is None else round(100.0 * up_cpu / wall, 1),
            query_lines=lines,
            names_repeated=lines is not None and stats["sent"] > lines,
            kernel_ms_per_1k=round(1e6 * kernel / max(1, stats["completed"]), 4),
        )
        if verbose and lat:
            srt = array("d", sorted(lat))
            run.p50_ms = round(percentile(srt, 50), 4)
            run.p99_ms = round(percentile(srt, 99), 4)
            run.p999_ms = round(percentile(srt, 99.9), 4)
        return run

    def run_mode(self, mix: Mix, plan: Plan, group: list[Server]) -> None:
        args = self.args
        pinned_self = False
        if plan.client_cpus and hasattr(os, "sched_setaffinity"):
            # The harness reads dnsperf's output (millions of -v lines): keep it on the
            # client's core, off the server's (docs/benchmarking.md#the-harness).
            saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {int(c) for c in plan.client_cpus.split(",")})
            pinned_self = True
        try:
            if args.warmup > 0:
                for server in group:
                    self.measure(mix, server, plan, -1, seconds=args.warmup)
            for round_no in range(1, args.rounds + 1):
                shift = (round_no - 1) % len(group)
                for server in group[shift:] + group[:shift]:  # rotate who goes first
                    self.measure_clean(mix, server, plan, round_no, verbose=False)
            if args.percentiles:
                for server in group:
                    self.measure_clean(mix, server, plan, 0, verbose=True)
        finally:
            if pinned_self:
                os.sched_setaffinity(0, saved)

    def measure_clean(
        self, mix: Mix, server: Server, plan: Plan, round_no: int, *, verbose: bool
    ) -> None:
        """Measure and record one run; a run that other processes disturbed (FOREIGN) is
        measured again, up to --foreign-retries times, in the same slot of the round."""
        for attempt in range(self.args.foreign_retries + 1):
            run = self.measure(
                mix, server, plan, round_no, seconds=self.args.seconds, verbose=verbose
            )
            if run.foreign_pct <= 100 * FOREIGN_FLAG or attempt == self.args.foreign_retries:
                self.record(run)
                return
            self.discarded.append(run)
            print(
                f"  {run.workload:<17} {run.mode:<6} {run.server:<10} discarded: other processes"
                f" used {run.foreign_pct:.0f} % of a core; measuring again",
                flush=True,
            )

    def record(self, run: Run) -> None:
        self.runs.append(run)
        kind = "latency (-v)" if run.round == 0 else f"round {run.round}"
        pct = "" if run.p50_ms is None else f" p50 {run.p50_ms:.3f} p99 {run.p99_ms:.3f} ms"
        flag = " FOREIGN" if run.foreign_pct > 100 * FOREIGN_FLAG else ""
        if run.names_repeated:
            flag += " NAMES-REPEATED"
        up = "" if run.upstream_cpu_pct is None else f" upstream {run.upstream_cpu_pct:.0f}%"
        kernel = _num(run.kernel_ms_per_1k, ".2f")
        print(
            f"  {run.workload:<17} {run.mode:<6} {kind:<12} {run.server:<10}"
            f" {run.qps:>10,.0f} qps  lost {run.lost:<5} avg {run.avg_ms:.3f} ms{pct}"
            f"  cpu {run.cpu_pct:5.1f}%{up}  {run.cpu_ms_per_1k:.2f} ms/1k (kernel {kernel})"
            f"  rss {run.rss_kb / 1024:.1f} MB"
            f"  foreign {run.foreign_pct:.1f}% steal {run.steal_pct:.1f}%{flag}",
            flush=True,
        )


# ---------------------------------------------------------------- summary


def summarize(runs: list[Run]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per workload, mode and server: medians over rounds, percentiles from the -v run."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for name in dict.fromkeys(r.workload for r in runs):
        for mode in MODES:
            mine = [r for r in runs if r.workload == name and r.mode == mode]
            for label in dict.fromkeys(r.server for r in mine):
                timed = [r for r in mine if r.server == label and r.round > 0]
                verbose = [r for r in mine if r.server == label and r.round == 0]
                if not timed:
                    continue
                ups = [r.upstream_cpu_pct for r in timed if r.upstream_cpu_pct is not None]
                kernels = [r.kernel_ms_per_1k for r in timed if r.kernel_ms_per_1k is not None]
                row: dict[str, Any] = {
                    "qps_median": statistics.median(r.qps for r in timed),
                    "qps_runs": [round(r.qps) for r in timed],
                    "lost_total": sum(r.lost for r in timed) + sum(r.lost for r in verbose),
                    "avg_ms_median": statistics.median(r.avg_ms for r in timed),
                    "cpu_pct_median": statistics.median(r.cpu_pct for r in timed),
                    "cpu_ms_per_1k_median": statistics.median(r.cpu_ms_per_1k for r in timed),
                    "kernel_ms_per_1k_median": statistics.median(kernels) if kernels else None,
                    "rss_mb": round(timed[-1].rss_kb / 1024, 1),
                    "pss_mb": round(timed[-1].pss_kb / 1024, 1),
                    "foreign_pct_max": max(r.foreign_pct for r in timed),
                    "steal_pct_max": max(r.steal_pct for r in timed),
                    "upstream_cpu_pct_median": statistics.median(ups) if ups else None,
                    "names_repeated": any(r.names_repeated for r in timed + verbose),
                    "p50_ms": verbose[0].p50_ms if verbose else None,
                    "p99_ms": verbose[0].p99_ms if verbose else None,
                    "p999_ms": verbose[0].p999_ms if verbose else None,
                }
                cpu = row["cpu_pct_median"]
                row["qps_per_core"] = round(row["qps_median"] / (cpu / 100.0)) if cpu > 0 else None
                out.setdefault(name, {}).setdefault(mode, {})[label] = row
    return out


def ratios(runs: list[Run]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per workload: median over rounds of per-round ratios of every server to each of the
    workload's anchors: QPS (pinned, whole) or CPU per query (fixed)."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in dict.fromkeys(r.workload for r in runs):
        anchors = MIXES[name].anchors if name in MIXES else ()
        for mode in MODES:
            timed = [r for r in runs if r.workload == name and r.mode == mode and r.round > 0]
            by_round: dict[int, dict[str, Run]] = {}
            for r in timed:
                by_round.setdefault(r.round, {})[r.server] = r
            for label in dict.fromkeys(r.server for r in timed):
                for ref_kind in anchors:
                    per_round: list[float] = []
                    for rr in by_round.values():
                        ref = next((v for k, v in rr.items() if k.split("-")[0] == ref_kind), None)
                        mine = rr.get(label)
                        if ref is None or mine is None:
                            continue
                        if mode == "fixed":
                            if ref.cpu_ms_per_1k > 0:
                                per_round.append(mine.cpu_ms_per_1k / ref.cpu_ms_per_1k)
                        elif ref.qps > 0:
                            per_round.append(mine.qps / ref.qps)
                    if per_round:
                        value = round(statistics.median(per_round), 3)
                        by_mode = out.setdefault(name, {}).setdefault(mode, {})
                        by_mode.setdefault(label, {})[ref_kind] = value
    return out


def headline(
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]],
    rat: dict[str, dict[str, dict[str, dict[str, float]]]],
) -> list[dict[str, Any]]:
    """One row per (workload, anchor): kdns and the anchor side by side, pinned QPS and
    latency/CPU at the fixed rate, with kdns/anchor ratios."""
    rows: list[dict[str, Any]] = []
    for name, modes in summary.items():
        mix = MIXES[name]
        pinned, fixed = modes.get("pinned", {}), modes.get("fixed", {})
        labels = list(dict.fromkeys([*pinned, *fixed]))
        kdns = next((lb for lb in labels if lb.startswith("kdns")), None)
        for anchor in mix.anchors:
            ref = next((lb for lb in labels if lb.split("-")[0] == anchor), None)
            if ref is None:
                continue

            def cell(mode: str, label: str | None, key: str, modes: Any = modes) -> Any:
                return modes.get(mode, {}).get(label or "", {}).get(key)

            rows.append(
                {
                    "workload": name,
                    "names": "forwarded" if mix.forward else "cluster",
                    "anchor": ref,
                    "kdns": kdns,
                    "kdns_qps": cell("pinned", kdns, "qps_median"),
                    "anchor_qps": cell("pinned", ref, "qps_median"),
                    "qps_ratio": rat.get(name, {})
                    .get("pinned", {})
                    .get(kdns or "", {})
                    .get(anchor),
                    "kdns_fixed_qps": cell("fixed", kdns, "qps_median"),
                    "anchor_fixed_qps": cell("fixed", ref, "qps_median"),
                    "kdns_p99_ms": cell("fixed", kdns, "p99_ms"),
                    "anchor_p99_ms": cell("fixed", ref, "p99_ms"),
                    "kdns_cpu_ms_per_1k": cell("fixed", kdns, "cpu_ms_per_1k_median"),
                    "anchor_cpu_ms_per_1k": cell("fixed", ref, "cpu_ms_per_1k_median"),
                    "cpu_ratio": rat.get(name, {}).get("fixed", {}).get(kdns or "", {}).get(anchor),
                    "kdns_lost": sum(
                        (cell(m, kdns, "lost_total") or 0) for m in ("pinned", "fixed")
                    ),
                    "anchor_lost": sum(
                        (cell(m, ref, "lost_total") or 0) for m in ("pinned", "fixed")
                    ),
                }
            )
    return rows


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


SATURATED = "†"


def _p99(p99: Any, fixed_qps: Any, rate: int) -> str:
    """The p99 cell, marked when the server did not keep up with the fixed rate."""
    text = _num(p99, ".3f")
    if p99 is not None and fixed_qps is not None and fixed_qps < 0.95 * rate:
        text += SATURATED
    return text


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rate = int(result["args"]["rate"])
    wl = result["workload"]
    lines = [
        f"# kdns benchmark results ({result['date']})",
        "",
        f"kdns commit {m['versions']['kdns']}. "
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
        f"Python {m['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "kdns")
        + ".",
        "",
        f"Data: {wl['services']} Services (seed {wl['seed']}, headless fraction"
        f" {wl['headless_fraction']}); static query files of {wl['queries']} lines; unique-name"
        " files generated per run, sized so that no name repeats within a run.",
        f"Command: `{result['command']}`",
        "",
        f"Other processes on the box: {len(result['discarded_runs'])} runs disturbed by them"
        f" (> {100 * FOREIGN_FLAG:.0f} % of a core) were measured again;"
        f" {sum(1 for r in result['runs'] if r['foreign_pct'] > 100 * FOREIGN_FLAG)} of the"
        f" {len(result['runs'])} kept runs are still flagged (foreign % in the tables below).",
        "",
        "## Summary: kdns against its anchors",
        "",
        f"Pinned: server on CPU 1, `taskset -c 0 dnsperf -c 8 -q 100` (+ the row's flags);"
        f" fixed: the same at `-Q {result['args']['rate']}`, p99 from one `dnsperf -v` run;"
        " CPU per query from the fixed-rate rounds (lower is better). Forwarded rows: the"
        " upstream (Knot, `*.ext.test.`) on CPU 0 with dnsperf.",
        "",
        "| workload | names | anchor | kdns q/s | anchor q/s | kdns/anchor q/s |"
        " kdns p99 ms | anchor p99 ms | kdns CPU ms/1k q | anchor CPU ms/1k q |"
        " kdns/anchor CPU per query | lost (kdns/anchor) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{row['workload']}`",
                    row["names"],
                    row["anchor"],
                    _num(row["kdns_qps"], ",.0f"),
                    _num(row["anchor_qps"], ",.0f"),
                    f"**{_num(row['qps_ratio'], '.2f')}**",
                    _p99(row["kdns_p99_ms"], row["kdns_fixed_qps"], rate),
                    _p99(row["anchor_p99_ms"], row["anchor_fixed_qps"], rate),
                    _num(row["kdns_cpu_ms_per_1k"], ".2f"),
                    _num(row["anchor_cpu_ms_per_1k"], ".2f"),
                    _num(row["cpu_ratio"], ".2f"),
                    f"{row['kdns_lost']}/{row['anchor_lost']}",
                ]
            )
            + " |"
        )
    if any(SATURATED in line for line in lines):
        lines += [
            "",
            f"{SATURATED} below 95 % of the fixed rate: the server was saturated, so this p99 is"
            " queueing in front of it (Little's law), not its latency at that rate.",
        ]
    lines += ["", "Workloads:", ""]
    for name, info in result["mixes"].items():
        flags = " ".join(info["dnsperf"])
        extra = f" (`dnsperf {flags}`)" if flags else ""
        lines.append(f"* `{name}`: {info['summary']}{extra}; anchors {', '.join(info['anchors'])}.")
    for name, up in result["upstreams"].items():
        lines.append(
            f"* `{name}` upstream: {up['server']} on CPUs {up['cpus']}, direct round trip"
            f" p50 {up['rtt_p50_ms']:.3f} ms, max {up['rtt_max_ms']:.3f} ms"
            " (sequential queries from the harness)."
        )
    lines += [
        "",
        "## Answer check",
        "",
        (
            "All servers matched."
            if result["check"]["ok"]
            else "**MISMATCH**: nothing after it was timed."
        ),
    ]
    for name, by_server in result["check"]["workloads"].items():
        for label, info in by_server.items():
            for note in info["notes"]:
                lines.append(f"* `{name}` {label}: {note}")
            for failure in info["failures"]:
                lines.append(f"* **`{name}` {label} FAILED**: {failure}")
    titles = {
        "pinned": "pinned: server on CPU 1, `taskset -c 0 dnsperf -c 8 -q 100`",
        "fixed": f"fixed load: pinned, `-Q {result['args']['rate']}`",
        "whole": "whole machine: nothing pinned, `dnsperf -c 32 -q 400 -T 2`",
    }
    for name, modes in result["summary"].items():
        mix = MIXES[name]
        flags = " ".join(mix.dnsperf)
        lines += ["", f"## `{name}`: {mix.summary}" + (f" (`{flags}`)" if flags else "")]
        for mode, rows in modes.items():
            rat = result["ratios"].get(name, {}).get(mode, {})
            refs = list(mix.anchors)
            what = "CPU/query" if mode == "fixed" else "QPS"
            lines += ["", f"### {name}, {titles[mode]}", ""]
            head = "| server | QPS median | runs | lost | avg ms | p50 / p99 / p99.9 ms | CPU % |"
            head += " CPU ms/1k q (kernel) | RSS MB (PSS) | foreign % max |"
            ncols = 10 + len(refs)
            if mix.forward:
                head += " upstream CPU % |"
                ncols += 1
            head += "".join(f" {what} vs {r} |" for r in refs)
            lines.append(head)
            lines.append("|---" * ncols + "|")
            for label, row in rows.items():
                pct = (
                    "-"
                    if row["p50_ms"] is None
                    else f"{row['p50_ms']:.3f} / {row['p99_ms']:.3f} / {row['p999_ms']:.3f}"
                )
                kernel = row.get("kernel_ms_per_1k_median")
                kernel_text = "" if kernel is None else f" ({kernel:.2f})"
                runs_text = "/".join(f"{q / 1000:.0f}k" for q in row["qps_runs"])
                if row["names_repeated"]:
                    runs_text += " (names repeated!)"
                cells = [
                    label,
                    f"{row['qps_median']:,.0f}",
                    runs_text,
                    str(row["lost_total"]),
                    f"{row['avg_ms_median']:.3f}",
                    pct,
                    f"{row['cpu_pct_median']:.0f}",
                    f"{row['cpu_ms_per_1k_median']:.2f}" + kernel_text,
                    f"{row['rss_mb']} ({row['pss_mb']})",
                    f"{row['foreign_pct_max']:.1f}",
                ]
                if mix.forward:
                    cells.append(_num(row["upstream_cpu_pct_median"], ".0f"))
                cells += [_num(rat.get(label, {}).get(r), ".2f") for r in refs]
                lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratios are medians of per-round ratios within this run (fixed load: server CPU per",
        "query, lower is better). Compare only servers measured in the same run",
        "(docs/benchmarking.md#why-ratios).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- machine


def _first_line(argv: list[str], pattern: str) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, res.stdout + res.stderr)
    return m.group(1) if m else "?"


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {
        "nsd": _first_line([servers.BINARIES["nsd"], "-v"], r"NSD version ([\w.]+)"),
        "knot": _first_line([servers.BINARIES["knot"], "-V"], r"version ([\w.]+)"),
        "dnsmasq": _first_line([servers.BINARIES["dnsmasq"], "-v"], r"Dnsmasq version ([\w.]+)"),
        "unbound": _first_line([servers.BINARIES["unbound"], "-V"], r"Version ([\w.]+)"),
        "dnsperf": _first_line([servers.BINARIES["dnsperf"], "-h"], r"Version ([\w.]+)"),
        "kdns": _first_line(
            ["git", "-C", str(servers.REPO), "describe", "--always", "--dirty", "--abbrev=7"],
            r"([\w-]+)",
        ),
    }
    with contextlib.suppress(ImportError):
        from importlib.metadata import version

        versions["uvloop"] = version("uvloop")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--services", type=int, default=1000, help="Services in the workload")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--headless-fraction", type=float, default=0.0)
    p.add_argument("--queries", type=int, default=100_000, help="lines in the static files")
    p.add_argument(
        "--workload",
        action="append",
        choices=[*MIXES, "all"],
        help="query mix to measure; repeatable (default: all)",
    )
    p.add_argument(
        "--servers",
        default="kdns,nsd,knot,dnsmasq,unbound",
        help="server kinds to run; each workload runs kdns and its anchors among these",
    )
    p.add_argument("--mode", choices=[*MODES, "all"], default="all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up run per server, s")
    p.add_argument("--rate", type=int, default=20_000, help="-Q for the fixed mode")
    p.add_argument("--workers", type=int, default=2, help="workers in whole-machine mode")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="max wait for a quiet box, s")
    p.add_argument(
        "--foreign-retries",
        type=int,
        default=2,
        help="measure a run again when other processes used > 10%% of a core during it",
    )
    p.add_argument("--no-percentiles", dest="percentiles", action="store_false")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--assert-ratio", default="", help="e.g. knot=0.7,dnsmasq=2.5 (kdns, whole)")
    p.add_argument("--results", type=Path, default=None, help="where latest.{json,md} go")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    p.add_argument(
        "--smoke", action="store_true", help="CI: every mix, 0.5 s at -Q 1000, 1 round, strict"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    picked = args.workload or ["all"]
    args.workloads = list(MIXES) if "all" in picked else list(dict.fromkeys(picked))
    if args.smoke:
        args.seconds, args.rounds, args.warmup, args.quiet_wait = 0.5, 1, 0.0, 0.0
        args.foreign_retries = 0
        args.rate = 1000
        if args.mode == "all":
            args.mode = "fixed"
        args.services = min(args.services, 200)
        args.queries = min(args.queries, 10_000)
    elif args.results is None:
        args.results = RESULTS_DIR
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def select_kinds(args: argparse.Namespace) -> list[str] | str:
    """The server kinds to run, or an error message."""
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in servers.LAUNCHERS]
    if unknown:
        return f"unknown servers {unknown}: pick from {','.join(servers.LAUNCHERS)} (--servers)"
    if not Path(servers.BINARIES["dnsperf"]).exists():
        return "dnsperf is not installed (make tools)"
    missing = [k for k in kinds if k != "kdns" and not Path(servers.BINARIES[k]).exists()]
    if missing:
        print(f"skipping servers whose binaries are missing (make tools): {missing}", flush=True)
        kinds = [k for k in kinds if k not in missing]
    if "kdns" in kinds and not servers.kdns_available():
        print("skipping kdns: `python -m kdns serve --help` fails (CLI not ready)", flush=True)
        kinds.remove("kdns")
    if not kinds:
        return "no servers to run"
    return kinds


def upstream_rtt(server: Server, count: int = 200) -> tuple[float, float]:
    """(median, max) ms of sequential queries straight to the upstream (new names)."""
    times: list[float] = []
    for i in range(count):
        name = f"{workload.unique_label('rtt', i)}.{workload.EXT_ZONE}."
        t0 = time.perf_counter()
        dnsclient.query(HOST, server.port, name, "A", timeout=2.0)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), max(times)


def run_checks(
    mix: Mix, group: list[Server], wl: workload.Workload, seed: int
) -> tuple[bool, dict[str, dict[str, list[str]]]]:
    """Answer check of one group before timing (docs/benchmarking.md#the-harness, step 3)."""
    if mix.forward:
        outcomes = [check.check_forwarder(s.label, s.port, seed) for s in group]
    else:
        outcomes = [
            check.check_server(
                s.label, s.kind, s.port, wl, tcp=mix.tcp, edns_do=True if mix.dnssec_ok else None
            )
            for s in group
        ]
    diffs = check.compare([o for o in outcomes if o.ok])
    report: dict[str, dict[str, list[str]]] = {}
    for o in outcomes:
        report[o.server] = {"failures": o.failures, "notes": o.notes}
        print(f"  check {mix.name} {o.server:<10} {'ok' if o.ok else 'MISMATCH'}", flush=True)
        for line in o.failures:
            print(f"    FAIL {line}", flush=True)
        for line in o.notes:
            print(f"    note {line}", flush=True)
    for d in diffs:
        print(f"    DIFF {d}", flush=True)
    return not diffs and all(o.ok for o in outcomes), report


def without_results(argv: list[str]) -> list[str]:
    """`argv` less `--results DIR`: the recorded command says what was measured, not where
    one machine wrote it (results files are committed and read elsewhere)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--results":
            skip = True
        elif not arg.startswith("--results="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    picked = select_kinds(args)
    if isinstance(picked, str):
        print(picked, file=sys.stderr)
        return 2
    kinds = picked
    modes = list(MODES) if args.mode == "all" else [args.mode]

    signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="kdns-bench-"))
    wl = workload.build(args.services, seed=args.seed, headless_fraction=args.headless_fraction)
    files = workload.write(wl, workdir, query_count=args.queries)
    print(
        f"workload: {args.services} services, {args.queries} queries in {workdir}; "
        f"servers {','.join(kinds)}; workloads {','.join(args.workloads)}; "
        f"modes {','.join(modes)}",
        flush=True,
    )
    box = machine()  # before anything runs: the commit under test
    bench = Bench(args, files, workdir)
    bench.wl = wl
    checks: dict[str, dict[str, dict[str, list[str]]]] = {}
    upstreams: dict[str, dict[str, Any]] = {}
    status = 0
    try:
        for name in args.workloads:
            mix = MIXES[name]
            row_kinds = [k for k in ("kdns", *mix.anchors) if k in kinds]
            if mix.forward and not Path(servers.BINARIES["knot"]).exists():
                print(f"{name}: skipped, the upstream needs knotd (make tools)", flush=True)
                continue
            if not row_kinds:
                print(f"{name}: skipped, none of its servers selected", flush=True)
                continue
            mix_modes = [m for m in modes if m != "whole" or name in WHOLE_MIXES]
            groups = (
                [m for m in ("pinned", "fixed") if m in mix_modes],
                [m for m in ("whole",) if m in mix_modes],
            )
            all_plans = plans(args, mix)
            for group_modes in groups:
                if not group_modes:
                    continue
                plan0 = all_plans[group_modes[0]]
                print(
                    f"{name}: starting {','.join(row_kinds)} for {'/'.join(group_modes)} "
                    f"(workers {plan0.workers}, server CPUs {plan0.server_cpus or 'any'})",
                    flush=True,
                )
                try:
                    if mix.forward:
                        up = bench.start_upstream(plan0)
                        p50, worst = upstream_rtt(up)
                        upstreams[name] = {
                            "server": "knot (1 UDP worker)",
                            "cpus": plan0.client_cpus or "any",
                            "rtt_p50_ms": round(p50, 3),
                            "rtt_max_ms": round(worst, 3),
                        }
                        print(f"  upstream round trip p50 {p50:.3f} ms, max {worst:.3f} ms")
                    ready = workload.ext_name(1) if mix.forward else wl.services[0].fqdn
                    group = bench.start(row_kinds, plan0, mix, ready)
                except RuntimeError as exc:
                    print(f"a server did not start: {exc}", flush=True)
                    status = 2
                    break
                ok, report = run_checks(mix, group, wl, args.seed)
                checks.setdefault(name, {}).update(report)
                if not ok:
                    print("answers differ: not timing anything", flush=True)
                    status = 2
                    break
                for mode in group_modes:
                    bench.run_mode(mix, all_plans[mode], group)
                bench.close()  # the group and the upstream
            if status:
                break
    except KeyboardInterrupt:
        print("interrupted: stopping servers", flush=True)
        status = 130
    finally:
        bench.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", flush=True)

    recorded = [r for r in bench.runs if r.round >= 0]
    lost = sum(r.lost for r in recorded)
    if args.smoke and status == 0 and lost:
        print(f"smoke: {lost} queries lost", flush=True)
        status = 3
    repeated = [f"{r.workload}/{r.mode}/{r.server}" for r in recorded if r.names_repeated]
    if repeated:
        print(f"unique names came round again in: {', '.join(repeated)}", flush=True)
    rat = ratios(recorded)
    summary = summarize(recorded)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *without_results(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": box,
        "args": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "results"  # (where this file was written: a path on one machine)
        },
        "workload": {
            "services": args.services,
            "seed": args.seed,
            "headless_fraction": args.headless_fraction,
            "queries": args.queries,
        },
        "mixes": {
            n: {
                "summary": MIXES[n].summary,
                "anchors": list(MIXES[n].anchors),
                "forward": MIXES[n].forward,
                "dnsperf": list(MIXES[n].dnsperf),
            }
            for n in args.workloads
        },
        "upstreams": upstreams,
        "check": {"ok": status != 2, "workloads": checks},
        "runs": [asdict(r) for r in recorded],
        "discarded_runs": [asdict(r) for r in bench.discarded],
        "summary": summary,
        "ratios": rat,
        "rows": headline(summary, rat),
    }
    text = markdown(result)
    print()
    print(text)
    if status == 130:
        print("interrupted: results not written (a partial run would replace latest)")
    elif args.results is not None and recorded:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.results / "latest.md").write_text(text)
        print(f"wrote {args.results}/latest.json and latest.md", flush=True)
    if status == 0 and args.assert_ratio:
        status = assert_ratios(args.assert_ratio, rat.get("mix", {}))
    return status


def assert_ratios(spec: str, rat: dict[str, dict[str, dict[str, float]]]) -> int:
    """Manual performance gate (never in CI): kdns's whole-machine (else pinned) QPS ratios."""
    mode = "whole" if "whole" in rat else "pinned"
    mine = next((v for k, v in rat.get(mode, {}).items() if k.startswith("kdns")), None)
    if mine is None:
        print("assert-ratio: no kdns ratios measured", flush=True)
        return 4
    status = 0
    for item in spec.split(","):
        ref, _, floor = item.partition("=")
        got = mine.get(ref.strip())
        ok = got is not None and got >= float(floor)
        print(f"assert-ratio {mode} kdns/{ref} = {got} (floor {floor}): {'ok' if ok else 'FAIL'}")
        if not ok:
            status = 4
    return status


if __name__ == "__main__":
    sys.exit(main())
