"""End to end: `kdns serve --kubeconfig` against the fake Kubernetes API (HTTPS, bearer
token; docs/architecture.md#the-kubernetes-api-source), asserting on DNS answers from the
running process, never on internals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from dnslib import RCODE, DNSRecord

from tests.e2e.kdns_process import ROOT, free_port
from tests.fakes.kubeapi import (
    FakeKubeApi,
    TlsFiles,
    endpoint_slice,
    kube_api,
    kube_tls,
    kubeconfig_for,
    namespace,
    service,
)

__all__ = ["kube_api", "kube_tls"]  # fixtures

pytestmark = pytest.mark.e2e

CLUSTER = ROOT / "tests" / "data" / "e2e-cluster" / "cluster.yaml"


@dataclass
class Answer:
    rcode: str
    records: list[str]  # rdata of the answer section, sorted

    @property
    def empty(self) -> bool:
        return not self.records


async def ask(port: int, name: str, qtype: str = "A", *, wait: float = 1.0) -> Answer:
    """One UDP query to kdns on 127.0.0.1, off the event loop's critical path."""
    loop = asyncio.get_running_loop()
    query = DNSRecord.question(name, qtype)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_sendto(sock, query.pack(), ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
    finally:
        sock.close()
    reply = DNSRecord.parse(data)
    assert reply.header.id == query.header.id
    return Answer(RCODE[reply.header.rcode], sorted(str(rr.rdata) for rr in reply.rr))


async def eventually(
    check: Callable[[], Any], *, within: float = 10.0, interval: float = 0.02
) -> Any:
    """Await `check()` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    dns: int
    ready_port: int
    log: Path

    def ready_status(self) -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ready_port}/ready", timeout=1
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    async def ready(self) -> int:
        return await asyncio.to_thread(self.ready_status)


@contextlib.asynccontextmanager
async def kdns_on(
    kubeconfig: Path, tmp_path: Path, extra: Sequence[str] = ()
) -> AsyncIterator[Proc]:
    dns, health, ready, metrics = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "kdns.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDNS_", "KUBERNETES_"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; we never wait here
            [sys.executable, "-m", "kdns", "serve", "--kubeconfig", str(kubeconfig),
             "--dns-addr", f"127.0.0.1:{dns}", "--upstream", "none",
             "--health-addr", f"127.0.0.1:{health}", "--ready-addr", f"127.0.0.1:{ready}",
             "--metrics-addr", f"127.0.0.1:{metrics}", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    p = Proc(proc, dns, ready, log)
    try:
        yield p
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_cluster(fake: FakeKubeApi) -> None:
    for doc in yaml.safe_load_all(CLUSTER.read_text()):
        if doc:
            fake.apply(doc)


async def synced(p: Proc) -> None:
    await eventually(lambda: p.ready() if p.proc.poll() is None else _dead(p), within=20)

    async def is_200() -> bool:
        return await p.ready() == 200

    await eventually(is_200, within=20)


def _dead(p: Proc) -> bool:
    raise AssertionError(f"kdns exited {p.proc.returncode}:\n{p.log.read_text()}")


async def test_the_conformance_cases_hold_through_the_api_source(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    load_cluster(kube_api)
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path) as p:
        await synced(p)
        port = p.dns
        assert (await ask(port, "web.testns.svc.cluster.local")).records == ["10.96.0.20"]  # R8
        assert (await ask(port, "web.testns.svc.cluster.local", "AAAA")).records == [
            "fd00:10:96::20"
        ]  # R9
        hdls = await ask(port, "hdls.testns.svc.cluster.local")  # R17, R6
        assert hdls.records == ["10.244.1.5", "10.244.1.6", "10.244.2.9"]
        srv = await ask(port, "_http._tcp.web.testns.svc.cluster.local", "SRV")  # R10
        assert srv.records == ["0 100 80 web.testns.svc.cluster.local."]
        ptr = await ask(port, "5.1.244.10.in-addr.arpa", "PTR")  # R24
        assert ptr.records == ["pod-0.hdls.testns.svc.cluster.local."]
        assert (await ask(port, "nobody.testns.svc.cluster.local")).rcode == "NXDOMAIN"  # R19
        nodata = await ask(port, "web.testns.svc.cluster.local", "TXT")  # D1
        assert (nodata.rcode, nodata.empty) == ("NOERROR", True)
        cname = await ask(port, "ext.testns.svc.cluster.local", "CNAME")  # R26
        assert cname.records == ["foo.example.com."]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_services_added_and_deleted_are_answered_and_gone_within_50ms_p99(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path) as p:
        await synced(p)
        added: list[float] = []
        gone: list[float] = []
        for i in range(40):
            name = f"churn-{i}.default.svc.cluster.local"
            ip = f"10.96.7.{i + 1}"
            t0 = time.perf_counter()
            kube_api.apply(service(f"churn-{i}", cluster_ip=ip))
            await eventually(partial(_has, p.dns, name), interval=0)
            added.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            kube_api.delete("Service", "default", f"churn-{i}")
            await eventually(partial(_nx, p.dns, name), interval=0)
            gone.append(time.perf_counter() - t0)
        # The bound, on the 99th percentile of both directions together.
        assert _percentile(added + gone, 0.99) < 0.050, (sorted(added)[-3:], sorted(gone)[-3:])


async def _has(port: int, name: str) -> bool:
    return not (await ask(port, name)).empty


async def _nx(port: int, name: str) -> bool:
    return (await ask(port, name)).rcode == "NXDOMAIN"


async def test_endpoint_readiness_flips_are_followed(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    kube_api.apply(service("db", headless=True))
    first = {"10.244.0.1": True, "10.244.0.2": False}
    kube_api.apply(endpoint_slice("db-1", service_name="db", addresses=first))
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path) as p:
        await synced(p)
        assert (await ask(p.dns, "db.default.svc.cluster.local")).records == ["10.244.0.1"]
        flip = {"10.244.0.1": False, "10.244.0.2": True}
        kube_api.apply(endpoint_slice("db-1", service_name="db", addresses=flip))

        async def flipped() -> bool:
            return (await ask(p.dns, "db.default.svc.cluster.local")).records == ["10.244.0.2"]

        await eventually(flipped)
        kube_api.apply(endpoint_slice("db-1", service_name="db", addresses={"10.244.0.1": False}))
        await eventually(lambda: _nx(p.dns, "db.default.svc.cluster.local"))  # R19


async def test_dropped_watches_recover(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path) as p:
        await synced(p)
        for round_ in range(3):
            kube_api.drop_watches(mid_line=round_ % 2 == 1)
            kube_api.apply(service(f"after-drop-{round_}", cluster_ip=f"10.96.8.{round_ + 1}"))
            await eventually(partial(_has, p.dns, f"after-drop-{round_}.default.svc.cluster.local"))


async def test_while_the_api_is_away_answers_stay_and_after_it_returns_kdns_converges(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    kube_api.apply(service("stays", cluster_ip="10.96.9.1"))
    kube_api.apply(service("goes", cluster_ip="10.96.9.2"))
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path) as p:
        await synced(p)
        await kube_api.stop()
        # Away: objects change behind kdns's back, and history is compacted (410 on return).
        kube_api.delete("Service", "default", "goes")
        kube_api.apply(service("arrives", cluster_ip="10.96.9.3"))
        kube_api.compact()
        for _ in range(10):  # the last known answers keep being served
            assert (await ask(p.dns, "goes.default.svc.cluster.local")).records == ["10.96.9.2"]
            assert await p.ready() == 200
            await asyncio.sleep(0.05)
        await kube_api.start()
        await eventually(lambda: _has(p.dns, "arrives.default.svc.cluster.local"), within=40)
        await eventually(lambda: _nx(p.dns, "goes.default.svc.cluster.local"), within=40)
        assert (await ask(p.dns, "stays.default.svc.cluster.local")).records == ["10.96.9.1"]


async def test_started_before_the_api_exists_servfail_then_ready_and_correct(
    kube_tls: TlsFiles, tmp_path: Path
) -> None:
    fake = FakeKubeApi(tls=kube_tls, bookmark_interval=0.2, port=free_port())
    fake.apply(namespace("default"))
    fake.apply(service("late", cluster_ip="10.96.10.1"))
    kubeconfig = fake.write_kubeconfig(tmp_path / "kc")
    async with kdns_on(kubeconfig, tmp_path) as p:

        async def serving() -> bool:
            with contextlib.suppress(TimeoutError, OSError):
                miss = await ask(p.dns, "missing.default.svc.cluster.local", wait=0.2)
                return miss.rcode == "SERVFAIL"
            return False

        await eventually(serving, within=20)
        assert await p.ready() not in (200, 0)
        assert (await ask(p.dns, "late.default.svc.cluster.local")).rcode == "SERVFAIL"
        await fake.start()
        try:
            await synced(p)
            assert (await ask(p.dns, "late.default.svc.cluster.local")).records == ["10.96.10.1"]
            miss = await ask(p.dns, "missing.default.svc.cluster.local")
            assert miss.rcode == "NXDOMAIN"
        finally:
            await fake.stop()
