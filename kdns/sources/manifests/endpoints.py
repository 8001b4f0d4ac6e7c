"""EndpointSlices computed as the EndpointSlice controller would.

For a Service with a selector (not ExternalName) and no EndpointSlice or Endpoints of its
own in the manifests: Pods in its namespace whose labels match every selector label; each
Service port's `targetPort` (default = `port`; a name is looked up in that pod's container
ports with the same protocol, and a pod without it has no endpoint for that port);
endpoint `hostname` only when the pod sets a hostname and its subdomain is the Service
name (docs/rules.md R7); ready = pod ready or `publishNotReadyAddresses`. One group per
(address family, resolved ports), at most 100 endpoints per slice, named
`<service>-<5 chars>`, labelled as the controller labels them (`slice_labels`: the
Service's labels, `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by`,
and `service.kubernetes.io/headless` for headless Services). With `pod_names`
(`endpoint_pod_names`) the slices keep their endpoints' pod names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from kdns.cluster.model import Endpoint, EndpointSlice, IPAddress, ServicePort
from kdns.sources.convert import SERVICE_NAME_LABEL
from kdns.sources.manifests import limits
from kdns.sources.manifests.services import ServiceSpec, TargetPort
from kdns.sources.manifests.workloads import PodSpec, generated_suffix

Key = tuple[str, str]  # (namespace, name)

MAX_ENDPOINTS_PER_SLICE = 100  # the EndpointSlice controller's default
MANAGED_BY = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
HEADLESS_LABEL = "service.kubernetes.io/headless"


def selected_slices(
    services: Mapping[Key, ServiceSpec],
    pods: Iterable[PodSpec],
    pod_ips: Mapping[Key, Sequence[IPAddress]],
    *,
    covered: Collection[Key],
    pod_names: bool = False,
) -> list[EndpointSlice]:
    """The slices of every selector Service whose key is not in `covered` (those have
    slices of their own), in namespace/name order; `pod_names`: see `computed_slices`."""
    by_label: dict[tuple[str, str, str], list[PodSpec]] = {}  # (ns, key, value) -> pods
    for pod in pods:
        for label in pod.labels.items():
            by_label.setdefault((pod.namespace, *label), []).append(pod)
    slices: list[EndpointSlice] = []
    examined = endpoints = 0
    for key, spec in sorted(services.items()):
        if spec.selector is None or spec.type == "ExternalName" or key in covered:
            continue
        # Candidates: the pods carrying the rarest selector label; all labels are checked.
        candidates = min(
            (by_label.get((key[0], *label), []) for label in spec.selector.items()), key=len
        )
        examined += len(candidates)
        if examined > limits.MAX_SELECTOR_CANDIDATES:
            raise spec.origin.fail(
                "spec.selector",
                f"matching the selectors examined more than {limits.MAX_SELECTOR_CANDIDATES} Pods "
                "(Services select through labels that very many Pods carry)",
                "give each Service a selector label only its own Pods carry",
            )
        computed = computed_slices(spec, candidates, pod_ips, pod_names=pod_names)
        mine = sum(es.endpoint_count for es in computed)
        endpoints += mine
        if endpoints > limits.MAX_SELECTED_ENDPOINTS:
            raise spec.origin.fail(
                "spec.selector",
                f"the Services' selectors give more than {limits.MAX_SELECTED_ENDPOINTS} endpoints "
                f"in all ({mine} from this Service)",
                "make the selectors narrower, or give the Service EndpointSlices of its own",
            )
        slices.extend(computed)
    return slices


def _resolve_port(target: TargetPort, pod: PodSpec) -> int | None:
    """podutil.FindPort: a number is used as is; a name must be a container port of the
    pod with the same protocol, else that pod has no endpoint for this port."""
    if isinstance(target.target, int):
        return target.target
    return pod.container_ports.get((target.target, target.port.protocol))


def computed_slices(
    spec: ServiceSpec,
    pods: Iterable[PodSpec],
    pod_ips: Mapping[Key, Sequence[IPAddress]],
    *,
    pod_names: bool = False,
) -> list[EndpointSlice]:
    """The slices of one selector Service, from the `pods` that may match it; with
    `pod_names` they keep their endpoints' pod names (`endpoint_pod_names`)."""
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
        # docs/rules.md R7 (ShouldSetHostname): hostname set and subdomain == Service name.
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
                    f"{svc.name}-{generated_suffix(seed, 5)}",
                    service=svc.name,
                    endpoints=tuple(endpoints[start : start + MAX_ENDPOINTS_PER_SLICE]),
                    ports=ports_key,
                    pod_names=pod_names,
                )
            )
    return slices


def slice_labels(spec: ServiceSpec, own: Mapping[str, str]) -> dict[str, str]:
    """The labels the EndpointSlice controller gives a Service's slices: the Service's own
    (`own`), then its name, the controller's, and the headless mark."""
    out = {**own, SERVICE_NAME_LABEL: spec.service.name, **MANAGED_BY}
    if spec.service.headless:
        out[HEADLESS_LABEL] = ""
    return out
