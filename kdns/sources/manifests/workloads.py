"""Pods: from Pod manifests, and from workloads (Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, ReplicationController) expanded as their controllers would.

A workload becomes `replicas` Pods (default 1; DaemonSet 1; Job `parallelism`, default 1)
with the template's labels, hostname and subdomain; at most MAX_PODS in all (`limits`).
Names: Deployment `<name>-<10 chars>-<5 chars>`, ReplicaSet/DaemonSet/Job/ReplicationController
`<name>-<5 chars>` (characters derived from the name and index), StatefulSet `<name>-<i>`
with hostname `<name>-<i>` and subdomain `spec.serviceName`. Pods count as ready (no
kubelet here) unless a Pod manifest says phase Pending or condition Ready False; phases
Succeeded/Failed/Unknown or a deletionTimestamp mean no Pod at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdns.cluster.model import IPAddress
from kdns.sources.convert import (
    ConversionError,
    is_mapping,
    labels_at,
    list_at,
    mapping_at,
    metadata_names,
    pod_ips_from_api,
    pod_running,
    port_number,
    shown,
    string_at,
)
from kdns.sources.manifests import limits, validate
from kdns.sources.manifests.errors import Origin

WORKLOAD_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet


@dataclass(slots=True)
class PodSpec:
    namespace: str
    name: str
    origin: Origin
    labels: dict[str, str]
    hostname: str | None
    subdomain: str | None
    container_ports: dict[tuple[str, str], int]  # (name, protocol) -> containerPort
    ready: bool
    ips: tuple[IPAddress, ...]  # explicit status.podIPs; allocated when ()


def generated_suffix(seed: str, length: int) -> str:
    """`length` characters derived from `seed`, from the alphabet Kubernetes uses for
    generated names."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    chars = []
    for _ in range(length):
        digest, r = divmod(digest, len(_NAME_ALPHABET))
        chars.append(_NAME_ALPHABET[r])
    return "".join(chars)


def parse_pod(obj: Mapping[str, Any], origin: Origin) -> PodSpec | None:
    """A Pod manifest; None when the Pod is not running."""
    namespace, name = metadata_names(obj)
    if not pod_running(obj):
        return None  # CoreDNS: no records for finished, unknown or terminating pods
    meta = mapping_at(obj, "metadata", field="metadata")
    labels = labels_at(meta, "labels", field="metadata.labels")
    spec = mapping_at(obj, "spec", field="spec")
    hostname, subdomain, ports = _pod_template(spec, field="spec")
    status = mapping_at(obj, "status", field="status")
    phase = string_at(status, "phase", field="status.phase", default="Running")
    ready = phase == "Running"
    for cond in list_at(status, "conditions", field="status.conditions"):
        if is_mapping(cond) and cond.get("type") == "Ready":
            ready = ready and str(cond.get("status")) != "False"
    return PodSpec(
        namespace=namespace,
        name=name,
        origin=origin,
        labels=labels,
        hostname=hostname,
        subdomain=subdomain,
        container_ports=ports,
        ready=ready,
        ips=pod_ips_from_api(obj),
    )


def workload_pods(obj: Mapping[str, Any], origin: Origin, kind: str, *, room: int) -> list[PodSpec]:
    """The Pods the controller of `kind` would create for the workload `obj`; more than
    `room` (what is left of `limits.MAX_PODS`) is an error."""
    namespace, name = metadata_names(obj)
    spec = mapping_at(obj, "spec", field="spec")
    count = _replicas(spec, kind)
    if count > room:
        field = "spec.parallelism" if kind == "Job" else "spec.replicas"
        raise ConversionError(
            field,
            f"{count} Pods would make more than the {limits.MAX_PODS} Pods kdns builds from "
            f"all the manifests ({limits.MAX_PODS - room} before this {kind}; a real cluster "
            "holds at most 150000)",
            f"lower {field}",
        )
    if kind == "StatefulSet" and count and len(f"{name}-{count - 1}") > validate.LABEL_MAX:
        raise ConversionError(
            "metadata.name",
            f"the pods {name}-0..{count - 1} use their names as hostnames, which must be DNS "
            f"labels of at most {validate.LABEL_MAX} characters",
            "use a shorter name",
        )
    template = mapping_at(spec, "template", field="spec.template")
    tmeta = mapping_at(template, "metadata", field="spec.template.metadata")
    labels = labels_at(tmeta, "labels", field="spec.template.metadata.labels")
    _check_selector(spec, labels, kind)
    tspec = mapping_at(template, "spec", field="spec.template.spec")
    hostname, subdomain, ports = _pod_template(tspec, field="spec.template.spec")
    if kind == "StatefulSet":
        service_name = string_at(spec, "serviceName", field="spec.serviceName")
        validate.label(service_name, field="spec.serviceName", what="Service name")
        subdomain = service_name or None
    pods: list[PodSpec] = []
    template_hash = generated_suffix(f"{namespace}/{name}", 10)
    for i in range(count):
        if kind == "StatefulSet":
            pod_name = f"{name}-{i}"
            pod_hostname: str | None = pod_name  # StatefulSet pods' hostname is their name
        elif kind == "Deployment":
            pod_name = f"{name}-{template_hash}-{generated_suffix(f'{namespace}/{name}/{i}', 5)}"
            pod_hostname = hostname
        else:
            pod_name = f"{name}-{generated_suffix(f'{namespace}/{name}/{i}', 5)}"
            pod_hostname = hostname
        pods.append(
            PodSpec(
                namespace=namespace,
                name=pod_name,
                origin=origin,
                labels=labels,
                hostname=pod_hostname,
                subdomain=subdomain,
                container_ports=ports,
                ready=True,
                ips=(),
            )
        )
    return pods


def _replicas(spec: Mapping[str, Any], kind: str) -> int:
    if kind == "DaemonSet":
        return 1  # no nodes here: one pod stands for the set
    key = "parallelism" if kind == "Job" else "replicas"
    return validate.count(spec.get(key), field=f"spec.{key}", default=1)


def _check_selector(spec: Mapping[str, Any], labels: Mapping[str, str], kind: str) -> None:
    """The API server's rule: the template's labels must match the workload's selector."""
    selector = mapping_at(spec, "selector", field="spec.selector")
    match = (
        selector
        if kind == "ReplicationController"
        else mapping_at(selector, "matchLabels", field="spec.selector.matchLabels")
    )
    for k, v in match.items():
        if labels.get(k) != v:
            raise ConversionError(
                f"spec.selector.matchLabels.{k}",
                f"does not match the template labels ({k}={shown(labels.get(k))})",
                "make spec.template.metadata.labels include the selector",
            )


def _pod_template(
    pod_spec: Mapping[str, Any], *, field: str
) -> tuple[str | None, str | None, dict[tuple[str, str], int]]:
    hostname = string_at(pod_spec, "hostname", field=f"{field}.hostname")
    validate.label(hostname, field=f"{field}.hostname", what="hostname")
    subdomain = string_at(pod_spec, "subdomain", field=f"{field}.subdomain")
    validate.label(subdomain, field=f"{field}.subdomain", what="subdomain")
    return hostname or None, subdomain or None, _container_ports(pod_spec, field=field)


def _container_ports(pod_spec: Mapping[str, Any], *, field: str) -> dict[tuple[str, str], int]:
    ports: dict[tuple[str, str], int] = {}
    for key in ("initContainers", "containers"):
        for c, container in enumerate(list_at(pod_spec, key, field=f"{field}.{key}")):
            at = f"{field}.{key}[{c}]"
            if not is_mapping(container):
                raise ConversionError(at, "is not a mapping", "write it as key: value pairs")
            for p, port in enumerate(list_at(container, "ports", field=f"{at}.ports")):
                pat = f"{at}.ports[{p}]"
                if not is_mapping(port):
                    raise ConversionError(pat, "is not a mapping", "write it as key: value pairs")
                number = port_number(port.get("containerPort"), field=f"{pat}.containerPort")
                name = string_at(port, "name", field=f"{pat}.name")
                validate.port_name(name, field=f"{pat}.name")
                protocol = string_at(
                    port, "protocol", field=f"{pat}.protocol", default="TCP"
                ).lower()
                if name:
                    ports.setdefault((name, protocol), number)
    return ports
