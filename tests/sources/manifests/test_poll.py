"""Watching: edits are applied, a broken edit keeps the last good data."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import Event, Kind, Replace
from kdns.sources.manifests import ManifestError, ReloadStatus, events, poll, run_manifests
from tests.sources.manifests.helpers import (
    POD_CIDR,
    SVC_CIDR,
    bump_mtime,
    load,
    services_yaml,
    wait_for,
    write,
)


async def test_edits_are_applied_and_a_broken_edit_keeps_the_last_good_data(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "s.yaml", services_yaml(["one"]))
    index = Index()
    applied: list[Event] = []
    errors: list[str] = []

    def apply(event: Event) -> None:
        applied.append(event)
        index.apply(event)

    cidrs: list[IPv4Network | IPv6Network] = [SVC_CIDR]
    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=apply,
            service_cidrs=cidrs,
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            on_error=errors.append,
        )
    )
    try:
        await wait_for(lambda: index.service("default", "one") is not None)
        path.write_text(services_yaml(["one", "two"]))
        bump_mtime(path)
        took = await wait_for(lambda: index.service("default", "two") is not None)
        assert took < 1.0  # "an edit must be reflected within about a second"

        path.write_text("kind: Service\nmetadata: {name: [broken\n")
        bump_mtime(path)
        await wait_for(lambda: bool(errors))
        assert "s.yaml" in errors[0]
        assert index.service("default", "two") is not None  # last good data kept

        count = len(applied)
        path.write_text(services_yaml(["two"]))
        bump_mtime(path)
        await wait_for(lambda: index.service("default", "one") is None)
        assert index.service("default", "two") is not None
        assert len(errors) == 1
        assert len(applied) > count

        write(tmp_path, "more.yaml", services_yaml(["three"]))  # a new file is noticed too
        await wait_for(lambda: index.service("default", "three") is not None)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_errors_at_start_are_raised(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", "kind: Service\nmetadata: {}\n")
    with pytest.raises(ManifestError, match=r"metadata\.name"):
        await run_manifests(
            [tmp_path],
            apply=lambda e: None,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
        )


async def test_run_manifests_with_initial_data_does_not_apply_it_again(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", services_yaml(["one"]))
    initial = load(tmp_path)
    applied: list[Event] = []
    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=applied.append,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            initial=initial,
        )
    )
    try:
        await asyncio.sleep(0.1)
        assert applied == []  # nothing changed on disk
        write(tmp_path, "t.yaml", services_yaml(["two"]))
        await wait_for(lambda: bool(applied))
        # Only the kinds that changed are replaced: the Services.
        assert [(type(e), getattr(e, "kind", None)) for e in applied] == [(Replace, Kind.SERVICE)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def fields(status: ReloadStatus) -> dict[str, object]:
    names = ("last_good_load", "last_error", "failing_since", "failed_loads", "failed_in_a_row")
    return {
        "failing": status.failing,
        **{name: getattr(status, name) for name in names},
        "good_loads": status.good_loads,
    }


class Clock:
    """A settable clock for the status timestamps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_status_shows_a_failing_reload_until_a_load_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "s.yaml", services_yaml(["one"]))
    initial = load(tmp_path)
    index = Index()
    for event in events(initial):
        index.apply(event)
    status = ReloadStatus()
    clock = Clock()
    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=index.apply,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            initial=initial,
            status=status,
            clock=clock,
        )
    )
    try:
        await wait_for(lambda: status.good_loads == 1)
        assert fields(status) == {
            "failing": False,
            "last_good_load": initial.loaded_at,
            "last_error": None,
            "failing_since": None,
            "failed_loads": 0,
            "failed_in_a_row": 0,
            "good_loads": 1,
        }

        clock.now = 2000.0
        path.write_text("kind: Service\nmetadata: {name: Bad_Name}\n")
        bump_mtime(path)
        await wait_for(lambda: status.failed_loads == 1)
        now = fields(status)
        error = now.pop("last_error")
        assert isinstance(error, str)
        assert error.startswith(f"{path}: document 1 (Service default/Bad_Name): metadata.name")
        assert now == {
            "failing": True,
            "last_good_load": initial.loaded_at,  # what is still served
            "failing_since": 2000.0,
            "failed_loads": 1,
            "failed_in_a_row": 1,
            "good_loads": 1,
        }

        clock.now = 3000.0
        write(tmp_path, "t.yaml", services_yaml(["two"]))  # a good edit elsewhere: blocked
        await wait_for(lambda: status.failed_loads == 2)
        now = fields(status)
        assert (now["failing_since"], now["failed_in_a_row"]) == (2000.0, 2)  # since the first
        assert index.service("default", "two") is None
        assert index.service("default", "one") is not None

        clock.now = 4000.0
        path.write_text(services_yaml(["one"]))
        bump_mtime(path)
        await wait_for(lambda: status.good_loads == 2)
        now = fields(status)
        last_good = now.pop("last_good_load")
        assert isinstance(last_good, float)
        assert last_good > initial.loaded_at  # the load's own time, not the clock's
        assert now == {
            "failing": False,
            "last_error": None,
            "failing_since": None,
            "failed_loads": 2,  # a counter
            "failed_in_a_row": 0,
            "good_loads": 2,
        }
        assert index.service("default", "two") is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].startswith("manifests reload failed (1 in a row), edits are not applied")
    assert errors[1].startswith("manifests reload failed (2 in a row)")
    assert str(path) in errors[0]


async def test_a_first_load_that_fails_is_raised_and_recorded(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", "kind: Service\nmetadata: {name: Bad_Name}\n")
    status = ReloadStatus()
    with pytest.raises(ManifestError, match=r"metadata\.name") as info:
        await run_manifests(
            [tmp_path],
            apply=lambda e: None,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            status=status,
            clock=lambda: 5.0,
        )
    assert fields(status) == {
        "failing": True,
        "last_good_load": None,
        "last_error": str(info.value),
        "failing_since": 5.0,
        "failed_loads": 1,
        "failed_in_a_row": 1,
        "good_loads": 0,
    }


async def test_a_reload_that_cannot_read_keeps_the_loop_and_a_bug_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "s.yaml", services_yaml(["one"]))
    status = ReloadStatus()
    failures: list[BaseException] = [OSError("disk gone"), RuntimeError("a bug")]

    def failing_load(*args: object, **kwargs: object) -> object:
        raise failures.pop(0)

    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=lambda e: None,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            status=status,
        )
    )
    try:
        await wait_for(lambda: status.good_loads == 1)
        monkeypatch.setattr(poll, "load_manifests", failing_load)
        path.write_text(services_yaml(["two"]))
        bump_mtime(path)
        await wait_for(lambda: status.failed_loads == 1)
        assert status.last_error == "disk gone"
        assert not task.done()  # an unreadable reload does not end the source
        write(tmp_path, "t.yaml", services_yaml(["three"]))
        await wait_for(task.done)
        with pytest.raises(RuntimeError, match="a bug"):
            task.result()  # anything else is a bug: it propagates to the caller
    finally:
        task.cancel()
