"""Two kdns builds on forwarded unique names, alternated run by run: a before/after pair.

Run: `.venv/bin/python bench/ab_forward.py --base /tmp/base [--rate 0 --rate 20000]`, where
/tmp/base is another checkout (`git worktree add /tmp/base <commit>`). run_bench.py
compares kdns with other servers; on this VM the speed drifts by tens of percent within
minutes, so two of its runs minutes apart cannot tell two kdns commits apart. This runs
the `forward-unique` row's setup (1,000 Services, the Knot upstream on CPU 0, kdns on
CPU 1, `taskset -c 0 dnsperf -c 8 -q 100`, every name new) for the base build and this
checkout in turn, one run each per round, and prints per run: queries/s, lost, CPU per
1,000 queries (user and system, from /proc), p50/p99 (`dnsperf -v`) and the box's steal.
`--rate 0` is full load; any other rate is dnsperf's `-Q`. `--workload W` runs another row
of run_bench.py instead, with its dnsperf flags (`mix-tcp`: `-m tcp`); a row with a fixed set
of names (`mix`, `mix-tcp`, `mix-do`, `forward-hits`) after a 2 s warm-up that fills the
caches.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers, workload
from bench.run_bench import parse_dnsperf, parse_latency_line, percentile
from bench.servers import Server


def one_run(
    label: str,
    tree: Path,
    files: workload.Files,
    upstream: Server,
    work: Path,
    *,
    rate: int,
    seconds: int,
    tag: str,
    wl: workload.Workload,
    mix: workload.Mix,
) -> str:
    port = servers.free_port()
    argv = servers.kdns_argv(
        files, port, workers=1, upstream=upstream.port, extra=("--lameduck", "0")
    )
    server = Server(label, "kdns", port, argv, work, cpus="1", env={"PYTHONPATH": str(tree)})
    server.start()
    try:
        server.wait_ready(name=wl.services[0].fqdn)
        if mix.unique:
            lines = max(rate, 40_000) * seconds * 2
            queries = work / f"q-{tag}.txt"
            workload.write_unique_queries(queries, mix.names, lines=lines, tag=tag, workload=wl)
        else:
            queries = files.hits_queries if mix.names == "forward-hits" else files.queries
            warm = servers.dnsperf_argv(port, queries, "-l", "2", *mix.dnsperf)
            subprocess.run(warm, capture_output=True, check=True)  # fills the caches
        flags = ("-c", "8", "-q", "100", "-l", str(seconds), "-v", *mix.dnsperf)
        cmd = ["taskset", "-c", "0", *servers.dnsperf_argv(port, queries, *flags)]
        if rate:
            cmd += ["-Q", str(rate)]
        u0, s0 = server.cpu_times()
        steal0 = servers.steal_seconds()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        u1, s1 = server.cpu_times()
        steal = (servers.steal_seconds() - steal0) / seconds * 100
        stats = parse_dnsperf(out)
        lat = array(
            "d", sorted(v for v in map(parse_latency_line, out.splitlines()) if v is not None)
        )
        per_k = 1_000_000 / max(1, stats["completed"])  # ms per 1,000 queries, from seconds
        if mix.unique:
            queries.unlink()
        return (
            f"{label:5s} {stats['qps']:9,.0f} q/s  lost {stats['lost']:<5d} "
            f"CPU ms/1k q: user {(u1 - u0) * per_k:5.1f} sys {(s1 - s0) * per_k:5.1f}  "
            f"p50 {percentile(lat, 50):6.2f} p99 {percentile(lat, 99):6.2f} ms  "
            f"steal {steal:3.0f} %"
        )
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the other checkout (before)")
    p.add_argument("--rate", type=int, action="append", help="0 = full load (repeatable)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument(
        "--workload",
        choices=tuple(workload.MIXES),
        default="forward-unique",
        help="a row of run_bench.py; a row with a fixed set of names (mix, mix-tcp, "
        "forward-hits, ...) runs after a 2 s warm-up that fills the caches",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trees = (("base", args.base.resolve()), ("this", servers.REPO))
    wl = workload.build(1000)
    with tempfile.TemporaryDirectory(prefix="kdns-ab-") as tmp:
        work = Path(tmp)
        files = workload.write(wl, work)
        with servers.running_upstream(files, work) as upstream:
            for rate in args.rate or [0]:
                print(f"# {'full load' if not rate else f'-Q {rate}'}, {args.seconds} s per run")
                for r in range(args.rounds):
                    for label, tree in trees:
                        tag = f"ab{label}{rate}r{r}"
                        print(
                            one_run(
                                label,
                                tree,
                                files,
                                upstream,
                                work,
                                rate=rate,
                                seconds=args.seconds,
                                tag=tag,
                                wl=wl,
                                mix=workload.MIXES[args.workload],
                            ),
                            flush=True,
                        )


if __name__ == "__main__":
    main()
