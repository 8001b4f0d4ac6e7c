"""The kubectl-like table of what the manifests serve (`kdns manifests`, the start-up
summary): counted on the packed slices, without building `Endpoint` values for rows that
are not printed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from kdns.cluster.model import EndpointSlice, Service

if TYPE_CHECKING:
    from kdns.sources.manifests.data import ManifestData

HEADER = ("NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "READY", "ENDPOINTS")


def render_endpoints(data: ManifestData) -> str:
    """A table of every Service: type, ClusterIP(s), ready/total endpoints, and ENDPOINTS as
    `kubectl get endpoints` shows them (three, then `+ N more...`)."""
    return "\n".join(table_lines(data.services, data.slices, data.service_types))


def summary_lines(data: ManifestData, *, max_services: int = 20) -> list[str]:
    """The start-up summary: counts, then the table of `render_endpoints` for the first
    `max_services` Services (so a big folder does not flood the log). Only the rows
    printed are rendered (1M endpoints took 3.4 s to print 20 rows otherwise); the counts
    and the column widths still cover every Service."""
    ready = sum(s.endpoint_count - len(s.not_ready) for s in data.slices)
    head = (
        f"manifests: {len(data.files)} files, {len(data.services)} services, "
        f"{len(data.slices)} endpointslices ({ready} ready endpoints), "
        f"{len(data.pods)} pods, {len(data.namespaces)} namespaces"
    )
    table = table_lines(data.services, data.slices, data.service_types, limit=max_services)
    lines = [head, *table]
    if len(data.services) > max_services:
        lines.append(f"... and {len(data.services) - max_services} more services")
    return lines


def table_lines(
    services: Sequence[Service],
    slices: Iterable[EndpointSlice],
    service_types: Mapping[tuple[str, str], str],
    *,
    limit: int | None = None,
) -> list[str]:
    """The header, then one row per Service, the first `limit` rows only when given.
    Column widths cover every Service either way (the last column, ENDPOINTS, pads
    nothing: lines are right-stripped)."""
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for es in slices:
        if es.service is not None:
            by_service.setdefault((es.namespace, es.service), []).append(es)
    rows: list[tuple[str, ...]] = [HEADER]
    for n, svc in enumerate(services):
        key = (svc.namespace, svc.name)
        stype = service_types.get(key, "ClusterIP")
        if svc.external_name is not None:
            rows.append((*key, stype, "<none>", "-", f"CNAME {svc.external_name}"))
            continue
        ip = "None" if svc.headless else ",".join(map(str, svc.cluster_ips)) or "<pending>"
        service_slices = by_service.get(key, [])
        ready, not_ready = _ready_counts(service_slices)
        text = _endpoints_text(service_slices) if limit is None or n < limit else ""
        rows.append((*key, stype, ip, f"{ready}/{ready + not_ready}", text))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    shown_rows = rows if limit is None else rows[: limit + 1]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in shown_rows
    ]


def _ready_raws(es: EndpointSlice) -> set[bytes]:
    """The distinct ready addresses of `es`, as raw bytes."""
    if not es.not_ready:
        return set(es.raws())
    return {raw for ready, _, raw in es.raw_entries() if ready}


def _ready_counts(slices: Iterable[EndpointSlice]) -> tuple[int, int]:
    """(distinct ready addresses, distinct addresses only ever not ready) of a Service's
    slices: the READY column."""
    ready: set[bytes] = set()
    not_ready: set[bytes] = set()
    for es in slices:
        if not es.not_ready:
            ready.update(es.raws())
            continue
        for is_ready, _, raw in es.raw_entries():
            (ready if is_ready else not_ready).add(raw)
    return len(ready), len(not_ready - ready)


def _endpoints_text(slices: Iterable[EndpointSlice]) -> str:
    """The `kubectl get endpoints` ENDPOINTS text: three address:port pairs (each slice's
    ready addresses sorted, for each of its ports), then `+ N more...`."""
    listed: list[str] = []
    total = 0
    for es in slices:
        ports = es.ports or (None,)
        if len(listed) >= 3:  # only the count is needed: distinct ready addresses x ports
            total += len(_ready_raws(es)) * len(ports)
            continue
        addresses = sorted(
            {a for e in es.endpoints if e.ready for a in e.addresses},
            key=lambda a: (a.version, int(a)),
        )
        for port in ports:
            for address in addresses:
                total += 1
                if port is None:
                    text = str(address)
                elif address.version == 6:
                    text = f"[{address}]:{port.port}"
                else:
                    text = f"{address}:{port.port}"
                if len(listed) < 3:
                    listed.append(text)
    if not listed:
        return "<none>"
    if total > len(listed):
        return ",".join(listed) + f" + {total - len(listed)} more..."
    return ",".join(listed)
