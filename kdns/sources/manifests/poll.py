"""Watching the manifests: poll the files and apply a full reload on any change.

Loads are all-or-nothing: while one file is broken, no edit is applied and the last good
data stays served. `ReloadStatus` says so, for the metrics and the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdns.cluster.model import Event
from kdns.sources.convert import SourceFilter
from kdns.sources.manifests.allocate import Network
from kdns.sources.manifests.data import ManifestData, digests, events
from kdns.sources.manifests.errors import ManifestError
from kdns.sources.manifests.files import manifest_files
from kdns.sources.manifests.load import load_manifests

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReloadStatus:
    """What the manifests poller last did; `run_manifests` keeps it up to date (the caller
    may read it at any time from the event loop's thread).

    For metrics: reload failed = `failing` (0/1), last success = `last_good_load`.
    """

    last_good_load: float | None = None
    """Unix seconds when the data being served was loaded (the first load included);
    None before any load succeeded."""
    last_error: str | None = None
    """The error of the latest load (one line: file, document, field, fix) while it is
    failing; None once a load succeeds."""
    failing_since: float | None = None
    """Unix seconds of the first failed load of the current failure; None when not failing."""
    failed_loads: int = 0
    """Loads that failed since start (a counter: it never goes down)."""
    failed_in_a_row: int = 0
    """Loads that failed since the last one that succeeded."""
    good_loads: int = 0
    """Loads that succeeded since start, the first included (a counter)."""

    @property
    def failing(self) -> bool:
        """True while the latest load failed: edits are not being applied."""
        return self.last_error is not None

    def succeeded(self, at: float) -> None:
        self.last_good_load = at
        self.last_error = None
        self.failing_since = None
        self.failed_in_a_row = 0
        self.good_loads += 1

    def failed(self, error: str, at: float) -> None:
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = at
        self.failed_loads += 1
        self.failed_in_a_row += 1


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
    status: ReloadStatus | None = None,
    clock: Callable[[], float] = time.time,
    filters: SourceFilter | None = None,
) -> None:
    """Serve the manifests: load and apply them (unless `initial` was already applied),
    then poll the files every `poll_seconds` and apply a full reload on any change.
    Runs until cancelled. Every load keeps what `filters` serves (see `load_manifests`).

    Errors in the first load are raised (ManifestError). A later reload that fails
    (ManifestError, OSError) never ends the loop: the last good data stays, the failure is
    logged once per change, passed to `on_error` and recorded in `status`. Any other
    exception is a bug and propagates (the caller restarts the source).
    """
    status = ReloadStatus() if status is None else status
    snapshot = await asyncio.to_thread(_snapshot, paths)
    if initial is None:
        try:
            initial = await asyncio.to_thread(
                functools.partial(
                    load_manifests,
                    paths,
                    service_cidrs=service_cidrs,
                    pod_cidrs=pod_cidrs,
                    filters=filters,
                )
            )
        except ManifestError as exc:
            status.failed(str(exc), clock())
            raise
        for event in events(initial):
            apply(event)
    status.succeeded(initial.loaded_at or clock())
    # Keep a digest per kind, not the data: after a reload the index keeps its own (equal)
    # objects, so holding the loaded ones would be a second copy.
    current = digests(initial)
    logged = {*initial.warnings, *initial.notes}  # load_manifests logged these already
    del initial

    def reload() -> ManifestData:
        return load_manifests(
            paths,
            service_cidrs=service_cidrs,
            pod_cidrs=pod_cidrs,
            report=False,
            filters=filters,
        )

    while True:
        await asyncio.sleep(poll_seconds)
        now = await asyncio.to_thread(_snapshot, paths)
        if now == snapshot:
            continue
        snapshot = now
        try:
            data = await asyncio.to_thread(reload)
        except (ManifestError, OSError) as exc:
            _failed(status, str(exc), clock())
            if on_error is not None:
                on_error(str(exc))
            continue
        if status.failing:
            log.info("manifests reload succeeded again; edits are applied")
        status.succeeded(data.loaded_at)
        logged = _log_new(data, logged)
        current = _apply_changes(data, current, apply)


def _failed(status: ReloadStatus, error: str, at: float) -> None:
    status.failed(error, at)
    log.error(
        "manifests reload failed (%d in a row), edits are not applied and the data loaded "
        "at %s is still served: %s",
        status.failed_in_a_row,
        _utc(status.last_good_load),
        error,
    )


def _apply_changes(
    data: ManifestData, current: tuple[int, ...], apply: Callable[[Event], object]
) -> tuple[int, ...]:
    """Apply the kinds of `data` whose digest differs from `current`; the new digests."""
    now = digests(data)
    if now == current:
        return current
    for event, new, old in zip(events(data), now, current, strict=True):
        if new != old:
            apply(event)
    log.info(
        "manifests reloaded: %d services, %d endpointslices, %d pods",
        len(data.services),
        len(data.slices),
        len(data.pods),
    )
    return now


def _log_new(data: ManifestData, logged: set[str]) -> set[str]:
    """Log the warnings and notes of `data` not in `logged`; the lines of `data`."""
    for line in data.warnings:
        if line not in logged:
            log.warning("%s", line)
    for line in data.notes:
        if line not in logged:
            log.info("%s", line)
    return {*data.warnings, *data.notes}


def _utc(at: float | None) -> str:
    return "never" if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
