"""The manifests data source: a folder of YAML/JSON Kubernetes objects served as a cluster.

Owns reading manifests, turning workloads into Pods, allocating stable ClusterIPs and pod
IPs, computing EndpointSlices as the EndpointSlice controller would, and watching the
files for edits. Produces the same `kdns.cluster.model` events as the Kubernetes API source; must
not import that source, the DNS side or the `kubernetes` package.

What is read (kinds): Namespace, Service, EndpointSlice (discovery.k8s.io), Endpoints,
Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController, and
`List` wrappers. Kinds DNS has no use for (ConfigMap, Secret, RBAC, Ingress, ...) are
skipped with a debug log; any other kind is a warning (once per kind), never an error.

The rules, fixed so answers are the same on every start:

- ClusterIPs. A Service without `clusterIP` (not headless, not ExternalName) gets, per IP
  family, the address `network + h`, where `h = sha256("<namespace>/<name>") mod size`.
  Never allocated: the network and last address, offset 1 (the `kubernetes` Service in a
  real cluster) and offset 10 (kube-dns in kind). Explicit `clusterIP(s)` are reserved
  first. Then every Service whose home address is free takes it (when two Services share a
  home address, the first by namespace/name wins); the rest probe upwards (+1, wrapping)
  in namespace/name order. So a Service keeps its address while others come and go, except
  when a new Service has the same home address and sorts first, or when the Service was
  itself displaced (caveat: about N^2/131072 chance of any home collision for N Services
  in a /16).
- Dual-stack: `ipFamilyPolicy` PreferDualStack/RequireDualStack get one address per
  family of `ipFamilies` (default: the first service CIDR's family, then the other) that
  has a configured CIDR; SingleStack (default) gets the first family only.
- `default/kubernetes` (a real cluster always has it; conformance E1 probes it) is
  synthesized with the first address (offset 1) of the first service CIDR and port
  https 443/TCP, without endpoints (there is no API server). A manifest that defines
  `default/kubernetes` replaces it. The namespaces default, kube-system, kube-public and
  kube-node-lease always exist, as in a real cluster.
- Pods. Workloads become `replicas` Pods (default 1; DaemonSet 1; Job `parallelism`,
  default 1) with the template's labels, hostname and subdomain. Names: Deployment
  `<name>-<10 chars>-<5 chars>`, ReplicaSet/DaemonSet/Job/ReplicationController
  `<name>-<5 chars>` (characters derived from the name and index), StatefulSet `<name>-<i>`
  with hostname `<name>-<i>` and subdomain `spec.serviceName`. Pod IPs come from the pod
  CIDRs by the same hash-and-probe rule over `<namespace>/<pod name>` (offset 1, the
  gateway, is never used); a bare Pod's `status.podIP(s)` are kept. Pods count as ready
  (no kubelet here) unless the Pod manifest says phase Pending or condition Ready False;
  phases Succeeded/Failed/Unknown or a deletionTimestamp mean no Pod at all.
- EndpointSlices. For a Service with a selector (not ExternalName) and no EndpointSlice or
  Endpoints of its own in the manifests, slices are computed: Pods in its namespace whose
  labels match every selector label; each Service port's `targetPort` (default = `port`;
  a name is looked up in that pod's container ports with the same protocol, and a pod
  without it has no endpoint for that port); endpoint `hostname` only when the pod sets a
  hostname and its subdomain is the Service name; ready = pod ready or
  `publishNotReadyAddresses`. One group per (address family, resolved ports), at most 100
  endpoints per slice, named `<service>-<5 chars>`, labelled as the controller labels them
  (the Service's labels, `kubernetes.io/service-name`, `endpointslice.kubernetes.io/
  managed-by`, and `service.kubernetes.io/headless` for headless Services).
- Filters (`SourceFilter`, the kubernetes plugin's `labels`, `namespace_labels`,
  `noendpoints`, `endpoint_pod_names`): applied to what was built, after every address was
  allocated, so a filter never moves an address. Every Namespace carries
  `kubernetes.io/metadata.name` as the API server sets it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import yaml

from kdns.cluster.model import (
    MIXED,
    Endpoint,
    EndpointSlice,
    Event,
    IPAddress,
    Kind,
    Namespace,
    Pod,
    Replace,
    Service,
    ServicePort,
    raw_address,
)
from kdns.sources.convert import (
    NAMESPACE_NAME_LABEL,
    SERVICE_NAME_LABEL,
    ConversionError,
    SourceFilter,
    endpointslice_from_api,
    list_at,
    mapping_at,
    metadata_names,
    namespace_from_api,
    pod_ips_from_api,
    pod_running,
    port_number,
    service_from_api,
    shown,
    slices_from_endpoints,
    string_at,
)
from kdns.sources.convert import labels_of as _labels_of

log = logging.getLogger(__name__)

Network = IPv4Network | IPv6Network

SUFFIXES = (".yaml", ".yml", ".json")
WORKLOAD_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
)
IGNORED_KINDS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Ingress",
        "IngressClass",
        "NetworkPolicy",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "StorageClass",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "CronJob",
        "LimitRange",
        "ResourceQuota",
        "CustomResourceDefinition",
        "PriorityClass",
        "Node",
        "Kustomization",
    }
)
STANDARD_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
MAX_ENDPOINTS_PER_SLICE = 100  # the EndpointSlice controller's default
MANAGED_BY = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
HEADLESS_LABEL = "service.kubernetes.io/headless"
KUBERNETES_LABELS = {"component": "apiserver", "provider": "kubernetes"}  # default/kubernetes
SERVICE_RESERVED_OFFSETS = frozenset({1, 10})  # kubernetes.default; kube-dns in kind
POD_RESERVED_OFFSETS = frozenset({1})  # the node's gateway
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet


class ManifestError(Exception):
    """A manifest is unusable. `str()` is one line: file, document, field, what, fix."""


# ---- parsed shapes (the manifest-only fields the model drops) --------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    path: Path
    document: int  # 1-based
    prefix: str  # "items[3]." inside a List, else ""
    what: str  # "Service default/web"

    def error(self, err: ConversionError) -> ManifestError:
        return ManifestError(
            f"{self.path}: document {self.document} ({self.what}): {self.prefix}{err}"
        )


@dataclass(frozen=True, slots=True)
class _TargetPort:
    port: ServicePort  # name, protocol and the Service's port
    target: int | str  # a number, or a container port name


@dataclass(slots=True)
class _ServiceSpec:
    service: Service
    origin: _Origin
    type: str
    selector: dict[str, str] | None
    targets: tuple[_TargetPort, ...]
    publish_not_ready: bool
    families: tuple[int, ...]  # requested IP versions, in order
    dual: bool  # PreferDualStack / RequireDualStack


@dataclass(slots=True)
class _PodSpec:
    namespace: str
    name: str
    origin: _Origin
    labels: dict[str, str]
    hostname: str | None
    subdomain: str | None
    container_ports: dict[tuple[str, str], int]  # (name, protocol) -> containerPort
    ready: bool
    ips: tuple[IPAddress, ...]  # explicit status.podIPs; allocated when ()


@dataclass(frozen=True, slots=True)
class ManifestData:
    """Everything the manifests describe, as model objects, plus what the summary needs."""

    services: tuple[Service, ...]
    slices: tuple[EndpointSlice, ...]
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    files: tuple[Path, ...] = ()
    service_types: Mapping[tuple[str, str], str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def summary_lines(self, *, max_services: int = 20) -> list[str]:
        """The start-up summary: counts, then the table of render_endpoints for the first
        `max_services` Services (so a big folder does not flood the log). Only the rows
        printed are rendered (issue 5: 1M endpoints took 3.4 s to print 20 rows); the
        counts and the column widths still cover every Service."""
        ready = sum(_endpoint_count(s) - len(s.not_ready) for s in self.slices)
        head = (
            f"manifests: {len(self.files)} files, {len(self.services)} services, "
            f"{len(self.slices)} endpointslices ({ready} ready endpoints), "
            f"{len(self.pods)} pods, {len(self.namespaces)} namespaces"
        )
        table = _table_lines(self, limit=max_services)
        lines = [head, *table]
        if len(self.services) > max_services:
            lines.append(f"... and {len(self.services) - max_services} more services")
        return lines


# ---- reading files -------------------------------------------------------------------


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The files to read: each file given, and `*.yaml|*.yml|*.json` under each folder,
    recursively, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
            files.extend(sorted(found))
        elif path.is_file():
            files.append(path)
        else:
            raise ManifestError(f"{path}: no such file or folder; give a manifest file or folder")
    return files


def _read_documents(path: Path) -> Iterator[Any]:
    """The documents of one file, one at a time: a YAML stream is parsed lazily, so only
    one document's dicts are alive while it is converted (issue 5: peak memory of a big
    load); so is a JSON `List`'s `items` (see `_JsonList`). A syntax error is raised when
    the parser reaches it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}; check the file") from None
    if path.suffix == ".json":
        streamed = _json_list(path, text)
        if streamed is not None:
            del text  # the List's items hold their own reference while they are read
            yield streamed
            return
        try:
            document = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc) from None
        del text
        if document is not None:
            yield document
        return
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one is ~10x slower.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        yield from yaml.load_all(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ManifestError(
            f"{path}: {where}YAML syntax error: {problem}; fix the YAML syntax"
        ) from None
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ManifestError(f"{path}: YAML error: {one_line}; fix the YAML syntax") from None


def _json_error(path: Path, exc: json.JSONDecodeError) -> ManifestError:
    return ManifestError(
        f"{path}: line {exc.lineno} column {exc.colno}: JSON syntax error: {exc.msg}; "
        "fix the JSON syntax"
    )


# ---- reading a JSON List item by item ---------------------------------------------------
#
# `json.loads` of a 150 MB List (1M endpoints) peaks at ~600 MB of dicts; the objects that
# outlive it are allocated into the holes, so pymalloc can return none of its arenas and
# the process keeps ~650 MB RSS for ~25 MB of live data (issue 5, bench/results/memory.md).
# Decoding one item at a time (`raw_decode` at an offset) and converting it before the
# next keeps a single item's dicts alive. Only the plain shape is walked here: a top-level
# object whose `kind` ends in "List" and whose `items` is an array. Anything else, and any
# syntax error met while walking, goes to `json.loads` of the whole text, so the result
# and the error text (line/column of RFC 8259 syntax errors) are those of `json.loads`.

_JSON_SPACE = " \t\n\r"  # RFC 8259 section 2: insignificant whitespace
_DECODER = json.JSONDecoder()


class _JsonShapeError(Exception):
    """The text is not the plain List shape (or not valid JSON): read it whole."""


@dataclass(slots=True)
class _JsonList:
    """A JSON `List` document whose `items` are decoded one at a time as iterated."""

    path: Path
    kind: str
    text: str | None
    start: int  # offset of the `[` of items
    keys: frozenset[str]  # top-level keys up to `items`; empty = the rest was checked

    def items(self) -> Iterator[Any]:
        """Each item, decoded when asked; the text is released once iterated. When the
        rest of the object was not checked yet, it is checked after the last item."""
        text, self.text = self.text, None
        if text is None:
            return
        try:
            end = self.start
            for offset, item in _walk_array(text, self.start):
                end = offset
                if item is not _EMPTY:
                    yield item
            if self.keys:  # the keys after `items` were not read yet
                _object_rest(text, end, keys=self.keys)
        except (json.JSONDecodeError, _JsonShapeError):
            # Items before the error were already used; json.loads names the error
            # exactly as a whole-file read would have (only reached on broken files).
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise _json_error(self.path, exc) from None
            raise ManifestError(
                f"{self.path}: a top-level key of the {self.kind} appears twice or after "
                "its items change its kind; write each key once"
            ) from None


_EMPTY = object()  # the "element" an empty array reports with its end offset


def _space(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_SPACE:
        i += 1
    return i


def _walk_array(text: str, i: int) -> Iterator[tuple[int, Any]]:
    """(offset after it, value) of each element of the array whose `[` is at `i`; the
    last offset is just past the `]`. Raises json.JSONDecodeError or _JsonShapeError."""
    i = _space(text, i + 1)
    if text.startswith("]", i):
        yield i + 1, _EMPTY
        return
    while True:
        value, i = _DECODER.raw_decode(text, i)
        i = _space(text, i)
        if text.startswith("]", i):
            yield i + 1, value
            return
        if not text.startswith(",", i):
            raise _JsonShapeError
        yield i, value
        i = _space(text, i + 1)


def _object_rest(text: str, i: int, *, keys: frozenset[str]) -> None:
    """Check the rest of the top-level object after a value ending at `i`: well-formed,
    no key of `keys` again (`json.loads` would keep the last one), nothing after it."""
    while True:
        i = _space(text, i)
        if text.startswith("}", i):
            break
        if not text.startswith(",", i):
            raise _JsonShapeError
        key, i = _DECODER.raw_decode(text, _space(text, i + 1))
        if not isinstance(key, str) or key in keys:
            raise _JsonShapeError
        i = _space(text, i)
        if not text.startswith(":", i):
            raise _JsonShapeError
        _, i = _DECODER.raw_decode(text, _space(text, i + 1))
    if _space(text, i + 1) != len(text):
        raise _JsonShapeError


def _json_list(path: Path, text: str) -> _JsonList | None:
    """The List to stream when `text` is one object with a "...List" kind and an `items`
    array (in either order); None for any other shape or on any syntax error."""
    try:
        i = _space(text, 0)
        if not text.startswith("{", i):
            return None
        i = _space(text, i + 1)
        kind: object = None
        items_at = -1
        keys: set[str] = set()
        while not text.startswith("}", i):
            if keys:
                if not text.startswith(",", i):
                    return None
                i = _space(text, i + 1)
            key, i = _DECODER.raw_decode(text, i)
            if not isinstance(key, str) or key in keys:
                return None  # duplicate keys: the last one wins in json.loads
            keys.add(key)
            i = _space(text, i)
            if not text.startswith(":", i):
                return None
            i = _space(text, i + 1)
            if key == "items" and text.startswith("[", i):
                items_at = i
                if isinstance(kind, str) and kind.endswith("List"):
                    # Stream now; the keys after `items` are checked after the last item.
                    return _JsonList(path, kind, text, items_at, frozenset(keys))
                i = _skip_array(text, i)  # `kind` may still follow (kubectl sorts keys)
            else:
                value, i = _DECODER.raw_decode(text, i)
                if key == "kind":
                    kind = value
            i = _space(text, i)
        if _space(text, i + 1) != len(text) or items_at < 0:
            return None
        if not (isinstance(kind, str) and kind.endswith("List")):
            return None
        return _JsonList(path, kind, text, items_at, frozenset())
    except (json.JSONDecodeError, _JsonShapeError):
        return None


def _skip_array(text: str, i: int) -> int:
    """The offset just past the array whose `[` is at `i`, decoding (and dropping) each
    element in turn."""
    end = i
    for offset, _ in _walk_array(text, i):
        end = offset
    return end


def _objects(path: Path, documents: Iterable[Any]) -> Iterator[tuple[_Origin, Mapping[str, Any]]]:
    """Each object with where it came from; `List` documents are flattened, and each item
    is dropped from its list once handed out (a big JSON List is not held twice)."""
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue  # an empty document (`---` at the end)
        if isinstance(doc, _JsonList):
            for i, item in enumerate(doc.items()):
                yield _list_item(path, number, doc.kind, i, item)
            continue
        if not isinstance(doc, Mapping):
            raise ManifestError(
                f"{path}: document {number}: is a {type(doc).__name__}, not an object; "
                "each document must be a Kubernetes object with apiVersion, kind and metadata"
            )
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(
                    f"{path}: document {number} ({kind}): items: is not a list; "
                    "write the objects as a list"
                )
            items.reverse()  # pop from the end: O(1) per item
            for i in range(len(items)):
                yield _list_item(path, number, kind, i, items.pop())
        else:
            yield _describe(_Origin(path, number, "", ""), doc), doc


def _list_item(
    path: Path, number: int, kind: str, i: int, item: Any
) -> tuple[_Origin, Mapping[str, Any]]:
    """Item `i` (0-based) of the List that is document `number` of `path`."""
    if not isinstance(item, Mapping):
        raise ManifestError(
            f"{path}: document {number} ({kind}): items[{i}]: is not an object; "
            "each item must be a Kubernetes object"
        )
    return _describe(_Origin(path, number, f"items[{i}].", kind), item), item


def _describe(origin: _Origin, obj: Mapping[str, Any]) -> _Origin:
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) and kind else "object without kind"
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    what = kind
    if isinstance(name, str) and name:
        if kind == "Namespace":
            what = f"{kind} {name}"
        else:
            what = f"{kind} {ns if isinstance(ns, str) and ns else 'default'}/{name}"
    return _Origin(origin.path, origin.document, origin.prefix, what)


# ---- per-object parsing --------------------------------------------------------------


def _labels(obj: Mapping[str, Any], key: str, *, field: str) -> dict[str, str]:
    raw = mapping_at(obj, key, field=field)
    labels: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConversionError(
                f"{field}.{k}", f"{shown(v)} is not a string", "quote label values, e.g. '1'"
            )
        labels[k] = v
    return labels


def _family_of(value: Any, *, field: str) -> int:
    if value == "IPv4":
        return 4
    if value == "IPv6":
        return 6
    raise ConversionError(field, f"{shown(value)} is not an IP family", "use IPv4 or IPv6")


def _service_spec(
    obj: Mapping[str, Any], origin: _Origin, *, primary: int, configured: frozenset[int]
) -> _ServiceSpec:
    service = service_from_api(obj)
    spec = mapping_at(obj, "spec", field="spec")
    stype = string_at(spec, "type", field="spec.type", default="ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise ConversionError(
            "spec.type",
            f"{shown(stype)} is not a Service type",
            "use ClusterIP, NodePort, LoadBalancer or ExternalName",
        )
    selector: dict[str, str] | None = _labels(spec, "selector", field="spec.selector") or None
    targets: list[_TargetPort] = []
    for i, (raw, port) in enumerate(
        zip(list_at(spec, "ports", field="spec.ports"), service.ports, strict=True)
    ):
        target: Any = raw.get("targetPort")
        at = f"spec.ports[{i}].targetPort"
        if target is None or target == "":
            target = port.port  # Kubernetes: targetPort defaults to port
        elif isinstance(target, str) and target.isdigit():
            target = port_number(int(target), field=at)
        elif isinstance(target, str):
            target = target.lower()
        else:
            target = port_number(target, field=at)
        targets.append(_TargetPort(port, target))
    policy = string_at(spec, "ipFamilyPolicy", field="spec.ipFamilyPolicy", default="SingleStack")
    if policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
        raise ConversionError(
            "spec.ipFamilyPolicy",
            f"{shown(policy)} is not an IP family policy",
            "use SingleStack, PreferDualStack or RequireDualStack",
        )
    families = [
        _family_of(f, field=f"spec.ipFamilies[{i}]")
        for i, f in enumerate(list_at(spec, "ipFamilies", field="spec.ipFamilies"))
    ]
    if not families:
        families = [int(ip.version) for ip in service.cluster_ips] or [primary]
    dual = policy != "SingleStack"
    if dual:
        for version in (primary, 10 - primary):  # 4 <-> 6
            if version not in families:
                families.append(version)
    given = {int(ip.version) for ip in service.cluster_ips}
    if policy == "RequireDualStack" and not {4, 6} <= (configured | given):
        raise ConversionError(
            "spec.ipFamilyPolicy",
            "RequireDualStack needs an IPv4 and an IPv6 service CIDR",
            "add --service-cidr for the other family or use PreferDualStack",
        )
    if not dual:
        families = families[:1]
        if (
            not service.cluster_ips
            and not service.headless
            and service.external_name is None
            and families[0] not in configured
        ):
            raise ConversionError(
                "spec.ipFamilies[0]",
                f"no IPv{families[0]} service CIDR is configured",
                f"add an IPv{families[0]} --service-cidr or drop ipFamilies",
            )
    publish = spec.get("publishNotReadyAddresses") is True
    return _ServiceSpec(
        service=service,
        origin=origin,
        type=stype,
        selector=selector,
        targets=tuple(targets),
        publish_not_ready=publish,
        families=tuple(families),
        dual=dual,
    )


def _container_ports(pod_spec: Mapping[str, Any], *, field: str) -> dict[tuple[str, str], int]:
    ports: dict[tuple[str, str], int] = {}
    for key in ("initContainers", "containers"):
        for c, container in enumerate(list_at(pod_spec, key, field=f"{field}.{key}")):
            at = f"{field}.{key}[{c}]"
            if not isinstance(container, Mapping):
                raise ConversionError(at, "is not a mapping", "write it as key: value pairs")
            for p, port in enumerate(list_at(container, "ports", field=f"{at}.ports")):
                pat = f"{at}.ports[{p}]"
                if not isinstance(port, Mapping):
                    raise ConversionError(pat, "is not a mapping", "write it as key: value pairs")
                number = port_number(port.get("containerPort"), field=f"{pat}.containerPort")
                name = string_at(port, "name", field=f"{pat}.name").lower()
                protocol = string_at(
                    port, "protocol", field=f"{pat}.protocol", default="TCP"
                ).lower()
                if name:
                    ports.setdefault((name, protocol), number)
    return ports


def _pod_template(
    pod_spec: Mapping[str, Any], *, field: str
) -> tuple[str | None, str | None, dict[tuple[str, str], int]]:
    hostname = string_at(pod_spec, "hostname", field=f"{field}.hostname").lower() or None
    subdomain = string_at(pod_spec, "subdomain", field=f"{field}.subdomain").lower() or None
    return hostname, subdomain, _container_ports(pod_spec, field=field)


def _pod_spec(obj: Mapping[str, Any], origin: _Origin) -> _PodSpec | None:
    namespace, name = metadata_names(obj)
    if not pod_running(obj):
        return None  # CoreDNS: no records for finished, unknown or terminating pods
    meta = mapping_at(obj, "metadata", field="metadata")
    labels = _labels(meta, "labels", field="metadata.labels")
    spec = mapping_at(obj, "spec", field="spec")
    hostname, subdomain, ports = _pod_template(spec, field="spec")
    status = mapping_at(obj, "status", field="status")
    phase = string_at(status, "phase", field="status.phase", default="Running")
    ready = phase == "Running"
    for cond in list_at(status, "conditions", field="status.conditions"):
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ready = ready and str(cond.get("status")) != "False"
    return _PodSpec(
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


def _suffix(seed: str, length: int) -> str:
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    chars = []
    for _ in range(length):
        digest, r = divmod(digest, len(_NAME_ALPHABET))
        chars.append(_NAME_ALPHABET[r])
    return "".join(chars)


def _workload_pods(obj: Mapping[str, Any], origin: _Origin, kind: str) -> list[_PodSpec]:
    namespace, name = metadata_names(obj)
    spec = mapping_at(obj, "spec", field="spec")
    if kind == "DaemonSet":
        count = 1  # no nodes here: one pod stands for the set
    else:
        key = "parallelism" if kind == "Job" else "replicas"
        raw = spec.get(key, 1)
        if raw is None:
            raw = 1
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ConversionError(
                f"spec.{key}", f"{shown(raw)} is not a count", "use an integer 0 or more"
            )
        count = raw
    template = mapping_at(spec, "template", field="spec.template")
    tmeta = mapping_at(template, "metadata", field="spec.template.metadata")
    labels = _labels(tmeta, "labels", field="spec.template.metadata.labels")
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
    tspec = mapping_at(template, "spec", field="spec.template.spec")
    hostname, subdomain, ports = _pod_template(tspec, field="spec.template.spec")
    if kind == "StatefulSet":
        subdomain = string_at(spec, "serviceName", field="spec.serviceName").lower() or None
    pods: list[_PodSpec] = []
    template_hash = _suffix(f"{namespace}/{name}", 10)
    for i in range(count):
        if kind == "StatefulSet":
            pod_name = f"{name}-{i}"
            pod_hostname: str | None = pod_name  # StatefulSet pods' hostname is their name
        elif kind == "Deployment":
            pod_name = f"{name}-{template_hash}-{_suffix(f'{namespace}/{name}/{i}', 5)}"
            pod_hostname = hostname
        else:
            pod_name = f"{name}-{_suffix(f'{namespace}/{name}/{i}', 5)}"
            pod_hostname = hostname
        pods.append(
            _PodSpec(
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


# ---- address allocation ----------------------------------------------------------------


def _home_offset(key: str, network: Network) -> int:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    return digest % network.num_addresses


class _Allocator:
    """Hash-derived, collision-probing addresses in one network (see the module docstring)."""

    def __init__(self, network: Network, reserved_offsets: frozenset[int]) -> None:
        self.network = network
        self.size = network.num_addresses
        self.base = int(network.network_address)
        self.reserved = {0, self.size - 1} | {o for o in reserved_offsets if o < self.size}
        self.taken: set[int] = set()

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.network.version and ip in self.network

    def reserve(self, ip: IPAddress) -> None:
        if self.contains(ip):
            self.taken.add(int(ip) - self.base)

    def free(self, offset: int) -> bool:
        return offset not in self.reserved and offset not in self.taken

    def address(self, offset: int) -> IPAddress:
        self.taken.add(offset)
        return ip_address(self.base + offset)

    def probe(self, start: int) -> IPAddress | None:
        limit = min(self.size, 1 << 20)  # bounded: a full /12 is more than any manifest set
        for step in range(limit):
            offset = (start + step) % self.size
            if self.free(offset):
                return self.address(offset)
        return None


def _allocate(
    keys: Sequence[tuple[str, int]], allocators: Mapping[int, _Allocator]
) -> dict[tuple[str, int], IPAddress | None]:
    """Addresses for (key, IP version) pairs: home addresses first, then probing."""
    result: dict[tuple[str, int], IPAddress | None] = {}
    homes: dict[tuple[str, int], int] = {}
    for key, version in sorted(keys):
        alloc = allocators[version]
        home = _home_offset(key, alloc.network)
        homes[(key, version)] = home
        if alloc.free(home):
            result[(key, version)] = alloc.address(home)
    for key, version in sorted(keys):
        if (key, version) not in result:
            result[(key, version)] = allocators[version].probe(homes[(key, version)])
    return result


def _allocators(cidrs: Sequence[Network], reserved: frozenset[int]) -> dict[int, _Allocator]:
    allocators: dict[int, _Allocator] = {}
    for cidr in cidrs:
        allocators.setdefault(cidr.version, _Allocator(cidr, reserved))  # first per family
    return allocators


# ---- endpoint computation ---------------------------------------------------------------


def _resolve_port(target: _TargetPort, pod: _PodSpec) -> int | None:
    """podutil.FindPort: a number is used as is; a name must be a container port of the
    pod with the same protocol, else that pod has no endpoint for this port."""
    if isinstance(target.target, int):
        return target.target
    return pod.container_ports.get((target.target, target.port.protocol))


def _computed_slices(
    spec: _ServiceSpec,
    pods: Iterable[_PodSpec],
    pod_ips: Mapping[tuple[str, str], Sequence[IPAddress]],
    *,
    pod_names: bool = False,
) -> list[EndpointSlice]:
    svc = spec.service
    assert spec.selector is not None
    selector = spec.selector.items()
    families: list[int] = [ip.version for ip in svc.cluster_ips] or list(spec.families)
    groups: dict[tuple[int, tuple[ServicePort, ...]], list[Endpoint]] = {}
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.namespace != svc.namespace:
            continue
        if not all(pod.labels.get(k) == v for k, v in selector):  # selector labels are ANDed
            continue
        ports: list[ServicePort] = []
        for target in spec.targets:
            number = _resolve_port(target, pod)
            if number is not None:
                ports.append(ServicePort(target.port.name, target.port.protocol, number))
        # spec R7 / ShouldSetHostname: hostname set and subdomain == Service name.
        hostname = pod.hostname if pod.hostname and pod.subdomain == svc.name else None
        for version in families:
            addresses = tuple(
                ip for ip in pod_ips[(pod.namespace, pod.name)] if ip.version == version
            )
            if not addresses:
                continue
            endpoint = Endpoint(
                addresses[:1],
                ready=pod.ready or spec.publish_not_ready,
                hostname=hostname,
                pod_name=pod.name,
            )
            groups.setdefault((version, tuple(ports)), []).append(endpoint)
    slices: list[EndpointSlice] = []
    for (version, ports_key), endpoints in sorted(groups.items(), key=lambda g: repr(g[0])):
        for start in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
            seed = f"{svc.namespace}/{svc.name}/{version}/{ports_key}/{start}"
            slices.append(
                EndpointSlice(
                    svc.namespace,
                    f"{svc.name}-{_suffix(seed, 5)}",
                    service=svc.name,
                    endpoints=tuple(endpoints[start : start + MAX_ENDPOINTS_PER_SLICE]),
                    ports=ports_key,
                    pod_names=pod_names,
                )
            )
    return slices


# ---- loading ---------------------------------------------------------------------------


def _builtin_labels(key: tuple[str, str]) -> Mapping[str, str]:
    """The labels of a Service no manifest gave: the synthesized default/kubernetes's."""
    return KUBERNETES_LABELS if key == ("default", "kubernetes") else {}


def _slice_labels(spec: _ServiceSpec, own: Mapping[str, str]) -> dict[str, str]:
    """The labels the EndpointSlice controller gives a Service's slices: the Service's own,
    then its name, the controller's, and the headless mark."""
    out = {**own, SERVICE_NAME_LABEL: spec.service.name, **MANAGED_BY}
    if spec.service.headless:
        out[HEADLESS_LABEL] = ""
    return out


def _rank(families: Sequence[int], version: int) -> int:
    return families.index(version) if version in families else len(families)


def _kubernetes_service(allocator: _Allocator) -> Service:
    # A real cluster's kubernetes Service is SingleStack on the primary family, offset 1.
    ips = (ip_address(allocator.base + 1),) if allocator.size > 2 else ()
    return Service(
        "default", "kubernetes", cluster_ips=ips, ports=(ServicePort("https", "tcp", 443),)
    )


def load_manifests(
    paths: Sequence[Path],
    *,
    service_cidrs: Sequence[Network],
    pod_cidrs: Sequence[Network],
    synthesize_kubernetes: bool = True,
    filters: SourceFilter | None = None,
) -> ManifestData:
    """Read manifests and build the objects the cluster would have, keeping what `filters`
    serves (everything when None). Raises ManifestError.

    A load parses far more than it keeps (each object's dicts, the per-object parse
    state): once that is garbage, free heap pages go back to the system (issue 5)."""
    try:
        return _load(
            paths,
            service_cidrs=service_cidrs,
            pod_cidrs=pod_cidrs,
            synthesize_kubernetes=synthesize_kubernetes,
            filters=filters or SourceFilter(),
        )
    finally:
        gc.collect()
        _trim_heap()


def _trim_heap() -> None:
    """glibc's malloc_trim(0): return freed heap pages to the system. Measured on a 100k
    Service JSON load: 194 -> 167 MB RSS. A no-op where there is no glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _load(
    paths: Sequence[Path],
    *,
    service_cidrs: Sequence[Network],
    pod_cidrs: Sequence[Network],
    synthesize_kubernetes: bool,
    filters: SourceFilter,
) -> ManifestData:
    if not service_cidrs:
        raise ManifestError("no service CIDR; give at least one --service-cidr")
    files = manifest_files(paths)
    svc_alloc = _allocators(service_cidrs, SERVICE_RESERVED_OFFSETS)
    pod_alloc = _allocators(pod_cidrs, POD_RESERVED_OFFSETS)
    primary = service_cidrs[0].version
    configured = frozenset(svc_alloc)

    services: dict[tuple[str, str], _ServiceSpec] = {}
    given_slices: dict[tuple[str, str], tuple[EndpointSlice, _Origin]] = {}
    namespaces: dict[str, Namespace] = {n: Namespace(n) for n in STANDARD_NAMESPACES}
    pods: dict[tuple[str, str], _PodSpec] = {}
    warnings: list[str] = []
    warned: set[str] = set()
    seen: dict[tuple[str, str, str], _Origin] = {}
    # Labels of Namespaces, Services and given slices, kept only for a filter that reads them.
    labels: dict[tuple[Kind, str, str], dict[str, str]] = {}
    by_labels = filters.labels is not None
    pod_names = filters.pod_names

    def check_duplicate(kind: str, key: tuple[str, str], origin: _Origin) -> None:
        first = seen.setdefault((kind, *key), origin)
        if first is not origin:
            raise ManifestError(
                f"{origin.path}: document {origin.document} ({origin.what}): duplicate "
                f"{kind}, first in {first.path} document {first.document}; remove one"
            )

    for path in files:
        for origin, obj in _objects(path, _read_documents(path)):
            kind = obj.get("kind")
            try:
                if not isinstance(kind, str) or not kind:
                    raise ConversionError("kind", "is missing", "set kind, e.g. kind: Service")
                if kind == "Namespace":
                    declared = namespace_from_api(obj)
                    check_duplicate(kind, ("", declared.name), origin)
                    namespaces[declared.name] = declared
                    if filters.namespace_labels is not None:
                        labels[(Kind.NAMESPACE, "", declared.name)] = _labels_of(obj)
                elif kind == "Service":
                    spec = _service_spec(obj, origin, primary=primary, configured=configured)
                    key = (spec.service.namespace, spec.service.name)
                    check_duplicate(kind, key, origin)
                    services[key] = spec
                    if by_labels:
                        labels[(Kind.SERVICE, *key)] = _labels_of(obj)
                elif kind == "EndpointSlice":
                    es = endpointslice_from_api(obj, pod_names=pod_names)
                    if es is not None:
                        check_duplicate(kind, (es.namespace, es.name), origin)
                        given_slices[(es.namespace, es.name)] = (es, origin)
                        if by_labels:
                            labels[(Kind.ENDPOINT_SLICE, es.namespace, es.name)] = _labels_of(obj)
                elif kind == "Endpoints":
                    for es in slices_from_endpoints(obj, pod_names=pod_names):
                        check_duplicate(kind, (es.namespace, es.name), origin)
                        given_slices[(es.namespace, es.name)] = (es, origin)
                        if by_labels:
                            labels[(Kind.ENDPOINT_SLICE, es.namespace, es.name)] = _labels_of(obj)
                elif kind == "Pod":
                    pod = _pod_spec(obj, origin)
                    if pod is not None:
                        check_duplicate(kind, (pod.namespace, pod.name), origin)
                        pods[(pod.namespace, pod.name)] = pod
                elif kind in WORKLOAD_KINDS:
                    check_duplicate(kind, metadata_names(obj), origin)
                    for pod in _workload_pods(obj, origin, kind):
                        check_duplicate("Pod", (pod.namespace, pod.name), origin)
                        pods[(pod.namespace, pod.name)] = pod
                elif kind in IGNORED_KINDS:
                    log.debug("manifest skipped: %s (%s is not used by DNS)", origin.what, kind)
                elif kind not in warned:
                    warned.add(kind)
                    warnings.append(
                        f"{path}: document {origin.document}: kind {kind} is not known to "
                        "kdns; objects of this kind are ignored"
                    )
            except ConversionError as err:
                raise origin.error(err) from None

    kube = _kubernetes_service(svc_alloc[primary]) if synthesize_kubernetes else None
    taken = {ip for spec in services.values() for ip in spec.service.cluster_ips}
    # The synthesized Service yields to the manifests: it is left out when one of them
    # defines default/kubernetes or already uses its address.
    if (
        kube is not None
        and ("default", "kubernetes") not in services
        and not (set(kube.cluster_ips) & taken)
    ):
        services[("default", "kubernetes")] = _ServiceSpec(
            kube, _Origin(Path("<builtin>"), 0, "", "Service default/kubernetes"),
            "ClusterIP", None, (), False, (primary,), False,
        )  # fmt: skip

    # ClusterIPs: explicit ones first (duplicates are an error, as the API server says
    # "provided IP is already allocated"), then hash-derived ones.
    owners: dict[IPAddress, tuple[str, str]] = {}
    for key, spec in sorted(services.items()):
        for ip in spec.service.cluster_ips:
            if ip in owners:
                raise ManifestError(
                    f"{spec.origin.path}: document {spec.origin.document} ({spec.origin.what}): "
                    f"spec.clusterIP: {ip} is already the ClusterIP of Service "
                    f"{owners[ip][0]}/{owners[ip][1]}; choose another address or omit it"
                )
            owners[ip] = key
            for alloc in svc_alloc.values():
                alloc.reserve(ip)
    wanted: list[tuple[str, int]] = []
    for (ns, name), spec in services.items():
        svc = spec.service
        if svc.headless or svc.external_name is not None:
            continue
        have = {ip.version for ip in svc.cluster_ips}
        if have and not spec.dual:
            continue
        wanted += [(f"{ns}/{name}", v) for v in spec.families if v in svc_alloc and v not in have]
    allocated = _allocate(wanted, svc_alloc)
    for (ns, name), spec in services.items():
        extra = []
        for version in spec.families:
            got = allocated.get((f"{ns}/{name}", version), None)
            if (f"{ns}/{name}", version) in allocated and got is None:
                raise ManifestError(
                    f"{spec.origin.path}: document {spec.origin.document} ({spec.origin.what}): "
                    f"spec.clusterIP: no free address in {svc_alloc[version].network}; "
                    "use a larger --service-cidr"
                )
            if got is not None:
                extra.append(got)
        if extra:
            svc = spec.service
            ips = sorted((*svc.cluster_ips, *extra), key=lambda a: _rank(spec.families, a.version))
            spec.service = Service(svc.namespace, svc.name, tuple(ips), ports=svc.ports)

    # Pod IPs: explicit status.podIPs reserved, then hash-derived per family.
    for pod in pods.values():
        for ip in pod.ips:
            for alloc in pod_alloc.values():
                alloc.reserve(ip)
    pod_wanted = [
        (f"{ns}/{name}", v) for (ns, name), pod in pods.items() if not pod.ips for v in pod_alloc
    ]
    pod_allocated = _allocate(pod_wanted, pod_alloc)
    pod_ips: dict[tuple[str, str], tuple[IPAddress, ...]] = {}
    for (ns, name), pod in pods.items():
        if pod.ips:
            pod_ips[(ns, name)] = pod.ips
            continue
        ips = []
        for version in pod_alloc:
            pod_ip = pod_allocated[(f"{ns}/{name}", version)]
            if pod_ip is None:
                raise ManifestError(
                    f"{pod.origin.path}: document {pod.origin.document} ({pod.origin.what}): "
                    f"no free pod IP in {pod_alloc[version].network} for pod {name}; "
                    "use a larger --pod-cidr"
                )
            ips.append(pod_ip)
        pod_ips[(ns, name)] = tuple(ips)

    # EndpointSlices: given ones as they are; computed ones for selector Services without.
    slices = [es for es, _ in given_slices.values()]
    covered = {(es.namespace, es.service) for es in slices if es.service is not None}
    by_label: dict[tuple[str, str, str], list[_PodSpec]] = {}  # (ns, key, value) -> pods
    for pod in pods.values():
        for label in pod.labels.items():
            by_label.setdefault((pod.namespace, *label), []).append(pod)
    for key, spec in sorted(services.items()):
        if spec.selector is None or spec.type == "ExternalName" or key in covered:
            continue
        # Candidates: the pods carrying the rarest selector label; all labels are checked.
        candidates = min(
            (by_label.get((key[0], *label), []) for label in spec.selector.items()), key=len
        )
        computed = _computed_slices(spec, candidates, pod_ips, pod_names=pod_names)
        if by_labels:  # as the controller labels them
            own = labels.get((Kind.SERVICE, *key), _builtin_labels(key))
            for es in computed:
                labels[(Kind.ENDPOINT_SLICE, es.namespace, es.name)] = _slice_labels(spec, own)
        slices.extend(computed)

    used = [s.service.namespace for s in services.values()]
    used += [s.namespace for s in slices] + [p.namespace for p in pods.values()]
    for name in used:
        namespaces.setdefault(name, Namespace(name))

    # What the filters keep (the API source asks the server for the same).
    def kept(kind: Kind, namespace: str, name: str, own: Mapping[str, str] | None = None) -> bool:
        if kind is Kind.NAMESPACE and filters.namespace_labels is not None:
            own = {**labels.get((kind, "", name), {}), NAMESPACE_NAME_LABEL: name}
        elif own is None:
            own = labels.get((kind, namespace, name))
            if own is None and kind is Kind.SERVICE:
                own = _builtin_labels((namespace, name))
        return filters.keeps(kind, own)

    return ManifestData(
        services=tuple(services[k].service for k in sorted(services) if kept(Kind.SERVICE, *k)),
        slices=tuple(
            sorted(
                (s for s in slices if kept(Kind.ENDPOINT_SLICE, s.namespace, s.name)),
                key=lambda s: (s.namespace, s.name),
            )
        ),
        namespaces=tuple(namespaces[n] for n in sorted(namespaces) if kept(Kind.NAMESPACE, "", n)),
        pods=tuple(
            Pod(ns, name, ips=pod_ips[(ns, name)])
            for ns, name in sorted(pods)
            if kept(Kind.POD, ns, name, pods[(ns, name)].labels)
        ),
        files=tuple(files),
        service_types={k: s.type for k, s in services.items()},
        warnings=tuple(warnings),
    )


def digests(data: ManifestData) -> tuple[int, ...]:
    """A hash per kind, in the order of `events(data)`: a reload applies only the kinds
    whose hash changed. The objects are frozen and hash by value; two different lists of
    one kind have equal hashes with odds of about 2**-64, which would delay that change
    to the next edit."""
    return tuple(hash(event.objects) for event in events(data))


def events(data: ManifestData) -> list[Replace]:
    """One Replace per kind: applying them makes an index hold exactly `data`."""
    return [
        Replace(Kind.NAMESPACE, data.namespaces),
        Replace(Kind.SERVICE, data.services),
        Replace(Kind.ENDPOINT_SLICE, data.slices),
        Replace(Kind.POD, data.pods),
    ]


# ---- the kubectl-like table -----------------------------------------------------------


def _endpoint_count(es: EndpointSlice) -> int:
    """How many endpoints `es` has, without building them."""
    return es.address_count if es.sizes is None else len(es.sizes)


def _raw_addresses(es: EndpointSlice) -> list[bytes]:
    """The addresses of `es` as 4 (IPv4) or 16 (IPv6) bytes each: equal bytes = equal
    address, whatever the slice's packing."""
    width, packed = es.width, es.packed
    if width == MIXED:
        return [raw_address(packed, width, i) for i in range(es.address_count)]
    return [packed[i : i + width] for i in range(0, len(packed), width)]


def _ready_counts(slices: Iterable[EndpointSlice]) -> tuple[int, int]:
    """(distinct ready addresses, distinct addresses only ever not ready) of a Service's
    slices: the READY column, counted on packed bytes (no `Endpoint` values)."""
    ready: set[bytes] = set()
    not_ready: set[bytes] = set()
    for es in slices:
        raws = _raw_addresses(es)
        if not es.not_ready:
            ready.update(raws)
            continue
        sizes = es.sizes if es.sizes is not None else (1,) * len(raws)
        at = 0
        for i, n in enumerate(sizes):
            (not_ready if i in es.not_ready else ready).update(raws[at : at + n])
            at += n
    return len(ready), len(not_ready - ready)


def _endpoints_text(slices: Iterable[EndpointSlice]) -> str:
    """The `kubectl get endpoints` ENDPOINTS text: three address:port pairs (each slice's
    ready addresses sorted, for each of its ports), then `+ N more...`."""
    listed: list[str] = []
    total = 0
    for es in slices:
        ports = es.ports or (None,)
        if len(listed) >= 3:  # only the count is needed: distinct ready addresses x ports
            raws = _raw_addresses(es)
            sizes = es.sizes if es.sizes is not None else (1,) * len(raws)
            ready, at = set(), 0
            for i, n in enumerate(sizes):
                if i not in es.not_ready:
                    ready.update(raws[at : at + n])
                at += n
            total += len(ready) * len(ports)
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


def _table_lines(data: ManifestData, *, limit: int | None = None) -> list[str]:
    """The lines of `render_endpoints`: the header, then one row per Service, the first
    `limit` rows only when given. Column widths cover every Service either way (the last
    column, ENDPOINTS, pads nothing: lines are right-stripped)."""
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for es in data.slices:
        if es.service is not None:
            by_service.setdefault((es.namespace, es.service), []).append(es)
    header = ("NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "READY", "ENDPOINTS")
    rows: list[tuple[str, ...]] = [header]
    for n, svc in enumerate(data.services):
        key = (svc.namespace, svc.name)
        stype = data.service_types.get(key, "ClusterIP")
        shown_row = limit is None or n < limit
        if svc.external_name is not None:
            rows.append((*key, stype, "<none>", "-", f"CNAME {svc.external_name}"))
            continue
        ip = "None" if svc.headless else ",".join(map(str, svc.cluster_ips)) or "<pending>"
        slices = by_service.get(key, [])
        ready, not_ready = _ready_counts(slices)
        text = _endpoints_text(slices) if shown_row else ""
        rows.append((*key, stype, ip, f"{ready}/{ready + not_ready}", text))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    shown_rows = rows if limit is None else rows[: limit + 1]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in shown_rows
    ]


def render_endpoints(data: ManifestData) -> str:
    """A table of every Service: type, ClusterIP(s), ready/total endpoints, and ENDPOINTS as
    `kubectl get endpoints` shows them (three, then `+ N more...`)."""
    return "\n".join(_table_lines(data))


# ---- watching --------------------------------------------------------------------------


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
    filters: SourceFilter | None = None,
) -> None:
    """Serve the manifests: load and apply them (unless `initial` was already applied),
    then poll the files every `poll_seconds` and apply a full reload on any change.

    Errors in the first load are raised (ManifestError); a later reload that fails keeps
    the last good data and is logged (and passed to `on_error`) once per change.
    """
    snapshot = await asyncio.to_thread(_snapshot, paths)
    if initial is None:
        initial = await asyncio.to_thread(
            functools.partial(
                load_manifests,
                paths,
                service_cidrs=service_cidrs,
                pod_cidrs=pod_cidrs,
                filters=filters,
            )
        )
        for event in events(initial):
            apply(event)
    # Keep a digest per kind, not the data: after a reload the index keeps its own (equal)
    # objects, so holding the loaded ones would be a second copy (issue 5).
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
                functools.partial(
                    load_manifests,
                    paths,
                    service_cidrs=service_cidrs,
                    pod_cidrs=pod_cidrs,
                    filters=filters,
                )
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
