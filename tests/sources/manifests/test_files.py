"""Finding the manifest files, and what is said about what is skipped."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kdns.cluster.model import ServicePort
from kdns.sources.manifests import ManifestError
from tests.sources.manifests.helpers import DATA, index_of, load, services_yaml, write


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


def manifest_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("kdns.sources.manifests")]


def test_an_empty_folder_loads_with_one_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", "README.txt", "not a manifest")
    with caplog.at_level(logging.INFO):
        data = load(tmp_path / "empty")
    assert data.files == ()
    assert [s.name for s in data.services] == ["kubernetes"]  # still served
    (warning,) = [r for r in manifest_records(caplog) if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert message.startswith(f"{tmp_path / 'empty'}: no manifest files")
    assert "\n" not in message
    assert data.warnings == (message,)


def test_a_dangling_symbolic_link_is_skipped_with_one_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "good.yaml", services_yaml(["web"]))
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "elsewhere", "other.txt", services_yaml(["other"]))
    os.symlink(tmp_path / "gone.yaml", tmp_path / "link.yaml")
    os.symlink(tmp_path / "elsewhere" / "other.txt", tmp_path / "other.yml")  # read
    with caplog.at_level(logging.INFO):
        data = load(tmp_path)
    assert [p.name for p in data.files] == ["good.yaml", "other.yml"]
    warnings = [r.getMessage() for r in manifest_records(caplog) if r.levelno >= logging.WARNING]
    assert warnings == [
        f"{tmp_path / 'link.yaml'}: skipped, a symbolic link to {tmp_path / 'gone.yaml'}, "
        "which does not exist; fix or remove the link"
    ]


def test_ignored_kinds_are_one_info_line_per_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    objects = [f"kind: ConfigMap\nmetadata: {{name: c{i}}}\n" for i in range(50)]
    objects += ["kind: Ingress\nmetadata: {name: i}\n", services_yaml(["web"])]
    write(tmp_path, "a.yaml", "---\n".join(objects))
    write(tmp_path, "b.yaml", "kind: Secret\nmetadata: {name: s}\n")
    write(tmp_path, "c.yaml", services_yaml(["other"]))  # nothing ignored: no line
    with caplog.at_level(logging.INFO):
        data = load(tmp_path)
    infos = [r.getMessage() for r in manifest_records(caplog) if r.levelno == logging.INFO]
    assert infos == [
        f"{tmp_path / 'a.yaml'}: ignored 51 objects DNS does not use (ConfigMap x50, Ingress x1)",
        f"{tmp_path / 'b.yaml'}: ignored 1 object DNS does not use (Secret x1)",
    ]
    assert data.warnings == ()
    assert not [r for r in manifest_records(caplog) if r.levelno >= logging.WARNING]


def test_a_path_that_is_not_a_file_or_folder_is_an_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block
    with pytest.raises(ManifestError, match="not a regular file or a folder"):
        load(tmp_path / "pipe.yaml")
    write(tmp_path, "s.yaml", services_yaml(["web"]))
    assert [p.name for p in load(tmp_path).files] == ["s.yaml"]  # in a folder: skipped


def test_a_file_reached_by_two_names_is_read_once(tmp_path: Path) -> None:
    # A mounted ConfigMap: x.yaml -> ..data/x.yaml -> ..2024_01_01/x.yaml.
    (tmp_path / "..2024_01_01").mkdir()
    write(tmp_path / "..2024_01_01", "x.yaml", services_yaml(["web"]))
    os.symlink("..2024_01_01", tmp_path / "..data")
    os.symlink("..data/x.yaml", tmp_path / "x.yaml")
    data = load(tmp_path, tmp_path / "x.yaml")
    assert [p.relative_to(tmp_path).as_posix() for p in data.files] == ["..2024_01_01/x.yaml"]
    assert [s.name for s in data.services] == ["kubernetes", "web"]
