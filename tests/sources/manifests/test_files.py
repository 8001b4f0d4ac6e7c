"""Finding the manifest files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.cluster.model import ServicePort
from kdns.sources.manifests import (
    ManifestError,
)
from tests.sources.manifests.helpers import (
    DATA,
    index_of,
    load,
)


def test_a_folder_is_read_recursively_in_sorted_order() -> None:
    data = load(DATA / "mixed")
    assert [p.relative_to(DATA / "mixed").as_posix() for p in data.files] == [
        "00-namespace.yaml",
        "apps/api.json",
        "apps/nested/worker.yml",
    ]
    index = index_of(data)
    assert index.namespace_exists("empty")
    endpoints = index.endpoints("shop", "api")
    assert len(endpoints) == 2
    assert {e.ports for e in endpoints} == {(ServicePort("grpc", "tcp", 50051),)}
    assert len(index.endpoints("shop", "agent")) == 1  # a DaemonSet stands as one pod
    assert data.warnings == ()  # ConfigMap is a known kind DNS skips


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or folder"):
        load(tmp_path / "nope")
