"""The result of a load: model objects for the index, plus what the summary needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdns.cluster.model import EndpointSlice, Kind, Namespace, Pod, Replace, Service
from kdns.sources.manifests.table import summary_lines


@dataclass(frozen=True, slots=True)
class ManifestData:
    """Everything the manifests describe, as model objects, plus what the summary needs."""

    services: tuple[Service, ...]
    slices: tuple[EndpointSlice, ...]
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    files: tuple[Path, ...] = ()
    service_types: Mapping[tuple[str, str], str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # one line each, logged at WARNING
    notes: tuple[str, ...] = ()  # one line each, logged at INFO (ignored kinds per file)
    loaded_at: float = 0.0  # Unix seconds when the load ended

    def summary_lines(self, *, max_services: int = 20) -> list[str]:
        """The start-up summary: counts, then the first `max_services` rows of the table
        (see `table.summary_lines`)."""
        return summary_lines(self, max_services=max_services)


def events(data: ManifestData) -> list[Replace]:
    """One Replace per kind: applying them makes an index hold exactly `data`."""
    return [
        Replace(Kind.NAMESPACE, data.namespaces),
        Replace(Kind.SERVICE, data.services),
        Replace(Kind.ENDPOINT_SLICE, data.slices),
        Replace(Kind.POD, data.pods),
    ]


def digests(data: ManifestData) -> tuple[int, ...]:
    """A hash per kind, in the order of `events(data)`: a reload applies only the kinds
    whose hash changed. The objects are frozen and hash by value; two different lists of
    one kind have equal hashes with odds of about 2**-64, which would delay that change
    to the next edit."""
    return tuple(hash(event.objects) for event in events(data))
