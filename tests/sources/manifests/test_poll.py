"""Watching: edits are applied, a broken edit keeps the last good data."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import Event, Kind, Replace
from kdns.sources.manifests import (
    ManifestError,
    run_manifests,
)
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
