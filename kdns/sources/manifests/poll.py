"""Watching the manifests: poll the files and apply a full reload on any change."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from kdns.cluster.model import Event
from kdns.sources.manifests.allocate import Network
from kdns.sources.manifests.data import ManifestData, digests, events
from kdns.sources.manifests.errors import ManifestError
from kdns.sources.manifests.files import manifest_files
from kdns.sources.manifests.load import load_manifests

log = logging.getLogger(__name__)


def _snapshot(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...] | str:
    """(file, mtime_ns, size) of every manifest file; an error text if the set is unreadable."""
    try:
        files = manifest_files(paths)
        return tuple((str(p), st.st_mtime_ns, st.st_size) for p in files for st in [os.stat(p)])
    except (ManifestError, OSError) as exc:
        return str(exc)


async def run_manifests(
    paths: Sequence[Path],
    *,
    apply: Callable[[Event], object],
    service_cidrs: Sequence[Network],
    pod_cidrs: Sequence[Network],
    poll_seconds: float = 0.5,
    on_error: Callable[[str], None] | None = None,
    initial: ManifestData | None = None,
) -> None:
    """Serve the manifests: load and apply them (unless `initial` was already applied),
    then poll the files every `poll_seconds` and apply a full reload on any change.

    Errors in the first load are raised (ManifestError); a later reload that fails keeps
    the last good data and is logged (and passed to `on_error`) once per change.
    """
    snapshot = await asyncio.to_thread(_snapshot, paths)
    if initial is None:
        initial = await asyncio.to_thread(
            load_manifests, paths, service_cidrs=service_cidrs, pod_cidrs=pod_cidrs
        )
        for event in events(initial):
            apply(event)
    # Keep a digest per kind, not the data: after a reload the index keeps its own (equal)
    # objects, so holding the loaded ones would be a second copy.
    current = digests(initial)
    warned = set(initial.warnings)
    for line in initial.warnings:
        log.warning("%s", line)
    del initial
    failing = False
    while True:
        await asyncio.sleep(poll_seconds)
        now = await asyncio.to_thread(_snapshot, paths)
        if now == snapshot:
            continue
        snapshot = now
        try:
            data = await asyncio.to_thread(
                load_manifests, paths, service_cidrs=service_cidrs, pod_cidrs=pod_cidrs
            )
        except ManifestError as exc:
            message = f"manifests reload failed, keeping the last good data: {exc}"
            log.error("%s", message)
            failing = True
            if on_error is not None:
                on_error(str(exc))
            continue
        for line in data.warnings:
            if line not in warned:
                warned.add(line)
                log.warning("%s", line)
        if failing:
            log.info("manifests reload succeeded again")
            failing = False
        now_digests = digests(data)
        if now_digests == current:
            continue
        for event, new, old in zip(events(data), now_digests, current, strict=True):
            if new != old:
                apply(event)
        current = now_digests
        log.info(
            "manifests reloaded: %d services, %d endpointslices, %d pods",
            len(data.services),
            len(data.slices),
            len(data.pods),
        )
