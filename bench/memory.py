"""kdns memory, full-sync time and DNS programming latency (docs/benchmarking.md#targets).

`--memory`: for each size (default 10k and 100k Services) start `kdns serve` on a
generated source, time start -> `/ready` 200, then read RSS/PSS of its process tree.
`--format json` writes the manifests as one JSON `List` instead of multi-document YAML.
`--headless 10000x100`: N headless Services with M endpoints each, as explicit
EndpointSlices in one JSON List, through the manifests source (per-endpoint memory).
`--index NxM`: in this process, no server: N headless Services with M endpoints each
(API JSON with hostnames and targetRef pod names, converted as a source does) and N
ClusterIP Services, applied to a `kdns.cluster.index.Index`; report the bytes the Index keeps
(tracemalloc) per endpoint and per Service.
`--programming`: with kdns serving 1k Services under a steady dnsperf load, change one
Service's ClusterIP and poll it with a tight query loop until the new address is
answered; report p50/p99 of event -> visible answer. Both run for the manifests source
(a file rewrite, so the file poll interval is part of the latency) and for the fake
Kubernetes API (`tests.fakes.kubeapi`, run in a thread of this process; skipped with a
message when it cannot be imported).

Binds and queries 127.0.0.1 only; stops every process it started, by process group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/memory.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dnsclient, servers, workload
from bench.servers import HOST, Server

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SOURCES = ("manifests", "kubeapi")


class FakeApi:
    """The fake API server on its own event loop thread, so this process can mutate it."""

    def __init__(self, directory: Path) -> None:
        from tests.fakes import kubeapi  # late: optional, owned by another engineer

        self.mod = kubeapi
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        tls = kubeapi.make_tls(directory / "tls")

        async def make() -> Any:
            fake = kubeapi.FakeKubeApi(tls=tls)
            fake.apply(kubeapi.namespace("default"))
            await fake.start()
            return fake

        self.fake = self.call(make())
        self.kubeconfig: Path = self.fake.write_kubeconfig(directory / "kubeconfig")

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=600)

    def apply_all(self, objs: list[dict[str, Any]]) -> None:
        async def run() -> None:
            for obj in objs:
                self.fake.apply(obj)

        self.call(run())

    def service(self, svc: workload.Service, ip: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.mod.service(svc.name, cluster_ip=ip, port=workload.PORT_NUMBER)
        return obj

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def open_fake(directory: Path) -> FakeApi | None:
    try:
        return FakeApi(directory)
    except (ImportError, AttributeError, OSError, subprocess.SubprocessError) as exc:
        print(f"skipping the fake Kubernetes API part: {exc!r}", flush=True)
        return None


def start_kdns(
    files: workload.Files, workdir: Path, *, services: int, kubeconfig: Path | None
) -> tuple[Server, int]:
    port, ready_port = servers.free_port(), servers.free_port()
    extra: tuple[str, ...] = ("--service-cidr", "10.96.0.0/12") if services > 60_000 else ()
    argv = servers.kdns_argv(
        files, port, workers=1, ready_port=ready_port, kubeconfig=kubeconfig, extra=extra
    )
    server = Server("kdns-1", "kdns", port, argv, workdir, env=servers.kdns_env())
    server.start()
    return server, ready_port


def wait_ready_http(server: Server, ready_port: int, *, timeout: float) -> float:
    """Seconds from process start until GET /ready answers 200."""
    url = f"http://{HOST}:{ready_port}/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"kdns exited early:\n{server.log_tail()}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1.0) as resp,
        ):
            if resp.status == 200:
                return time.monotonic() - server.started_at
        time.sleep(0.02)
    raise RuntimeError(f"kdns not ready within {timeout:.0f}s:\n{server.log_tail()}")


def json_manifests(wl: workload.Workload, *, endpoints: int = 0) -> str:
    """The workload as one JSON `List`: Services and, with `endpoints`, one headless
    Service per entry with an explicit EndpointSlice of that many endpoints."""
    port = {"name": workload.PORT_NAME, "protocol": "TCP", "port": workload.PORT_NUMBER}
    items: list[dict[str, Any]] = []
    next_ip = workload.ENDPOINT_BASE
    for svc in wl.services:
        meta = {"name": svc.name, "namespace": workload.NAMESPACE}
        cluster_ip = "None" if endpoints else svc.cluster_ip
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"clusterIP": cluster_ip, "ports": [port]},
            }
        )
        if not endpoints:
            continue
        eps = []
        for j in range(endpoints):
            eps.append(
                {
                    "addresses": [str(ipaddress.IPv4Address(next_ip))],
                    "hostname": f"ep-{j}",
                    "conditions": {"ready": True},
                }
            )
            next_ip += 1
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    **meta,
                    "name": f"{svc.name}-abc",
                    "labels": {"kubernetes.io/service-name": svc.name},
                },
                "addressType": "IPv4",
                "ports": [port],
                "endpoints": eps,
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def memory_one(
    source: str,
    size: int,
    workdir: Path,
    fake: FakeApi | None,
    *,
    fmt: str = "yaml",
    endpoints: int = 0,
) -> dict[str, Any]:
    wl = workload.build(size, seed=1)
    files = workload.write(wl, workdir / f"{source}-{size}", query_count=1000)
    if source == "manifests" and (fmt == "json" or endpoints):
        (files.manifests / "services.yaml").unlink()
        (files.manifests / "services.json").write_text(json_manifests(wl, endpoints=endpoints))
        fmt = "json"
    elif source != "manifests":
        fmt = "api"
    kubeconfig = None
    if fake is not None:
        fake.apply_all([fake.service(s, s.cluster_ip) for s in wl.services])
        kubeconfig = fake.kubeconfig
    server, ready_port = start_kdns(files, workdir, services=size, kubeconfig=kubeconfig)
    try:
        took = wait_ready_http(server, ready_port, timeout=900)
        last = wl.services[-1]
        reply = dnsclient.query(HOST, server.port, last.fqdn, "A", timeout=2.0)
        if endpoints:  # 100 A records do not fit 512 bytes: a truncated NOERROR is right
            answered = reply.rcode == "NOERROR"
        else:
            answered = [rr.rdata for rr in reply.answer if rr.rtype == "A"] == last.a_rdata()
        time.sleep(1.0)  # let the post-sync garbage settle before reading memory
        rss, pss = server.memory()
    finally:
        server.stop()
    row = {
        "source": source,
        "format": fmt,
        "services": size,
        "endpoints": size * endpoints,
        "ready_s": round(took, 2),
        "rss_mb": round(rss / 1024, 1),
        "pss_mb": round(pss / 1024, 1),
        "last_service_answered": answered,
    }
    print(
        f"  memory {source:<9} {fmt:<4} {size:>7} services {size * endpoints:>8} endpoints:"
        f" ready after {took:6.2f}s"
        f"  RSS {rss / 1024:6.1f} MB  PSS {pss / 1024:6.1f} MB  answer ok {answered}",
        flush=True,
    )
    return row


def index_memory(services: int, endpoints: int) -> dict[str, Any]:
    """Bytes the Index keeps (tracemalloc, after the events are dropped) per endpoint for
    `services` headless Services x `endpoints`, and per Service for `services` ClusterIP
    Services."""
    import gc
    import tracemalloc

    from kdns.cluster.index import Index
    from kdns.cluster.model import Kind, Replace
    from kdns.sources.convert import object_from_api

    port = {"name": workload.PORT_NAME, "protocol": "TCP", "port": workload.PORT_NUMBER}

    def objects(headless: bool) -> list[Any]:
        out: list[Any] = []
        next_ip = workload.ENDPOINT_BASE
        for i in range(services):
            name = f"svc-{i}"
            meta = {"name": name, "namespace": workload.NAMESPACE}
            cluster_ip = "None" if headless else str(ipaddress.IPv4Address(0x0A600000 + i + 1))
            spec = {"clusterIP": cluster_ip, "ports": [port]}
            out.append(object_from_api({"kind": "Service", "metadata": meta, "spec": spec}))
            if not headless:
                continue
            eps = []
            for j in range(endpoints):
                eps.append(
                    {
                        "addresses": [str(ipaddress.IPv4Address(next_ip))],
                        "hostname": f"ep-{j}",
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": f"{name}-7d9f8b-{j:05d}"},
                    }
                )
                next_ip += 1
            raw = {
                "kind": "EndpointSlice",
                "metadata": {
                    **meta,
                    "name": f"{name}-abc",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [port],
                "endpoints": eps,
            }
            out.append(object_from_api(raw))
        return out

    def retained(headless: bool) -> tuple[int, float]:
        gc.collect()
        tracemalloc.start()
        objs = objects(headless)
        index = Index()
        t0 = time.perf_counter()
        for kind in (Kind.SERVICE, Kind.ENDPOINT_SLICE):
            index.apply(Replace(kind, tuple(o for o in objs if o.kind is kind)))
        took = time.perf_counter() - t0
        del objs
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del index
        gc.unfreeze()
        gc.collect()
        return kept, took

    kept_eps, took_eps = retained(True)
    kept_svc, took_svc = retained(False)
    total = services * endpoints
    row = {
        "services": services,
        "endpoints": total,
        "headless_index_mb": round(kept_eps / 1e6, 1),
        "bytes_per_endpoint": round(kept_eps / total),
        "headless_apply_s": round(took_eps, 2),
        "clusterip_index_mb": round(kept_svc / 1e6, 1),
        "bytes_per_service": round(kept_svc / services),
        "clusterip_apply_s": round(took_svc, 2),
    }
    print(
        f"  index {services} headless x {endpoints}: {row['headless_index_mb']} MB,"
        f" {row['bytes_per_endpoint']} B/endpoint (apply {took_eps:.2f}s);"
        f" {services} ClusterIP: {row['clusterip_index_mb']} MB,"
        f" {row['bytes_per_service']} B/Service (apply {took_svc:.2f}s)",
        flush=True,
    )
    return row


def programming(
    source: str, args: argparse.Namespace, workdir: Path, fake: FakeApi | None
) -> dict[str, Any]:
    wl = workload.build(args.services, seed=1)
    files = workload.write(wl, workdir / f"prog-{source}", query_count=20_000)
    kubeconfig = None
    mutate: Callable[[workload.Service, str], None]
    if fake is not None:
        fake.apply_all([fake.service(s, s.cluster_ip) for s in wl.services])
        kubeconfig = fake.kubeconfig
        api = fake

        def mutate(svc: workload.Service, ip: str) -> None:
            api.apply_all([api.service(svc, ip)])
    else:
        manifest = files.manifests / "services.yaml"

        def mutate(svc: workload.Service, ip: str) -> None:
            idx = wl.services.index(svc)
            wl.services[idx] = workload.Service(svc.name, ip)
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(workload.manifests_text(wl))
            os.replace(tmp, manifest)  # atomic: the poller never sees half a file

    server, ready_port = start_kdns(files, workdir, services=args.services, kubeconfig=kubeconfig)
    load: subprocess.Popen[bytes] | None = None
    latencies: list[float] = []
    missed = 0
    try:
        wait_ready_http(server, ready_port, timeout=300)
        load = subprocess.Popen(
            [
                *(servers.BINARIES["dnsperf"], "-s", HOST, "-p", str(server.port)),
                *("-d", str(files.queries), "-l", "600", "-Q", str(args.rate), "-c", "4"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(1.0)
        for k in range(args.mutations):
            svc = wl.services[k % len(wl.services)]
            new_ip = f"10.100.{k // 250}.{k % 250 + 1}"
            t0 = time.monotonic()
            mutate(svc, new_ip)
            seen = None
            while time.monotonic() - t0 < args.max_wait:  # bounded in time
                with contextlib.suppress(TimeoutError, OSError):
                    reply = dnsclient.query(HOST, server.port, svc.fqdn, "A", timeout=0.2)
                    if [rr.rdata for rr in reply.answer if rr.rtype == "A"] == [new_ip]:
                        seen = time.monotonic() - t0
                        break
            if seen is None:
                missed += 1
            else:
                latencies.append(seen * 1000.0)
            time.sleep(0.1)
    finally:
        if load is not None and load.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(load.pid, 9)
            load.wait(timeout=5)
        server.stop()
    latencies.sort()
    row: dict[str, Any] = {
        "source": source,
        "services": args.services,
        "load_qps": args.rate,
        "mutations": args.mutations,
        "missed": missed,
        "p50_ms": round(_pct(latencies, 50), 2) if latencies else None,
        "p99_ms": round(_pct(latencies, 99), 2) if latencies else None,
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }
    print(
        f"  programming {source:<9} {args.mutations} changes under {args.rate} qps:"
        f" p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  max {row['max_ms']} ms"
        f"  missed {missed}",
        flush=True,
    )
    return row


def _pct(values: list[float], q: float) -> float:
    import math

    return values[max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--memory", action="store_true", help="RSS and sync time per size")
    p.add_argument("--programming", action="store_true", help="event -> answer latency")
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--sources", default=",".join(SOURCES))
    p.add_argument("--format", choices=("yaml", "json"), default="yaml", help="manifests file")
    p.add_argument("--headless", default="", help="NxM: N headless Services x M endpoints")
    p.add_argument("--index", default="", help="NxM: Index bytes in-process (tracemalloc)")
    p.add_argument("--services", type=int, default=1000, help="for --programming")
    p.add_argument("--mutations", type=int, default=30)
    p.add_argument("--rate", type=int, default=5000, help="background dnsperf -Q")
    p.add_argument("--max-wait", type=float, default=20.0, help="per mutation, s")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.index:
        n, m = (int(x) for x in args.index.lower().split("x"))
        row = index_memory(n, m)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "memory-index.json").write_text(json.dumps(row, indent=2) + "\n")
        return 0
    if not (args.memory or args.programming):
        args.memory = args.programming = True
    if not servers.kdns_available():
        print("kdns is not runnable yet (`import kdns.app` or `serve --help` fails)", flush=True)
        return 2
    sources = [s for s in args.sources.split(",") if s in SOURCES]
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "memory": [],
        "programming": [],
    }
    with tempfile.TemporaryDirectory(prefix="kdns-mem-") as tmp:
        workdir = Path(tmp)
        for source in sources:
            fake: FakeApi | None = None
            if source == "kubeapi":
                fake = open_fake(workdir / "fake")
                if fake is None:
                    continue
            try:
                if args.memory and args.headless and source == "manifests":
                    n, m = (int(x) for x in args.headless.lower().split("x"))
                    out["memory"].append(memory_one(source, n, workdir, None, endpoints=m))
                elif args.memory and not args.headless:
                    for size in (int(x) for x in args.sizes.split(",")):
                        if fake is not None:  # a fresh API per size
                            fake.close()
                            fake = open_fake(workdir / f"fake-{size}")
                        try:
                            out["memory"].append(
                                memory_one(source, size, workdir, fake, fmt=args.format)
                            )
                        except RuntimeError as exc:
                            print(f"  memory {source} {size}: FAILED {exc}", flush=True)
                if args.programming:
                    if fake is not None:
                        fake.close()
                        fake = open_fake(workdir / "fake-prog")
                    try:
                        out["programming"].append(programming(source, args, workdir, fake))
                    except RuntimeError as exc:
                        print(f"  programming {source}: FAILED {exc}", flush=True)
            finally:
                if fake is not None:
                    fake.close()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "memory.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# kdns memory and programming latency ({out['date']})", ""]
    if out["memory"]:
        lines += [
            "| source | format | services | endpoints | start -> /ready s | RSS MB | PSS MB"
            " | answer ok |"
        ]
        lines += ["|---|---|---:|---:|---:|---:|---:|---|"]
        for r in out["memory"]:
            lines.append(
                f"| {r['source']} | {r['format']} | {r['services']} | {r['endpoints']}"
                f" | {r['ready_s']} | {r['rss_mb']} | {r['pss_mb']}"
                f" | {r['last_service_answered']} |"
            )
        lines.append("")
    if out["programming"]:
        lines += ["| source | services | load qps | changes | p50 ms | p99 ms | max ms | missed |"]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in out["programming"]:
            lines.append(
                f"| {r['source']} | {r['services']} | {r['load_qps']} | {r['mutations']}"
                f" | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['missed']} |"
            )
    (args.results / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
