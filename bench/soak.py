"""A soak: kdns fed by the fake Kubernetes API while Services come and go, under a steady
dnsperf load (docs/benchmarking.md#other-measurements). Reports lost queries, RSS over
time and whether the answers are right at the end.

    .venv/bin/python bench/soak.py                  # 10 minutes at 20k queries/s
    .venv/bin/python bench/soak.py --seconds 60     # a short one

The fake API runs in a thread of this process (bench.memory.FakeApi); kdns and dnsperf
are separate processes on 127.0.0.1. Everything is stopped by process group at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dnsclient, servers, workload
from bench.memory import RESULTS_DIR, open_fake, start_kdns, wait_ready_http
from bench.run_bench import parse_dnsperf
from bench.servers import HOST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--rate", type=int, default=20_000, help="dnsperf -Q")
    parser.add_argument("--churn-interval", type=float, default=0.1, help="seconds per change")
    parser.add_argument("--live", type=int, default=50, help="churned Services alive at once")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kdns-soak-") as tmp:
        workdir = Path(tmp)
        fake = open_fake(workdir)
        if fake is None:
            return 2
        wl = workload.build(args.services, seed=1)
        files = workload.write(wl, workdir / "wl", query_count=100_000)
        fake.apply_all([fake.service(s, s.cluster_ip) for s in wl.services])
        server, ready_port = start_kdns(
            files, workdir, services=args.services, kubeconfig=fake.kubeconfig
        )
        load: subprocess.Popen[bytes] | None = None
        rss: list[tuple[float, int]] = []
        created = deleted = 0
        live: dict[str, str] = {}  # churned name -> ClusterIP
        try:
            wait_ready_http(server, ready_port, timeout=120)
            out = workdir / "dnsperf.txt"
            with out.open("wb") as sink:
                load = subprocess.Popen(
                    [servers.BINARIES["dnsperf"], "-s", HOST, "-p", str(server.port),
                     "-d", str(files.queries), "-l", str(args.seconds), "-Q", str(args.rate),
                     "-c", "8", "-q", "100"],
                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            started = time.monotonic()
            cpu_started = server.cpu()
            next_sample = started
            k = 0
            while load.poll() is None and time.monotonic() - started < args.seconds + 30:
                name = f"soak-{k}"
                ip = f"10.100.{(k // 250) % 250}.{k % 250 + 1}"
                fake.apply_all([fake.mod.service(name, cluster_ip=ip)])
                live[name] = ip
                created += 1
                if len(live) > args.live:
                    old = next(iter(live))
                    del live[old]
                    fake.call(_delete(fake, old))
                    deleted += 1
                k += 1
                now = time.monotonic()
                if now >= next_sample:
                    rss.append((round(now - started, 1), servers.memory_kb(server.pids())[0]))
                    print(f"  t={now - started:6.1f}s  rss={rss[-1][1] / 1024:.1f} MB  "
                          f"services +{created} -{deleted}", flush=True)  # fmt: skip
                    next_sample += 10
                time.sleep(args.churn_interval)
            load.wait(timeout=60)
            cpu_percent = 100 * (server.cpu() - cpu_started) / (time.monotonic() - started)
            perf = parse_dnsperf(out.read_text())
            time.sleep(0.5)  # the last events reach the index
            wrong = _check(server.port, wl, live, deleted_names=[f"soak-{i}" for i in range(k)])
        finally:
            if load is not None and load.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(load.pid, 9)
            server.stop()
            fake.close()

    first = rss[1][1] if len(rss) > 1 else rss[0][1]
    row: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "rate": args.rate,
        "services": args.services,
        "created": created,
        "deleted": deleted,
        "dnsperf": perf,
        "kdns_cpu_percent": round(cpu_percent, 1),
        "rss_mb": [(t, round(kb / 1024, 1)) for t, kb in rss],
        "rss_growth_mb": round((rss[-1][1] - first) / 1024, 1),
        "wrong_answers": wrong,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "soak.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "rss_mb"}, indent=2))
    return 1 if wrong or perf.get("lost", 1) else 0


async def _delete(fake: Any, name: str) -> None:
    fake.fake.delete("Service", "default", name)


def _check(
    port: int, wl: workload.Workload, live: dict[str, str], *, deleted_names: list[str]
) -> list[str]:
    """Every Service the API holds is answered with its address; every deleted one is gone."""
    wrong: list[str] = []
    for svc in wl.services[:200]:
        got = [rr.rdata for rr in dnsclient.query(HOST, port, svc.fqdn, "A").answer]
        if got != svc.a_rdata():
            wrong.append(f"{svc.fqdn}: {got}")
    for name, ip in live.items():
        got = [
            rr.rdata
            for rr in dnsclient.query(HOST, port, f"{name}.default.svc.cluster.local.", "A").answer
        ]
        if got != [ip]:
            wrong.append(f"{name}: {got} != {ip}")
    for name in deleted_names:
        if name in live:
            continue
        reply = dnsclient.query(HOST, port, f"{name}.default.svc.cluster.local.", "A")
        if reply.rcode != "NXDOMAIN":
            wrong.append(f"{name}: {reply.rcode}, expected NXDOMAIN")
    return wrong


if __name__ == "__main__":
    sys.exit(main())
