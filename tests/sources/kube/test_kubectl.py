"""Fidelity: the real kubectl (client-go) lists, paginates and watches the fake API.

If kubectl accepts the fake's discovery, lists and watch streams, the fake speaks the
contract kdns is tested against. Skipped only when kubectl is absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.fakes.kubeapi import FakeKubeApi, endpoint_slice, namespace, service

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def _env(kubeconfig: Path, home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}


async def kubectl(kubeconfig: Path, home: Path, *args: str) -> str:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--cache-dir={home / 'cache'}",
        "--request-timeout=10s",
        *args,
        env=_env(kubeconfig, home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _seed(fake: FakeKubeApi) -> None:
    fake.apply(namespace("apps"))
    for i in range(5):
        ns = "apps" if i % 2 else "default"
        fake.apply(service(f"svc{i}", ns, cluster_ip=f"10.96.0.{i + 1}"))
    fake.apply(
        endpoint_slice("svc1-abc", "apps", service_name="svc1", addresses={"10.1.0.1": True})
    )


async def test_kubectl_lists_services_and_endpointslices(kube_api: FakeKubeApi, tmp_path: Path):
    _seed(kube_api)
    kc = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    out = await kubectl(kc, tmp_path, "get", "svc", "-A", "-o", "name")
    assert sorted(out.split()) == [f"service/svc{i}" for i in range(5)]
    out = await kubectl(kc, tmp_path, "get", "endpointslices", "-A", "-o", "name")
    assert out.split() == ["endpointslice.discovery.k8s.io/svc1-abc"]
    out = await kubectl(kc, tmp_path, "get", "svc", "-n", "apps", "-o", "name")
    assert sorted(out.split()) == ["service/svc1", "service/svc3"]


async def test_kubectl_paginates_with_chunk_size(kube_api: FakeKubeApi, tmp_path: Path):
    _seed(kube_api)
    kc = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    out = await kubectl(kc, tmp_path, "get", "svc", "-A", "--chunk-size=2", "-o", "name")
    assert sorted(out.split()) == [f"service/svc{i}" for i in range(5)]
    pages = [r for r in kube_api.requests if r.startswith("GET /api/v1/services?")]
    assert len(pages) == 3  # 2 + 2 + 1, following `continue`
    assert sum("continue=" in r for r in pages) == 2


async def test_kubectl_watch_sees_changes_made_mid_stream(kube_api: FakeKubeApi, tmp_path: Path):
    _seed(kube_api)
    kc = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--cache-dir={tmp_path / 'cache'}",
        "get",
        "svc",
        "-A",
        "-w",
        "-o",
        "name",
        env=_env(kc, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        seen: list[str] = []

        async def read_until(name: str) -> None:
            assert proc.stdout is not None
            while name not in seen:
                line = await proc.stdout.readline()
                assert line, "kubectl ended its watch"
                seen.append(line.decode().strip())

        await asyncio.wait_for(read_until("service/svc4"), 20)  # the initial list
        kube_api.apply(service("late", cluster_ip="10.96.0.50"))
        await asyncio.wait_for(read_until("service/late"), 20)  # a watch event
        assert any("watch=true" in r or "watch=1" in r for r in kube_api.requests)
    finally:
        proc.kill()
        await proc.wait()
