"""One load of the manifests, in three phases: parse every object, allocate addresses,
compute EndpointSlices; then the model objects the index takes.

Kinds read: Namespace, Service, EndpointSlice (discovery.k8s.io), Endpoints, Pod, the
workloads (see `workloads`), and `List` wrappers. Kinds DNS has no use for (ConfigMap,
Secret, RBAC, Ingress, ...) are skipped; any other kind is a warning (once per kind),
never an error.

`default/kubernetes` (a real cluster always has it; docs/rules.md E1) is synthesized with
the first address (offset 1) of the first service CIDR and port https 443/TCP, without
endpoints (there is no API server). A manifest that defines `default/kubernetes` replaces
it. The namespaces default, kube-system, kube-public and kube-node-lease always exist, as
in a real cluster.

Filters (`SourceFilter`, the kubernetes plugin's `labels`, `namespace_labels`,
`noendpoints`, `endpoint_pod_names`) are applied to what was built, after every address
was allocated, so a filter never moves an address. They see the labels a real cluster
has: the manifests' own, computed EndpointSlices labelled as the controller labels them
(`endpoints.slice_labels`), `default/kubernetes` with the API server's, and every Namespace
with `kubernetes.io/metadata.name` as the API server sets it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdns.cluster.model import EndpointSlice, IPAddress, Kind, Namespace, Pod
from kdns.sources.convert import (
    NAMESPACE_NAME_LABEL,
    ConversionError,
    SourceFilter,
    endpointslice_from_api,
    labels_of,
    metadata_names,
    namespace_from_api,
    slices_from_endpoints,
)
from kdns.sources.manifests import limits, validate
from kdns.sources.manifests.allocate import (
    POD_RESERVED_OFFSETS,
    SERVICE_RESERVED_OFFSETS,
    Network,
    allocators,
    assign_cluster_ips,
    assign_pod_ips,
)
from kdns.sources.manifests.data import ManifestData
from kdns.sources.manifests.endpoints import selected_slices, slice_labels
from kdns.sources.manifests.errors import ManifestError, Origin
from kdns.sources.manifests.files import find_files, read_objects
from kdns.sources.manifests.services import (
    ServiceSpec,
    builtin_labels,
    kubernetes_service,
    parse_service,
)
from kdns.sources.manifests.workloads import WORKLOAD_KINDS, PodSpec, parse_pod, workload_pods

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)

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
KINDS = frozenset({"Namespace", "Service", "EndpointSlice", "Endpoints", "Pod"})
"""The kinds read, besides the workloads."""
STANDARD_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def load_manifests(
    paths: Sequence[Path],
    *,
    service_cidrs: Sequence[Network],
    pod_cidrs: Sequence[Network],
    synthesize_kubernetes: bool = True,
    report: bool = True,
    filters: SourceFilter | None = None,
) -> ManifestData:
    """Read manifests and build the objects the cluster would have, keeping what `filters`
    serves (everything when None). Raises ManifestError.

    With `report`, the load's warnings are logged at WARNING and its notes (kinds ignored,
    one line per file) at INFO; the poller passes False and logs only what is new.

    A load parses far more than it keeps (each object's dicts, the per-object parse
    state): once that is garbage, free heap pages go back to the system."""
    try:
        data = _load(
            paths,
            service_cidrs=service_cidrs,
            pod_cidrs=pod_cidrs,
            synthesize_kubernetes=synthesize_kubernetes,
            filters=filters or SourceFilter(),
        )
    finally:
        gc.collect()
        _trim_heap()
    if report:
        for line in data.warnings:
            log.warning("%s", line)
        for line in data.notes:
            log.info("%s", line)
    return data


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
    found = find_files(paths)
    service_pool = allocators(service_cidrs, SERVICE_RESERVED_OFFSETS)
    pod_pool = allocators(pod_cidrs, POD_RESERVED_OFFSETS)

    # 1. Parse: every object of every file, converted and checked.
    parsed = _Parsed(
        primary=service_cidrs[0].version, configured=frozenset(service_pool), filters=filters
    )
    parsed.warnings += found.warnings
    for path in found.files:
        for origin, obj in read_objects(path):
            parsed.add(origin, obj)
        parsed.end_of_file(path)
    if synthesize_kubernetes:
        parsed.add_kubernetes_service(service_cidrs[0])

    # 2. Allocate: ClusterIPs, then pod IPs.
    assign_cluster_ips(parsed.services, service_pool)
    pod_ips = assign_pod_ips(parsed.pods, pod_pool)

    # 3. Compute: given EndpointSlices as they are, computed ones for selector Services.
    slices = list(parsed.slices.values())
    covered = {(es.namespace, es.service) for es in slices if es.service is not None}
    computed = selected_slices(
        parsed.services, parsed.pods.values(), pod_ips, covered=covered, pod_names=filters.pod_names
    )
    parsed.label_computed(computed)
    slices += computed

    return parsed.result(found.files, pod_ips, slices)


@dataclass(slots=True)
class _Parsed:
    """What the parse phase found, by kind."""

    primary: int  # the first service CIDR's IP version
    configured: frozenset[int]  # the IP versions with a service CIDR
    filters: SourceFilter = field(default_factory=SourceFilter)
    services: dict[Key, ServiceSpec] = field(default_factory=dict)
    slices: dict[Key, EndpointSlice] = field(default_factory=dict)  # given in the files
    namespaces: dict[str, Namespace] = field(
        default_factory=lambda: {n: Namespace(n) for n in STANDARD_NAMESPACES}
    )
    pods: dict[Key, PodSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # logged at WARNING
    notes: list[str] = field(default_factory=list)  # logged at INFO
    _unknown_kinds: set[str] = field(default_factory=set)
    _ignored: Counter[str] = field(default_factory=Counter)  # in the current file
    _seen: dict[tuple[str, str, str], Origin] = field(default_factory=dict)
    _labels: set[str] = field(default_factory=set)  # found valid DNS labels (validate)
    # Labels of Namespaces, Services and slices, kept only for a filter that reads them.
    _object_labels: dict[tuple[Kind, str, str], Mapping[str, str]] = field(default_factory=dict)

    def add(self, origin: Origin, obj: Mapping[str, Any]) -> None:
        """Parse one object. Raises ManifestError naming `origin`."""
        kind = obj.get("kind")
        try:
            if not isinstance(kind, str) or not kind:
                raise ConversionError("kind", "is missing", "set kind, e.g. kind: Service")
            if kind in IGNORED_KINDS:
                self._ignored[kind] += 1
            elif kind in KINDS or kind in WORKLOAD_KINDS:
                validate.metadata(kind, obj, known=self._labels)
                self._add(kind, origin, obj)
            elif kind not in self._unknown_kinds:
                self._unknown_kinds.add(kind)
                self.warnings.append(
                    f"{origin.path}: document {origin.document}: kind {kind[:80]} is not "
                    "known to kdns; objects of this kind are ignored"
                )
        except ConversionError as err:
            raise origin.error(err) from None

    def _add(self, kind: str, origin: Origin, obj: Mapping[str, Any]) -> None:
        match kind:
            case "Namespace":
                namespace = namespace_from_api(obj)
                self._claim(kind, ("", namespace.name), origin)
                self.namespaces[namespace.name] = namespace
                if self.filters.namespace_labels is not None:
                    self._object_labels[(Kind.NAMESPACE, "", namespace.name)] = labels_of(obj)
            case "Service":
                spec = parse_service(
                    obj,
                    origin,
                    primary=self.primary,
                    configured=self.configured,
                    known=self._labels,
                )
                key = (spec.service.namespace, spec.service.name)
                self._claim(kind, key, origin)
                self.services[key] = spec
                if self.filters.labels is not None:
                    self._object_labels[(Kind.SERVICE, *key)] = labels_of(obj)
            case "EndpointSlice":
                es = endpointslice_from_api(obj, pod_names=self.filters.pod_names)
                if es is not None:  # an FQDN slice: nothing DNS serves
                    validate.endpoint_hostnames(kind, obj, known=self._labels)
                    self._add_slices(kind, [es], origin, obj)
            case "Endpoints":
                slices = slices_from_endpoints(obj, pod_names=self.filters.pod_names)
                validate.endpoint_hostnames(kind, obj, known=self._labels)
                self._add_slices(kind, slices, origin, obj)
            case "Pod":
                pod = parse_pod(obj, origin)
                self._add_pods([] if pod is None else [pod])
            case _:  # a workload
                self._claim(kind, metadata_names(obj), origin)
                self._add_pods(
                    workload_pods(obj, origin, kind, room=limits.MAX_PODS - len(self.pods))
                )

    def end_of_file(self, path: Path) -> None:
        """One line for the kinds DNS does not use that `path` has (not one per object)."""
        if self._ignored:
            counts = ", ".join(f"{kind} x{n}" for kind, n in sorted(self._ignored.items()))
            total = sum(self._ignored.values())
            self.notes.append(
                f"{path}: ignored {total} object{'s' if total > 1 else ''} DNS does not use "
                f"({counts})"
            )
            self._ignored.clear()

    def add_kubernetes_service(self, network: Network) -> None:
        """The synthesized `default/kubernetes` yields to the manifests: it is left out
        when one of them defines it or already uses its address."""
        kube = kubernetes_service(network)
        taken = {ip for spec in self.services.values() for ip in spec.service.cluster_ips}
        if ("default", "kubernetes") not in self.services and not (
            set(kube.service.cluster_ips) & taken
        ):
            self.services[("default", "kubernetes")] = kube

    def _claim(self, kind: str, key: Key, origin: Origin) -> None:
        """Note that `origin` defines the `kind` object `key`; a second definition is an
        error (the API server would refuse to create it)."""
        first = self._seen.setdefault((kind, *key), origin)
        if first is not origin:
            raise ManifestError(
                f"{origin}: duplicate {kind}, first in {first.path} document "
                f"{first.document}; remove one"
            )

    def _add_slices(
        self,
        kind: str,
        slices: Sequence[EndpointSlice],
        origin: Origin,
        obj: Mapping[str, Any],
    ) -> None:
        labels = labels_of(obj) if self.filters.labels is not None else None
        for es in slices:
            self._claim(kind, (es.namespace, es.name), origin)
            self.slices[(es.namespace, es.name)] = es
            if labels is not None:
                self._object_labels[(Kind.ENDPOINT_SLICE, es.namespace, es.name)] = labels

    def label_computed(self, slices: Sequence[EndpointSlice]) -> None:
        """Label the computed `slices` as the EndpointSlice controller does, for a filter
        that reads labels."""
        if self.filters.labels is None:
            return
        for es in slices:
            assert es.service is not None
            key = (es.namespace, es.service)
            own = self._object_labels.get((Kind.SERVICE, *key), builtin_labels(key))
            labels = slice_labels(self.services[key], own)
            self._object_labels[(Kind.ENDPOINT_SLICE, es.namespace, es.name)] = labels

    def _kept(
        self, kind: Kind, namespace: str, name: str, own: Mapping[str, str] | None = None
    ) -> bool:
        """Whether the filters serve this object (the API source asks the server for the
        same); `own`: its labels when the parse did not keep them."""
        if kind is Kind.NAMESPACE and self.filters.namespace_labels is not None:
            own = {**self._object_labels.get((kind, "", name), {}), NAMESPACE_NAME_LABEL: name}
        elif own is None:
            own = self._object_labels.get((kind, namespace, name))
            if own is None and kind is Kind.SERVICE:
                own = builtin_labels((namespace, name))
        return self.filters.keeps(kind, own)

    def _add_pods(self, pods: Sequence[PodSpec]) -> None:
        for pod in pods:
            self._claim("Pod", (pod.namespace, pod.name), pod.origin)
            self.pods[(pod.namespace, pod.name)] = pod

    def result(
        self,
        files: Sequence[Path],
        pod_ips: Mapping[Key, tuple[IPAddress, ...]],
        slices: Sequence[EndpointSlice],
    ) -> ManifestData:
        """The model objects the filters keep, sorted; every namespace an object uses
        exists (before filtering: a filter never changes what a namespace is)."""
        services, pods, namespaces = self.services, self.pods, self.namespaces
        used = [s.service.namespace for s in services.values()]
        used += [s.namespace for s in slices] + [p.namespace for p in pods.values()]
        for name in used:
            namespaces.setdefault(name, Namespace(name))
        filters = self.filters
        filtering = filters.labels is not None or filters.namespace_labels is not None
        kept = self._kept if filtering or not filters.endpoints else _everything
        return ManifestData(
            services=tuple(services[k].service for k in sorted(services) if kept(Kind.SERVICE, *k)),
            slices=tuple(
                sorted(
                    (s for s in slices if kept(Kind.ENDPOINT_SLICE, s.namespace, s.name)),
                    key=lambda s: (s.namespace, s.name),
                )
            ),
            namespaces=tuple(
                namespaces[n] for n in sorted(namespaces) if kept(Kind.NAMESPACE, "", n)
            ),
            pods=tuple(
                Pod(ns, name, ips=pod_ips[(ns, name)])
                for ns, name in sorted(pods)
                if kept(Kind.POD, ns, name, pods[(ns, name)].labels)
            ),
            files=tuple(files),
            service_types={k: s.type for k, s in services.items()},
            warnings=tuple(self.warnings),
            notes=tuple(self.notes),
            loaded_at=time.time(),
        )


def _everything(
    kind: Kind, namespace: str, name: str, own: Mapping[str, str] | None = None
) -> bool:
    return True


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
