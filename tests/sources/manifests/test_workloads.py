"""Workloads expanded to Pods as their controllers would."""

from __future__ import annotations

from kdns.cluster.model import ServicePort
from tests.sources.manifests.helpers import (
    EXAMPLES,
    index_of,
    load,
)


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
