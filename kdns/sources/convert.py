"""Kubernetes API JSON -> slim `kdns.cluster.model` objects: the boundary both sources share.

Keeps only what DNS needs (docs/architecture.md "convert at the boundary", as CoreDNS's
`plugin/kubernetes/object/`): names lower-cased (RFC 4343), IPs parsed into `ipaddress`
objects, everything else dropped. A malformed object raises `ConversionError` naming the
field path, what is wrong and the fix; the caller decides whether that is fatal (a
manifest) or one skipped object (a watch). Pure: no I/O, no logging.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Any, TypeGuard

from kdns.cluster.model import (
    ClusterObject,
    Endpoint,
    EndpointSlice,
    IPAddress,
    Kind,
    Namespace,
    Pod,
    Service,
    ServicePort,
)
from kdns.config.selector import Selector

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label tying an EndpointSlice to its Service (discovery.k8s.io/v1)."""

ENDPOINTS_SLICE_SEPARATOR = ":endpoints:"
"""Slices converted from a v1 Endpoints object are named `<name>:endpoints:<subset index>`;
the colon cannot occur in a real object name, so they never clash with real slices."""

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
"""Set by the EndpointSlice (and Endpoints) controller: when the Pod or Service change that
led to this object's last update happened (RFC 3339). The programming-latency metric
measures from it, as CoreDNS does."""

NOT_RUNNING_PHASES = frozenset({"Succeeded", "Failed", "Unknown"})
"""Pods in these phases get no DNS (CoreDNS lists pods with the field selector
`status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown`)."""


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every Namespace to its name (Kubernetes 1.21+)."""

RUNNING_PODS = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"
"""The field selector of CoreDNS's Pod watch: the phases `NOT_RUNNING_PHASES` leave out."""


@dataclass(frozen=True, slots=True)
class SourceFilter:
    """What a source keeps, from the kubernetes plugin's options (CoreDNS watches the same
    way): Services, EndpointSlices and Pods whose labels match `labels`; Namespaces whose
    labels match `namespace_labels`; no EndpointSlices at all without `endpoints`
    (`noendpoints`); endpoints' pod names with `pod_names` (`endpoint_pod_names`). The
    API source asks the server for these (`labelSelector`); the manifests source applies
    them to the objects it builds."""

    labels: Selector | None = None
    namespace_labels: Selector | None = None
    endpoints: bool = True
    pod_names: bool = False

    def selector(self, kind: Kind) -> Selector | None:
        """The label selector objects of `kind` must match; None = all of them."""
        return self.namespace_labels if kind is Kind.NAMESPACE else self.labels

    def keeps(self, kind: Kind, labels: Mapping[str, str] | None) -> bool:
        """An object of `kind` with these labels is served."""
        if kind is Kind.ENDPOINT_SLICE and not self.endpoints:
            return False
        selector = self.selector(kind)
        return selector is None or selector.matches(labels)


class ConversionError(ValueError):
    """An API object is malformed: `field` is its path (`spec.clusterIPs[1]`)."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))


# ---- sharing (memory per object: docs/benchmarking.md) ---------------------------------

_SHARED_LIMIT = 4096
_PORTS: dict[ServicePort, ServicePort] = {}
_PORT_TUPLES: dict[tuple[ServicePort, ...], tuple[ServicePort, ...]] = {}


def shared_ports(ports: Sequence[ServicePort]) -> tuple[ServicePort, ...]:
    """`ports` as a tuple equal to it, shared with every other object that has the same
    ports: most Services of a cluster have one of a few port lists, so 100k Services need
    only a few ServicePort objects. Bounded: the table starts over past `_SHARED_LIMIT`
    distinct values (sharing is an optimisation; equality never depends on identity)."""
    if len(_PORTS) > _SHARED_LIMIT or len(_PORT_TUPLES) > _SHARED_LIMIT:
        _PORTS.clear()
        _PORT_TUPLES.clear()
    key = tuple(_PORTS.setdefault(p, p) for p in ports)
    return _PORT_TUPLES.setdefault(key, key)


def _intern(text: str) -> str:
    """One string object for a value that repeats across objects (namespaces, port names,
    protocols, hostnames like `web-0`, the Service name an EndpointSlice points at)."""
    return sys.intern(text)


# ---- field helpers (also used by the manifests source) ----------------------------------


SHOWN_MAX = 60  # characters of a value an error message shows


def shown(value: object) -> str:
    """A value as a message shows it, on one line and short whatever the value: strings in
    double quotes (JSON escapes), lists and mappings by their size, else as Python writes
    it. Never walks a container (it may stand for 10**9 values through YAML aliases)."""
    if isinstance(value, str):
        cut = value[:SHOWN_MAX]
        text = json.dumps(cut, ensure_ascii=False)
        return text if cut == value else f'{text[:-1]}..." ({len(value)} characters)'
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if abs(value) < 10**SHOWN_MAX:
            return repr(value)
        return f"an integer of about {math.floor(math.log10(abs(value))) + 1} digits"
    if is_mapping(value):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """`is_mapping(value)`, fast for the dicts parsers make (the ABC check costs
    ~190 ns; this runs several times per object)."""
    return value.__class__ is dict or isinstance(value, Mapping)


def _not_mapping(field: str, value: object) -> ConversionError:
    return ConversionError(
        field, f"is a {type(value).__name__}, not a mapping", "write it as key: value pairs"
    )


def mapping_at(obj: Mapping[str, Any], key: str, *, field: str) -> Mapping[str, Any]:
    """`obj[key]` as a mapping; missing or null gives {}."""
    value = obj.get(key)
    if value is None:
        return {}
    if not is_mapping(value):
        raise ConversionError(
            field, f"is a {type(value).__name__}, not a mapping", "write it as key: value pairs"
        )
    return value


def list_at(obj: Mapping[str, Any], key: str, *, field: str) -> Sequence[Any]:
    """`obj[key]` as a list; missing or null gives []."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConversionError(
            field, f"is a {type(value).__name__}, not a list", "write it as a list of - items"
        )
    return value


def string_at(obj: Mapping[str, Any], key: str, *, field: str, default: str = "") -> str:
    """`obj[key]` as a string; missing or null gives `default`."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConversionError(field, f"{shown(value)} is not a string", "quote it")
    return value


def labels_at(obj: Mapping[str, Any], key: str, *, field: str) -> dict[str, str]:
    """`obj[key]` as a map of strings (labels, a selector); missing or null gives {}."""
    labels: dict[str, str] = {}
    for k, v in mapping_at(obj, key, field=field).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConversionError(
                f"{field}.{k}", f"{shown(v)} is not a string", "quote label values, e.g. '1'"
            )
        labels[k] = v
    return labels


def metadata_names(obj: Mapping[str, Any], *, namespaced: bool = True) -> tuple[str, str]:
    """(namespace, name), lower-cased; a missing namespace means `default`."""
    meta = mapping_at(obj, "metadata", field="metadata")
    name = string_at(meta, "name", field="metadata.name").lower()
    if not name:
        raise ConversionError("metadata.name", "is missing", "every object needs a name")
    if not namespaced:
        return "", name
    namespace = string_at(meta, "namespace", field="metadata.namespace").lower()
    return _intern(namespace or "default"), name


def ip_from_api(value: Any, *, field: str) -> IPAddress:
    """Parse one IP address string."""
    if not isinstance(value, str):
        raise ConversionError(field, f"{shown(value)} is not an IP address", "use a quoted address")
    try:
        return ip_address(value.strip())
    except ValueError:
        raise ConversionError(
            field, f"{shown(value)} is not an IP address", "use an IPv4 or IPv6 address"
        ) from None


def port_number(value: Any, *, field: str) -> int:
    """A port number 1-65535 (an int: the API has no string ports)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConversionError(
            field, f"{shown(value)} is not a port number", "use an integer 1-65535"
        )
    return value


def service_port_from_api(port: Any, *, field: str) -> ServicePort:
    """One entry of `spec.ports` (Service) or `ports` (EndpointSlice, Endpoints subset)."""
    if not is_mapping(port):
        raise _not_mapping(field, port)
    name = string_at(port, "name", field=f"{field}.name").lower()
    protocol = string_at(port, "protocol", field=f"{field}.protocol", default="TCP").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise ConversionError(
            f"{field}.protocol", f"{shown(protocol)} is not a protocol", "use TCP, UDP or SCTP"
        )
    number = port_number(port.get("port"), field=f"{field}.port")
    return ServicePort(name=_intern(name), protocol=_intern(protocol), port=number)


# ---- objects ---------------------------------------------------------------------------


def cluster_ips_from_api(spec: Mapping[str, Any]) -> tuple[tuple[IPAddress, ...], bool]:
    """(cluster IPs, headless) from `spec.clusterIPs`, falling back to `spec.clusterIP`."""
    raw = list_at(spec, "clusterIPs", field="spec.clusterIPs")
    field = "spec.clusterIPs"
    if not raw:
        single = spec.get("clusterIP")
        raw = [single] if single not in (None, "") else []
        field = "spec.clusterIP"
    if any(isinstance(v, str) and v.strip() == "None" for v in raw):
        return (), True  # docs/rules.md R16: clusterIP None is a headless Service
    ips: list[IPAddress] = []
    for i, value in enumerate(raw):
        at = f"{field}[{i}]" if field == "spec.clusterIPs" else field
        if value == "":
            continue
        ip = ip_from_api(value, field=at)
        if ip not in ips:
            ips.append(ip)
    return tuple(ips), False


def service_from_api(obj: Mapping[str, Any]) -> Service:
    """Convert a v1 Service. A ClusterIP-like Service without an IP yet gets `cluster_ips=()`
    (the manifests source allocates one; the API always has one)."""
    namespace, name = metadata_names(obj)
    spec = mapping_at(obj, "spec", field="spec")
    ports = shared_ports(
        [
            service_port_from_api(p, field=f"spec.ports[{i}]")
            for i, p in enumerate(list_at(spec, "ports", field="spec.ports"))
        ]
    )
    if string_at(spec, "type", field="spec.type") == "ExternalName":
        # docs/rules.md R26: an ExternalName Service is a CNAME to spec.externalName.
        target = string_at(spec, "externalName", field="spec.externalName").strip()
        target = target.lower().rstrip(".")
        if not target:
            raise ConversionError(
                "spec.externalName",
                "is missing for type ExternalName",
                "set it to a DNS name such as db.example.com",
            )
        return Service(namespace, name, external_name=target, ports=ports)
    ips, headless = cluster_ips_from_api(spec)
    return Service(namespace, name, cluster_ips=ips, headless=headless, ports=ports)


def _endpoint_from_api(raw: Any, *, field: str) -> Endpoint | None:
    if not is_mapping(raw):
        raise _not_mapping(field, raw)
    addresses = tuple(
        ip_from_api(a, field=f"{field}.addresses[{i}]")
        for i, a in enumerate(list_at(raw, "addresses", field=f"{field}.addresses"))
    )
    if not addresses:
        return None
    conditions = mapping_at(raw, "conditions", field=f"{field}.conditions")
    # EndpointSlice API: "ready ... nil should be interpreted as true" (unknown = ready).
    ready = conditions.get("ready") is not False
    hostname = string_at(raw, "hostname", field=f"{field}.hostname").lower()
    return Endpoint(
        addresses,
        ready=ready,
        hostname=_intern(hostname) if hostname else None,
        pod_name=_pod_ref(raw, field),
        terminating=conditions.get("terminating") is True,
    )


def _pod_ref(raw: Mapping[str, Any], field: str) -> str | None:
    ref = mapping_at(raw, "targetRef", field=f"{field}.targetRef")
    if ref.get("kind", "Pod") != "Pod":
        return None
    return string_at(ref, "name", field=f"{field}.targetRef.name").lower() or None


def trigger_time(obj: Mapping[str, Any]) -> float | None:
    """The Unix time of the object's last-change-trigger-time annotation; None when it is
    absent or not an RFC 3339 time with an offset (the metric then skips the object, as
    CoreDNS does; the object itself is served all the same)."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(TRIGGER_TIME_ANNOTATION) if isinstance(annotations, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """`metadata.labels` (string values only; anything else is not a label)."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def endpointslice_from_api(
    obj: Mapping[str, Any], *, pod_names: bool = False
) -> EndpointSlice | None:
    """Convert a discovery.k8s.io/v1 EndpointSlice; FQDN slices give None (DNS serves only
    IP endpoints, as CoreDNS). `pod_names`: keep the endpoints' pod names."""
    namespace, name = metadata_names(obj)
    address_type = string_at(obj, "addressType", field="addressType", default="IPv4")
    if address_type == "FQDN":
        return None
    labels = mapping_at(
        mapping_at(obj, "metadata", field="metadata"), "labels", field="metadata.labels"
    )
    service = string_at(labels, SERVICE_NAME_LABEL, field=f"metadata.labels[{SERVICE_NAME_LABEL}]")
    endpoints: list[Endpoint] = []
    for i, raw in enumerate(list_at(obj, "endpoints", field="endpoints")):
        endpoint = _endpoint_from_api(raw, field=f"endpoints[{i}]")
        if endpoint is not None:
            endpoints.append(endpoint)
    ports: list[ServicePort] = []
    for i, raw in enumerate(list_at(obj, "ports", field="ports")):
        # EndpointSlice API: a port of null means "all ports": nothing for SRV to name.
        if is_mapping(raw) and raw.get("port") is None:
            continue
        ports.append(service_port_from_api(raw, field=f"ports[{i}]"))
    return EndpointSlice(
        namespace,
        name,
        service=_intern(service.lower()) if service else None,
        endpoints=tuple(endpoints),
        ports=shared_ports(ports),
        trigger_time=trigger_time(obj),
        pod_names=pod_names,
    )


def _endpoints_address(raw: Any, *, field: str, ready: bool) -> Endpoint:
    if not is_mapping(raw):
        raise _not_mapping(field, raw)
    address = ip_from_api(raw.get("ip"), field=f"{field}.ip")
    hostname = string_at(raw, "hostname", field=f"{field}.hostname").lower()
    return Endpoint(
        (address,),
        ready=ready,
        hostname=_intern(hostname) if hostname else None,
        pod_name=_pod_ref(raw, field),
    )


def slices_from_endpoints(
    obj: Mapping[str, Any], *, pod_names: bool = False
) -> list[EndpointSlice]:
    """Convert a legacy v1 Endpoints object: one slice per subset, named
    `<name>:endpoints:<i>`, for the Service of the same name."""
    namespace, name = metadata_names(obj)
    triggered = trigger_time(obj)
    slices: list[EndpointSlice] = []
    for s, subset in enumerate(list_at(obj, "subsets", field="subsets")):
        at = f"subsets[{s}]"
        if not is_mapping(subset):
            raise _not_mapping(at, subset)
        endpoints = [
            _endpoints_address(a, field=f"{at}.addresses[{i}]", ready=True)
            for i, a in enumerate(list_at(subset, "addresses", field=f"{at}.addresses"))
        ]
        endpoints += [
            _endpoints_address(a, field=f"{at}.notReadyAddresses[{i}]", ready=False)
            for i, a in enumerate(
                list_at(subset, "notReadyAddresses", field=f"{at}.notReadyAddresses")
            )
        ]
        ports = shared_ports(
            [
                service_port_from_api(p, field=f"{at}.ports[{i}]")
                for i, p in enumerate(list_at(subset, "ports", field=f"{at}.ports"))
            ]
        )
        slices.append(
            EndpointSlice(
                namespace,
                f"{name}{ENDPOINTS_SLICE_SEPARATOR}{s}",
                service=name,
                endpoints=tuple(endpoints),
                ports=ports,
                trigger_time=triggered,
                pod_names=pod_names,
            )
        )
    return slices


def namespace_from_api(obj: Mapping[str, Any]) -> Namespace:
    """Convert a v1 Namespace."""
    return Namespace(metadata_names(obj, namespaced=False)[1])


def pod_running(obj: Mapping[str, Any]) -> bool:
    """False for a Pod that is terminating or in phase Succeeded/Failed/Unknown."""
    meta = mapping_at(obj, "metadata", field="metadata")
    if meta.get("deletionTimestamp"):  # CoreDNS object/pod.go: terminating pods are ignored
        return False
    status = mapping_at(obj, "status", field="status")
    return string_at(status, "phase", field="status.phase") not in NOT_RUNNING_PHASES


def pod_ips_from_api(obj: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    """`status.podIPs`, falling back to `status.podIP`; () when none is assigned yet."""
    status = mapping_at(obj, "status", field="status")
    ips: list[IPAddress] = []
    for i, entry in enumerate(list_at(status, "podIPs", field="status.podIPs")):
        at = f"status.podIPs[{i}]"
        if not is_mapping(entry):
            raise _not_mapping(at, entry)
        ip = ip_from_api(entry.get("ip"), field=f"{at}.ip")
        if ip not in ips:
            ips.append(ip)
    if not ips and status.get("podIP") not in (None, ""):
        ips.append(ip_from_api(status.get("podIP"), field="status.podIP"))
    return tuple(ips)


def pod_from_api(obj: Mapping[str, Any]) -> Pod | None:
    """Convert a v1 Pod; None when it is not running (see `pod_running`)."""
    namespace, name = metadata_names(obj)
    if not pod_running(obj):
        return None
    return Pod(namespace, name, ips=pod_ips_from_api(obj))


def object_from_api(
    obj: Mapping[str, Any], *, kind: str | None = None, pod_names: bool = False
) -> ClusterObject | None:
    """Convert a Service, EndpointSlice, Namespace or Pod by its kind; None for a kind DNS
    does not use, an FQDN slice or a Pod that is not running. `kind` overrides
    `obj["kind"]` (items of a LIST carry no kind); `pod_names` keeps endpoints' pod
    names."""
    kind = kind or string_at(obj, "kind", field="kind")
    if kind == "Service":
        return service_from_api(obj)
    if kind == "EndpointSlice":
        return endpointslice_from_api(obj, pod_names=pod_names)
    if kind == "Namespace":
        return namespace_from_api(obj)
    if kind == "Pod":
        return pod_from_api(obj)
    return None
