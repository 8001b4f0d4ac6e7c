"""Who limits a pinned row: dnsperf's own CPU (on CPU 0) beside the server's (on CPU 1).

Run: `.venv/bin/python bench/ceiling.py [--rounds 2] [--seconds 8]`. It runs the
`forward-hits` row as run_bench.py does (1,000 Services, the Knot upstream on CPU 0, kdns
and Unbound in turn on CPU 1, a 2 s warm-up that fills the forward caches, then `taskset -c
0 dnsperf -c 8 -q 100`) and prints per run the queries/s, dnsperf's user and system CPU
seconds (`/usr/bin/time`) and the server's CPU. When dnsperf uses its whole core in every
run, the row measures dnsperf: no server can be shown faster than it can send, whatever
the server's own cost (docs/benchmarking.md, "Reading the numbers").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers, workload
from bench.run_bench import parse_dnsperf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=int, default=8)
    args = p.parse_args()
    wl = workload.build(1000)
    with tempfile.TemporaryDirectory(prefix="kdns-ceiling-") as tmp:
        work = Path(tmp)
        files = workload.write(wl, work)
        with servers.running_upstream(files, work) as upstream:
            for _ in range(args.rounds):
                for make in (servers.kdns, servers.unbound):
                    server = make(files, work, workers=1, cpus="1", upstream=upstream.port)
                    server.start()
                    try:
                        server.wait_ready(name=f"probe.{workload.EXT_ZONE}.", rd=True)
                        print(measure(server, files.hits_queries, args.seconds), flush=True)
                    finally:
                        server.stop()


def measure(server: servers.Server, queries: Path, seconds: int) -> str:
    warm = servers.dnsperf_argv(server.port, queries, "-l", "2")
    subprocess.run(warm, capture_output=True, check=True)  # fills the cache
    flags = ("-c", "8", "-q", "100", "-l", str(seconds))
    timed = ["/usr/bin/time", "-f", "%U %S", "taskset", "-c", "0"]
    u0, s0 = server.cpu_times()
    out = subprocess.run(
        [*timed, *servers.dnsperf_argv(server.port, queries, *flags)],
        capture_output=True,
        text=True,
        check=True,
    )
    u1, s1 = server.cpu_times()
    user, system = map(float, out.stderr.split()[-2:])
    stats = parse_dnsperf(out.stdout)
    return (
        f"{server.label:10s} {stats['qps']:9,.0f} q/s  dnsperf CPU {user + system:5.2f} s of "
        f"{seconds} (user {user:.2f}, sys {system:.2f})  server CPU "
        f"{(u1 - u0 + s1 - s0) / seconds * 100:3.0f} %"
    )


if __name__ == "__main__":
    main()
