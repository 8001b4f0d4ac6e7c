"""The text form of an explanation, from its JSON form (`Explanation.as_json()`), so that a
reply from a running kdns (`kdns explain --server`) prints the same way as an offline one.
Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATUS_TEXT = {"answered": "in the answer", "ready": "ready"}


def render(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    source = data.get("source", "")
    where = "offline, from manifests" if source == "manifests" else "asked the running kdns"
    lines.append(f"{data.get('name', '')} {data.get('type', '')}  ({where})")
    lines.append("")
    lines.extend(_answer(data.get("answer") or {}, data.get("forward")))
    obtained = bool((data.get("answer") or {}).get("obtained"))
    lines.extend(_route(data.get("route") or {}, obtained=obtained))
    reasons: Sequence[Mapping[str, Any]] = data.get("reasons") or []
    if reasons:
        lines.append("")
        lines.append("Why:")
        for reason in reasons:
            rule = reason.get("rule") or ""
            cite = f"  [docs/rules.md {rule}]" if rule and rule[0].isupper() else ""
            if rule and not cite:
                cite = f"  [docs/rules.md, {rule}]"
            lines.append(f"  - {reason.get('message', '')}{cite}")
    lines.extend(_service(data))
    suggestions: Sequence[Mapping[str, Any]] = data.get("suggestions") or []
    if suggestions:
        lines.append("")
        lines.append("Did you mean:")
        width = max(len(s.get("name", "")) for s in suggestions)
        for s in suggestions:
            lines.append(f"  {s.get('name', ''):<{width}}  {s.get('why', '')}")
    forward = data.get("forward")
    if forward:
        lines.append("")
        lines.append(_forward(forward))
    return "\n".join(lines) + "\n"


def _answer(answer: Mapping[str, Any], forward: Mapping[str, Any] | None) -> list[str]:
    if not answer.get("obtained"):
        ups = ", ".join((forward or {}).get("upstreams") or []) or "the upstreams"
        return [f"Answer: not asked (offline: it would come from {ups})"]
    flags = " ".join(answer.get("flags") or [])
    lines = [f"Answer: {answer.get('rcode', '')}   flags: {flags}"]
    if answer.get("truncated_udp"):
        lines.append("  (truncated over UDP; this is the TCP reply, as dig retries)")
    for section in ("answer", "authority", "additional"):
        records: Sequence[str] = answer.get(section) or []
        if records:
            lines.append(f"  {section.upper()}:")
            lines.extend(f"    {r}" for r in records)
    if not answer.get("answer") and answer.get("rcode") == "NOERROR":
        lines.append("  (no records: NODATA)")
    return lines


def _route(route: Mapping[str, Any], *, obtained: bool) -> list[str]:
    if route.get("zone") is None:
        return [f"Route: no server block serves this name on {route.get('listener', '')}"]
    plugin = route.get("plugin") or "(no plugin: the end of the chain)"
    zones = " ".join(route.get("block_zones") or [])
    chain = " -> ".join(route.get("chain") or [])
    by = "Answered by" if obtained else "Would be answered by"
    return [
        f"{by}: {plugin}",
        f"  server block: {zones} on {route.get('listener', '')} (matched zone "
        f"{route.get('zone')})",
        f"  chain: {chain}",
    ]


def _service(data: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    service = data.get("service")
    if service:
        lines.append("")
        head = f"Service {service.get('namespace')}/{service.get('name')}: {service.get('type')}"
        ips = ", ".join(service.get("cluster_ips") or [])
        if ips:
            head += f", ClusterIP {ips}"
        if service.get("external_name"):
            head += f", externalName {service.get('external_name')}"
        ports = ", ".join(service.get("ports") or [])
        head += f", ports {ports}" if ports else ", no ports"
        lines.append(head)
    slices: Sequence[Mapping[str, Any]] = data.get("slices") or []
    if service and not slices and service.get("type") != "ExternalName":
        lines.append("EndpointSlices: none")
    if slices:
        lines.append("EndpointSlices:")
        for s in slices:
            ports = ", ".join(s.get("ports") or []) or "no ports"
            lines.append(
                f"  {s.get('name')}  ({ports}): {_count(s.get('endpoints'), 'endpoint')}, "
                f"{s.get('ready')} ready"
            )
    endpoints: Sequence[Mapping[str, Any]] = data.get("endpoints") or []
    if endpoints:
        lines.append("Endpoints:")
        rows = []
        for e in endpoints:
            pod = f"pod {e['pod']}" if e.get("pod") else ""
            reason = e.get("reason") or {}
            status = e.get("status", "")
            if status == "excluded":
                what = f"LEFT OUT: {reason.get('message', '')}"
            else:
                what = STATUS_TEXT.get(status, status)
                if reason:
                    what += f" ({reason.get('message', '')})"
            rows.append((str(e.get("address", "")), str(e.get("label", "")), pod, what))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            cells = [r[i].ljust(widths[i]) for i in range(3)]
            lines.append("  " + "  ".join(cells) + "  " + r[3])
    pods: Sequence[Mapping[str, Any]] = data.get("pods") or []
    if pods and not endpoints:
        lines.append("Pods:")
        for p in pods:
            ips = ", ".join(p.get("ips") or [])
            lines.append(f"  {p.get('namespace')}/{p.get('name')}  {ips}")
    return lines


def _count(n: object, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _forward(forward: Mapping[str, Any]) -> str:
    upstreams = ", ".join(forward.get("upstreams") or []) or "no upstream"
    name = forward.get("name", "")
    if not forward.get("asked"):
        return f"Forwarding: {name} would be sent to {upstreams} (offline: nothing was sent)"
    if forward.get("from_cache"):
        return f"Forwarding: {name} answered from the cache (an earlier reply of {upstreams})"
    by = forward.get("answered_by")
    if by:
        return f"Forwarding: {name} was answered by upstream {by} (of {upstreams})"
    return f"Forwarding: {name} was sent to {upstreams}; no upstream answered"


__all__ = ["render"]
