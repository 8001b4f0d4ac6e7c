"""Helpers the manifests tests share."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

from kdns.cluster.index import Index
from kdns.sources.manifests import (
    ManifestData,
    events,
    load_manifests,
)

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "deploy" / "examples" / "seed"
EXAMPLES = ROOT / "deploy" / "examples"
DATA = ROOT / "tests" / "data" / "manifests"
SVC_CIDR = ip_network("10.96.0.0/16")
POD_CIDR = ip_network("10.244.0.0/16")


def load(*paths: Path, **kw: object) -> ManifestData:
    kw.setdefault("service_cidrs", [SVC_CIDR])
    kw.setdefault("pod_cidrs", [POD_CIDR])
    return load_manifests(list(paths), **kw)  # type: ignore[arg-type]


def index_of(data: ManifestData) -> Index:
    index = Index()
    for event in events(data):
        index.apply(event)
    return index


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def deployment(name: str, labels: str, *, replicas: int = 1, ports: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers:
      - name: c
        image: x
        ports: [{ports}]
"""


def services_yaml(names: list[str]) -> str:
    return "\n---\n".join(
        f"kind: Service\nmetadata: {{name: {n}}}\nspec: {{ports: [{{port: 80}}]}}" for n in names
    )


def ips_of(data: ManifestData) -> dict[str, tuple[object, ...]]:
    return {s.name: s.cluster_ips for s in data.services}


async def wait_for(predicate: Callable[[], bool], *, seconds: float = 3.0) -> float:
    """Wait (bounded) until predicate() holds; returns the seconds it took."""
    start = time.monotonic()
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def bump_mtime(path: Path) -> None:
    # Coarse-mtime filesystems: make sure the edit is visible even within one tick.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def list_objects(services: int, endpoints: int) -> list[dict[str, object]]:
    """Headless Services, each with an EndpointSlice of `endpoints` endpoints; in every
    slice the endpoint at index 1 is not ready."""
    items: list[dict[str, object]] = []
    for i in range(services):
        name = f"svc-{i:03d}"
        meta = {"name": name, "namespace": "big"}
        port = {"name": "http", "protocol": "TCP", "port": 80}
        items.append(
            {"kind": "Service", "metadata": meta, "spec": {"clusterIP": "None", "ports": [port]}}
        )
        eps = [
            {"addresses": [f"10.{i // 256}.{i % 256}.{j + 1}"], "conditions": {"ready": j != 1}}
            for j in range(endpoints)
        ]
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": "big",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [port],
                "endpoints": eps,
            }
        )
    return items


def same(a: ManifestData, b: ManifestData) -> None:
    assert a.services == b.services
    assert a.slices == b.slices
    assert a.namespaces == b.namespaces
    assert a.pods == b.pods
