"""kdns benchmark: kdns against NSD, Knot and dnsmasq with dnsperf, on 127.0.0.1 only.

Owns the run order described in docs/benchmarking.md#the-harness: generate the workload, start
every server on its own loopback port, check that their answers match, then run the
dnsperf modes (pinned, fixed rate, whole machine) in interleaved rounds, and write a table
with ratios to `bench/results/latest.{json,md}`. `--smoke` is the short CI variant: 2 s
per server at a low fixed rate, one round, and a non-zero exit on mismatch or loss.

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

from bench import check, servers, workload
from bench.servers import HOST, Server

log = logging.getLogger("bench.run_bench")

REFERENCES = ("nsd", "knot", "dnsmasq")
MODES = ("pinned", "fixed", "whole")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FOREIGN_FLAG = 0.10  # flag runs where other processes used > 10 % of a core (docs/benchmarking.md)
QUIET_BELOW = 0.15  # wait for < 15 % of a core of foreign CPU before each run


@dataclass(slots=True)
class Run:
    """One dnsperf run against one server (docs/benchmarking.md#the-harness, step 5)."""

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


def plans(args: argparse.Namespace) -> dict[str, Plan]:
    pin = (os.cpu_count() or 1) >= 2
    client = "0" if pin else None
    server = "1" if pin else None
    base = ["-c", "8", "-q", "100"]
    return {
        "pinned": Plan("pinned", base, client, server, 1),
        "fixed": Plan("fixed", [*base, "-Q", str(args.rate)], client, server, 1),
        "whole": Plan("whole", ["-c", "32", "-q", "400", "-T", "2"], None, None, args.workers),
    }


class Bench:
    """Runs the servers and dnsperf; remembers every child so `close()` can stop them."""

    def __init__(self, args: argparse.Namespace, files: workload.Files, workdir: Path) -> None:
        self.args = args
        self.files = files
        self.workdir = workdir
        self.running: list[Server] = []
        self.dnsperf: subprocess.Popen[str] | None = None
        self.runs: list[Run] = []

    # -- processes

    def start(self, kinds: list[str], plan: Plan, ready_name: str) -> list[Server]:
        started: list[Server] = []
        for kind in kinds:
            server = servers.LAUNCHERS[kind](
                self.files, self.workdir, workers=plan.workers, cpus=plan.server_cpus
            )
            self.running.append(server)
            server.start()
            started.append(server)
        for server in started:
            took = server.wait_ready(name=ready_name, timeout=self.args.start_timeout)
            print(
                f"  {server.label:<10} ready on {HOST}:{server.port} after {took:.2f}s", flush=True
            )
        return started

    def stop(self, group: list[Server]) -> None:
        for server in group:
            server.stop()
            if server in self.running:
                self.running.remove(server)

    def close(self) -> None:
        if self.dnsperf is not None and self.dnsperf.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.dnsperf.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.dnsperf.wait(timeout=5)
        self.stop(list(self.running))

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
        self, server: Server, plan: Plan, *, seconds: float, verbose: bool = False
    ) -> tuple[dict[str, Any], float, float, float, float, array[float]]:
        """One dnsperf run: (stats, server CPU s, wall s, foreign CPU s, steal s, latencies)."""
        argv = [servers.BINARIES["dnsperf"], "-s", HOST, "-p", str(server.port)]
        argv += ["-d", str(self.files.queries), "-l", f"{seconds:g}", *plan.dnsperf_args]
        if verbose:
            argv.append("-v")
        if plan.client_cpus:
            argv = ["taskset", "-c", plan.client_cpus, *argv]
        server_pids = set(server.pids())
        own = {os.getpid()}
        steal0 = servers.steal_seconds()
        cpu0, all0, t0 = server.cpu(), servers.all_cpu(), time.monotonic()
        self.dnsperf = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        latencies: array[float] = array("d")
        tail: list[str] = []
        assert self.dnsperf.stdout is not None
        for line in self.dnsperf.stdout:
            if line.startswith("> "):
                with contextlib.suppress(ValueError, IndexError):
                    latencies.append(float(line.rsplit(None, 1)[1]) * 1000.0)
            else:
                tail.append(line)
        self.dnsperf.wait(timeout=seconds + 60)
        wall = time.monotonic() - t0
        cpu = server.cpu() - cpu0
        foreign = servers.foreign_cpu(
            all0, servers.all_cpu(), server_pids | own | {self.dnsperf.pid}
        )
        steal = servers.steal_seconds() - steal0
        self.dnsperf = None
        stats = parse_dnsperf("".join(tail))
        return stats, cpu, wall, foreign, steal, latencies

    def measure(
        self, server: Server, plan: Plan, round_no: int, *, seconds: float, verbose: bool = False
    ) -> Run:
        others = {p for s in self.running for p in s.pids()} | {os.getpid()}
        if self.args.quiet_wait > 0:
            self.wait_quiet(others)
        stats, cpu, wall, foreign, steal, lat = self.dnsperf_run(
            server, plan, seconds=seconds, verbose=verbose
        )
        rss, pss = server.memory()
        run = Run(
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
        )
        if verbose and lat:
            srt = array("d", sorted(lat))
            run.p50_ms = round(percentile(srt, 50), 4)
            run.p99_ms = round(percentile(srt, 99), 4)
            run.p999_ms = round(percentile(srt, 99.9), 4)
        return run

    def run_mode(self, plan: Plan, group: list[Server]) -> None:
        args = self.args
        if args.warmup > 0:
            for server in group:
                self.dnsperf_run(server, plan, seconds=args.warmup)
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(group)
            for server in group[shift:] + group[:shift]:  # rotate who goes first
                run = self.measure(server, plan, round_no, seconds=args.seconds)
                self.record(run)
        if args.percentiles:
            for server in group:
                run = self.measure(server, plan, 0, seconds=args.seconds, verbose=True)
                self.record(run)

    def record(self, run: Run) -> None:
        self.runs.append(run)
        kind = "latency (-v)" if run.round == 0 else f"round {run.round}"
        pct = "" if run.p50_ms is None else f" p50 {run.p50_ms:.3f} p99 {run.p99_ms:.3f} ms"
        flag = " FOREIGN" if run.foreign_pct > 100 * FOREIGN_FLAG else ""
        print(
            f"  {run.mode:<6} {kind:<12} {run.server:<10} {run.qps:>10,.0f} qps"
            f"  lost {run.lost:<5} avg {run.avg_ms:.3f} ms{pct}  cpu {run.cpu_pct:5.1f}%"
            f"  {run.cpu_ms_per_1k:.2f} ms/1k  rss {run.rss_kb / 1024:.1f} MB"
            f"  foreign {run.foreign_pct:.1f}% steal {run.steal_pct:.1f}%{flag}",
            flush=True,
        )


# ---------------------------------------------------------------- summary


def summarize(runs: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per mode and server: medians over rounds, percentiles from the -v run."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mode in MODES:
        for label in dict.fromkeys(r.server for r in runs if r.mode == mode):
            timed = [r for r in runs if r.mode == mode and r.server == label and r.round > 0]
            verbose = [r for r in runs if r.mode == mode and r.server == label and r.round == 0]
            if not timed:
                continue
            row: dict[str, Any] = {
                "qps_median": statistics.median(r.qps for r in timed),
                "qps_runs": [round(r.qps) for r in timed],
                "lost_total": sum(r.lost for r in timed) + sum(r.lost for r in verbose),
                "avg_ms_median": statistics.median(r.avg_ms for r in timed),
                "cpu_pct_median": statistics.median(r.cpu_pct for r in timed),
                "cpu_ms_per_1k_median": statistics.median(r.cpu_ms_per_1k for r in timed),
                "rss_mb": round(timed[-1].rss_kb / 1024, 1),
                "pss_mb": round(timed[-1].pss_kb / 1024, 1),
                "foreign_pct_max": max(r.foreign_pct for r in timed),
                "steal_pct_max": max(r.steal_pct for r in timed),
                "p50_ms": verbose[0].p50_ms if verbose else None,
                "p99_ms": verbose[0].p99_ms if verbose else None,
                "p999_ms": verbose[0].p999_ms if verbose else None,
            }
            cpu = row["cpu_pct_median"]
            row["qps_per_core"] = round(row["qps_median"] / (cpu / 100.0)) if cpu > 0 else None
            out.setdefault(mode, {})[label] = row
    return out


def ratios(runs: list[Run]) -> dict[str, dict[str, dict[str, float]]]:
    """Median over rounds of per-round ratios: QPS (pinned, whole) or CPU/query (fixed)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        timed = [r for r in runs if r.mode == mode and r.round > 0]
        by_round: dict[int, dict[str, Run]] = {}
        for r in timed:
            by_round.setdefault(r.round, {})[r.server] = r
        labels = list(dict.fromkeys(r.server for r in timed))
        for label in labels:
            for ref_kind in REFERENCES:
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
                    out.setdefault(mode, {}).setdefault(label, {})[ref_kind] = value
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# kdns benchmark results ({result['date']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
        f"Python {m['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        "",
        f"Workload: {result['workload']['services']} Services (seed {result['workload']['seed']},"
        f" headless fraction {result['workload']['headless_fraction']}),"
        f" {result['workload']['queries']} queries: 85 % A, 10 % SRV, 5 % NXDOMAIN.",
        f"Command: `{result['command']}`",
        "",
        "Answer check: "
        + ("all servers matched" if result["check"]["ok"] else "**MISMATCH**")
        + ".",
    ]
    for label, info in result["check"]["servers"].items():
        for note in info["notes"]:
            lines.append(f"* {label}: {note}")
        for failure in info["failures"]:
            lines.append(f"* **{label} FAILED**: {failure}")
    titles = {
        "pinned": "Pinned: server on CPU 1, `taskset -c 0 dnsperf -c 8 -q 100`",
        "fixed": f"Fixed load: pinned, `-Q {result['args']['rate']}`",
        "whole": "Whole machine: nothing pinned, `dnsperf -c 32 -q 400 -T 2`",
    }
    for mode, rows in result["summary"].items():
        rat = result["ratios"].get(mode, {})
        refs = ["nsd", "knot", "dnsmasq"] if mode == "whole" else ["nsd"]
        what = "CPU/query" if mode == "fixed" else "QPS"
        lines += ["", f"## {titles[mode]}", ""]
        head = "| server | QPS median | runs | lost | avg ms | p50 / p99 / p99.9 ms | CPU % |"
        head += " CPU ms/1k q | RSS MB (PSS) | foreign % max |"
        head += "".join(f" {what} vs {r} |" for r in refs)
        lines.append(head)
        lines.append("|---" * (10 + len(refs)) + "|")
        for label, row in rows.items():
            pct = (
                "-"
                if row["p50_ms"] is None
                else f"{row['p50_ms']:.3f} / {row['p99_ms']:.3f} / {row['p999_ms']:.3f}"
            )
            runs_text = "/".join(f"{q / 1000:.0f}k" for q in row["qps_runs"])
            cells = [
                label,
                f"{row['qps_median']:,.0f}",
                runs_text,
                str(row["lost_total"]),
                f"{row['avg_ms_median']:.3f}",
                pct,
                f"{row['cpu_pct_median']:.0f}",
                f"{row['cpu_ms_per_1k_median']:.2f}",
                f"{row['rss_mb']} ({row['pss_mb']})",
                f"{row['foreign_pct_max']:.1f}",
            ]
            cells += [f"{rat.get(label, {}).get(r, float('nan')):.2f}" for r in refs]
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
        "dnsperf": _first_line([servers.BINARIES["dnsperf"], "-h"], r"Version ([\w.]+)"),
        "kdns": _first_line(
            ["git", "-C", str(servers.REPO), "rev-parse", "--short", "HEAD"], r"(\w+)"
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
    p.add_argument("--queries", type=int, default=100_000, help="lines in the dnsperf file")
    p.add_argument("--servers", default="kdns,nsd,knot,dnsmasq")
    p.add_argument("--mode", choices=[*MODES, "all"], default="all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up run per server, s")
    p.add_argument("--rate", type=int, default=20_000, help="-Q for the fixed mode")
    p.add_argument("--workers", type=int, default=2, help="workers in whole-machine mode")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="max wait for a quiet box, s")
    p.add_argument("--no-percentiles", dest="percentiles", action="store_false")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--assert-ratio", default="", help="e.g. knot=0.7,dnsmasq=2.5 (kdns, whole)")
    p.add_argument("--results", type=Path, default=None, help="where latest.{json,md} go")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    p.add_argument("--smoke", action="store_true", help="CI: 2 s, -Q 2000, 1 round, strict")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.seconds, args.rounds, args.warmup, args.quiet_wait = 2.0, 1, 0.0, 0.0
        args.rate = 2000
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in servers.LAUNCHERS]
    if unknown:
        print(f"unknown servers: {unknown}", file=sys.stderr)
        return 2
    missing = [k for k in kinds if k != "kdns" and not Path(servers.BINARIES[k]).exists()]
    if not Path(servers.BINARIES["dnsperf"]).exists():
        print("dnsperf is not installed (make tools)", file=sys.stderr)
        return 2
    if missing:
        print(f"skipping servers whose binaries are missing: {missing}", flush=True)
        kinds = [k for k in kinds if k not in missing]
    if "kdns" in kinds and not servers.kdns_available():
        print("skipping kdns: `python -m kdns serve --help` fails (CLI not ready)", flush=True)
        kinds.remove("kdns")
    if not kinds:
        print("no servers to run", file=sys.stderr)
        return 2
    modes = list(MODES) if args.mode == "all" else [args.mode]

    signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="kdns-bench-"))
    wl = workload.build(args.services, seed=args.seed, headless_fraction=args.headless_fraction)
    files = workload.write(wl, workdir, query_count=args.queries)
    print(
        f"workload: {args.services} services, {args.queries} queries in {workdir}; "
        f"servers {','.join(kinds)}; modes {','.join(modes)}",
        flush=True,
    )
    bench = Bench(args, files, workdir)
    all_plans = plans(args)
    checks: dict[str, dict[str, Any]] = {}
    status = 0
    try:
        groups = (
            [m for m in ("pinned", "fixed") if m in modes],
            [m for m in ("whole",) if m in modes],
        )
        for group_modes in groups:
            if not group_modes:
                continue
            plan0 = all_plans[group_modes[0]]
            print(
                f"starting servers for {'/'.join(group_modes)} "
                f"(workers {plan0.workers}, server CPUs {plan0.server_cpus or 'any'})",
                flush=True,
            )
            try:
                group = bench.start(kinds, plan0, wl.services[0].fqdn)
            except RuntimeError as exc:
                print(f"a server did not start: {exc}", flush=True)
                status = 2
                break
            outcomes = [check.check_server(s.label, s.kind, s.port, wl) for s in group]
            diffs = check.compare([o for o in outcomes if o.ok])
            for o in outcomes:
                checks[o.server] = {"failures": o.failures, "notes": o.notes}
                state = "ok" if o.ok else "MISMATCH"
                print(f"  check {o.server:<10} {state}", flush=True)
                for line in o.failures:
                    print(f"    FAIL {line}", flush=True)
                for line in o.notes:
                    print(f"    note {line}", flush=True)
            for d in diffs:
                print(f"    DIFF {d}", flush=True)
            if diffs or not all(o.ok for o in outcomes):
                print("answers differ: not timing anything", flush=True)
                status = 2
                break
            for mode in group_modes:
                bench.run_mode(all_plans[mode], group)
            bench.stop(group)
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

    lost = sum(r.lost for r in bench.runs)
    if args.smoke and status == 0 and lost:
        print(f"smoke: {lost} queries lost", flush=True)
        status = 3
    rat = ratios(bench.runs)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workload": {
            "services": args.services,
            "seed": args.seed,
            "headless_fraction": args.headless_fraction,
            "queries": args.queries,
        },
        "check": {"ok": status != 2, "servers": checks},
        "runs": [asdict(r) for r in bench.runs],
        "summary": summarize(bench.runs),
        "ratios": rat,
    }
    text = markdown(result)
    print()
    print(text)
    if args.results is not None and bench.runs:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.results / "latest.md").write_text(text)
        print(f"wrote {args.results}/latest.json and latest.md", flush=True)
    if status == 0 and args.assert_ratio:
        status = assert_ratios(args.assert_ratio, rat)
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
