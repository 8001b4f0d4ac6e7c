"""Workloads expanded to Pods as their controllers would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdns.cluster.model import ServicePort
from kdns.sources.manifests import ManifestError
from tests.sources.manifests.helpers import EXAMPLES, index_of, load, write


def test_statefulset_pods_have_hostnames_under_their_headless_service() -> None:
    data = load(EXAMPLES / "statefulset")
    index = index_of(data)
    svc = index.service("default", "db")
    assert svc is not None
    assert svc.headless
    endpoints = index.endpoints("default", "db")
    assert sorted(e.label for e in endpoints) == ["db-0", "db-1", "db-2"]
    assert sorted(p.name for p in data.pods) == ["db-0", "db-1", "db-2"]
    assert {e.ports for e in endpoints} == {(ServicePort("pg", "tcp", 5432),)}


def workload(kind: str, name: str, spec: str) -> str:
    return (
        f"kind: {kind}\nmetadata: {{name: {name}}}\nspec: {{{spec}"
        f"selector: {{matchLabels: {{app: {name}}}}}, "
        f"template: {{metadata: {{labels: {{app: {name}}}}}, spec: {{}}}}}}\n"
    )


def test_each_workload_kind_gives_the_pods_its_controller_would(tmp_path: Path) -> None:
    write(
        tmp_path,
        "w.yaml",
        "---\n".join(
            [
                workload("Deployment", "dep", "replicas: 2, "),
                workload("ReplicaSet", "rs", "replicas: 1, "),
                workload("StatefulSet", "ss", "replicas: 2, serviceName: ss, "),
                workload("DaemonSet", "ds", ""),
                workload("Job", "job", "parallelism: 3, "),
                workload("Deployment", "none", "replicas: 0, "),
                workload("Deployment", "default", ""),  # replicas defaults to 1
                "kind: ReplicationController\nmetadata: {name: rc}\n"
                "spec: {replicas: 1, selector: {app: rc}, "
                "template: {metadata: {labels: {app: rc}}}}\n",
            ]
        ),
    )
    names = sorted(p.name for p in load(tmp_path).pods)
    by_prefix: dict[str, list[str]] = {}
    for name in names:
        by_prefix.setdefault(name.split("-")[0], []).append(name)
    assert {k: len(v) for k, v in by_prefix.items()} == {
        "dep": 2,
        "rs": 1,
        "ss": 2,
        "ds": 1,
        "job": 3,
        "default": 1,
        "rc": 1,
    }
    assert all(re.fullmatch(r"dep-[b-z2-9]{10}-[b-z2-9]{5}", n) for n in by_prefix["dep"])
    assert len({n.split("-")[1] for n in by_prefix["dep"]}) == 1  # one ReplicaSet hash
    for prefix in ("rs", "ds", "job", "rc"):
        assert all(re.fullmatch(rf"{prefix}-[b-z2-9]{{5}}", n) for n in by_prefix[prefix])
    assert by_prefix["ss"] == ["ss-0", "ss-1"]
    assert names == sorted(p.name for p in load(tmp_path).pods)  # the same on every load


def test_a_template_that_does_not_match_the_selector_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "d.yaml",
        "kind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {app: a}}, "
        "template: {metadata: {labels: {app: b}}}}\n",
    )
    with pytest.raises(ManifestError, match=r"spec\.selector\.matchLabels\.app: does not match"):
        load(tmp_path)
