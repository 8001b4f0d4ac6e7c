"""End to end: the kubernetes plugin's filters in a running kdns, from both sources: what
`namespaces`, `labels`, `namespace_labels` and `endpoint_pod_names` serve is what dig
gets, through the flags (`--namespaces`, `--labels`, ...) and through a Corefile."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kdns_process import dig, free_port, run_kdns
from tests.e2e.test_kube_source import ask, eventually, kdns_on, synced
from tests.fakes.kubeapi import (
    FakeKubeApi,
    endpoint_slice,
    kube_api,
    kube_tls,
    kubeconfig_for,
    namespace,
    service,
)

__all__ = ["kube_api", "kube_tls"]  # fixtures

pytestmark = pytest.mark.e2e

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {clusterIP: 10.96.1.1, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod, labels: {app: db}}
spec: {clusterIP: 10.96.1.2, ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: dev, labels: {app: web}}
spec: {clusterIP: 10.96.2.1, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: prod, labels: {app: web}}
spec: {clusterIP: None, selector: {run: api}, ports: [{name: http, port: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {run: api}}
  template:
    metadata: {labels: {run: api}}
    spec: {containers: [{name: c, image: x}]}
"""
S = ".svc.cluster.local"


def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return path


def test_flags_namespaces_and_labels(tmp_path: Path) -> None:
    args = ["--manifests", str(manifests(tmp_path)), "--upstream", "none",
            "--namespaces", "prod", "--labels", "app=web"]  # fmt: skip
    with run_kdns(args, tmp_path=tmp_path) as k:
        assert dig(k.dns_port, f"web.prod{S}").answer == [f"web.prod{S}. 5 IN A 10.96.1.1"]
        assert dig(k.dns_port, f"db.prod{S}").status == "NXDOMAIN"  # labels app=db
        assert dig(k.dns_port, f"web.dev{S}").status == "NXDOMAIN"  # namespace dev
        assert dig(k.dns_port, "1.2.96.10.in-addr.arpa", "PTR").status == "NXDOMAIN"
        assert dig(k.dns_port, "1.1.96.10.in-addr.arpa", "PTR").answer == [
            f"1.1.96.10.in-addr.arpa. 5 IN PTR web.prod{S}."
        ]
        # The headless api Service's slices carry its labels (the controller copies them).
        assert len(dig(k.dns_port, f"api.prod{S}").answer) == 2


def test_endpoint_pod_names_name_headless_endpoints_by_pod(tmp_path: Path) -> None:
    args = ["--manifests", str(manifests(tmp_path)), "--upstream", "none",
            "--endpoint-pod-names", "true"]  # fmt: skip
    with run_kdns(args, tmp_path=tmp_path) as k:
        srv = dig(k.dns_port, f"_http._tcp.api.prod{S}", "SRV").answer
        targets = sorted(line.split()[-1] for line in srv)
        assert len(targets) == 2
        for target in targets:
            label = target.split(".")[0]
            assert label.startswith("api-")  # the Deployment's pod name, not 10-244-x-y
            (record,) = dig(k.dns_port, target).answer
            assert record.startswith(f"{target} 5 IN A 10.244.")


def test_a_corefile_with_namespace_labels(tmp_path: Path) -> None:
    port, ready = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f".:{port} {{\n  bind 127.0.0.1\n  ready 127.0.0.1:{ready}\n"
        "  kubernetes cluster.local {\n    namespace_labels team=a\n  }\n}\n"
    )
    log = tmp_path / "kdns.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdns", "serve", "--corefile", str(corefile),
             "--manifests", str(manifests(tmp_path))],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert dig(port, f"web.prod{S}").answer == [f"web.prod{S}. 5 IN A 10.96.1.1"]
        assert dig(port, f"web.dev{S}").status == "NXDOMAIN"  # dev has no team=a label
        assert dig(port, "dev.svc.cluster.local").status == "NXDOMAIN"
    finally:
        proc.terminate()
        proc.wait(10)


def labelled(obj: dict[str, Any], **labels: str) -> dict[str, Any]:
    obj["metadata"]["labels"] = {**obj["metadata"].get("labels", {}), **labels}
    return obj


async def test_the_api_source_watches_only_labelled_objects(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    kube_api.apply(labelled(namespace("prod"), team="a"))
    kube_api.apply(namespace("dev"))
    kube_api.apply(labelled(service("web", "prod", cluster_ip="10.96.1.1"), app="web"))
    kube_api.apply(labelled(service("db", "prod", cluster_ip="10.96.1.2"), app="db"))
    kube_api.apply(labelled(service("web", "dev", cluster_ip="10.96.2.1"), app="web"))
    kube_api.apply(labelled(service("api", "prod", headless=True), app="web"))
    api = endpoint_slice("api-a", "prod", service_name="api", addresses={"10.244.1.5": True})
    api["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "api-7d9f-x2b4k"}
    kube_api.apply(labelled(api, app="web"))
    extra = ["--labels", "app=web", "--namespace-labels", "team=a", "--endpoint-pod-names", "true"]
    async with kdns_on(kubeconfig_for(kube_api, tmp_path / "kc"), tmp_path, extra) as p:
        await synced(p)
        assert (await ask(p.dns, f"web.prod{S}")).records == ["10.96.1.1"]
        assert (await ask(p.dns, f"db.prod{S}")).rcode == "NXDOMAIN"
        assert (await ask(p.dns, f"web.dev{S}")).rcode == "NXDOMAIN"
        assert (await ask(p.dns, f"api-7d9f-x2b4k.api.prod{S}")).records == ["10.244.1.5"]
        # Relabelled: the watch drops it, and its name goes.
        kube_api.apply(labelled(service("web", "prod", cluster_ip="10.96.1.1"), app="gone"))

        async def gone() -> bool:
            return (await ask(p.dns, f"web.prod{S}")).rcode == "NXDOMAIN"

        await eventually(gone)
        # The dev namespace gets the label: its names appear.
        kube_api.apply(labelled(namespace("dev"), team="a"))

        async def shown() -> bool:
            return (await ask(p.dns, f"web.dev{S}")).records == ["10.96.2.1"]

        await eventually(shown)
    selectors = [r for r in kube_api.requests if "labelSelector=" in r]
    assert any(r.startswith("GET /api/v1/services?") for r in selectors)
    assert any(r.startswith("GET /api/v1/namespaces?") for r in selectors)
