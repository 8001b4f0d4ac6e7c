"""A Service manifest parsed: the model `Service` plus what only this source needs (its
type, selector, target ports, IP families), and the `kubernetes` Service a real cluster
always has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from kdns.cluster.model import Service, ServicePort
from kdns.sources.convert import (
    ConversionError,
    labels_at,
    list_at,
    mapping_at,
    port_number,
    service_from_api,
    shown,
    string_at,
)
from kdns.sources.manifests import validate
from kdns.sources.manifests.errors import BUILTIN, Origin

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
KUBERNETES_LABELS = {"component": "apiserver", "provider": "kubernetes"}  # default/kubernetes
FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")


@dataclass(frozen=True, slots=True)
class TargetPort:
    port: ServicePort  # name, protocol and the Service's port
    target: int | str  # a number, or a container port name (lower-case)


@dataclass(slots=True)
class ServiceSpec:
    service: Service  # cluster_ips are completed when addresses are allocated
    origin: Origin
    type: str
    selector: dict[str, str] | None
    targets: tuple[TargetPort, ...]
    publish_not_ready: bool
    families: tuple[int, ...]  # requested IP versions, in order
    dual: bool  # PreferDualStack / RequireDualStack

    @property
    def allocates(self) -> bool:
        """Whether the Service has ClusterIPs (not headless, not ExternalName)."""
        return not self.service.headless and self.service.external_name is None


def parse_service(
    obj: Mapping[str, Any],
    origin: Origin,
    *,
    primary: int,
    configured: frozenset[int],
    known: set[str],
) -> ServiceSpec:
    """A Service manifest; `primary` is the first service CIDR's IP version, `configured`
    the versions that have a service CIDR, `known` the DNS labels found valid (port names
    repeat)."""
    service = service_from_api(obj)
    spec = mapping_at(obj, "spec", field="spec")
    stype = string_at(spec, "type", field="spec.type", default="ClusterIP")
    if stype not in SERVICE_TYPES:
        raise ConversionError(
            "spec.type",
            f"{shown(stype)} is not a Service type",
            "use ClusterIP, NodePort, LoadBalancer or ExternalName",
        )
    if stype == "ExternalName":
        validate.dns_name(spec.get("externalName"), field="spec.externalName")
    families, dual = _families(spec, service, primary=primary, configured=configured)
    return ServiceSpec(
        service=service,
        origin=origin,
        type=stype,
        selector=labels_at(spec, "selector", field="spec.selector") or None,
        targets=_target_ports(spec, service.ports, known),
        publish_not_ready=spec.get("publishNotReadyAddresses") is True,
        families=families,
        dual=dual,
    )


def _target_ports(
    spec: Mapping[str, Any], ports: Sequence[ServicePort], known: set[str]
) -> tuple[TargetPort, ...]:
    targets: list[TargetPort] = []
    raw_ports = list_at(spec, "ports", field="spec.ports")
    names: dict[str, int] = {}
    for i, (raw, port) in enumerate(zip(raw_ports, ports, strict=True)):
        name = raw.get("name")  # a string: the converter checked
        if name:
            if name not in known or name in names:  # else: valid, and new in this Service
                _check_port_name(name, i, names, known)
            names[name] = i
        target: Any = raw.get("targetPort")
        at = f"spec.ports[{i}].targetPort"
        if target is None or target == "":
            target = port.port  # Kubernetes: targetPort defaults to port
        elif isinstance(target, str) and target.isdigit():
            # The API server wants a number here; kdns has always read "8080" as 8080.
            target = port_number(int(target), field=at)
        elif isinstance(target, str):
            validate.port_name(target, field=at)
            target = target.lower()
        else:
            target = port_number(target, field=at)
        targets.append(TargetPort(port, target))
    return tuple(targets)


def _check_port_name(name: str, i: int, names: dict[str, int], known: set[str]) -> None:
    """As the API server: a DNS-1123 label, unique in the Service (the names name the SRV
    records, docs/rules.md R10). The API server also wants every port named when there
    are several; kdns serves an unnamed one without SRV records (R12), as it always has."""
    validate.known_label(name, known, field=f"spec.ports[{i}].name", what="port name")
    if name in names:
        raise ConversionError(
            f"spec.ports[{i}].name",
            f"{shown(name)} is also the name of spec.ports[{names[name]}]",
            "give each port its own name",
        )


def _family_of(value: Any, *, field: str) -> int:
    if value == "IPv4":
        return 4
    if value == "IPv6":
        return 6
    raise ConversionError(field, f"{shown(value)} is not an IP family", "use IPv4 or IPv6")


def _families(
    spec: Mapping[str, Any], service: Service, *, primary: int, configured: frozenset[int]
) -> tuple[tuple[int, ...], bool]:
    """(IP versions in the order addresses are wanted, dual-stack)."""
    policy = string_at(spec, "ipFamilyPolicy", field="spec.ipFamilyPolicy", default="SingleStack")
    if policy not in FAMILY_POLICIES:
        raise ConversionError(
            "spec.ipFamilyPolicy",
            f"{shown(policy)} is not an IP family policy",
            "use SingleStack, PreferDualStack or RequireDualStack",
        )
    raw_families = list_at(spec, "ipFamilies", field="spec.ipFamilies")
    if raw_families or "clusterIPs" in spec:  # rare: checked only when present
        most = validate.IP_FAMILIES_MAX
        validate.at_most(raw_families, most, field="spec.ipFamilies", what="families")
        validate.at_most(spec.get("clusterIPs"), most, field="spec.clusterIPs", what="addresses")
    families = [_family_of(f, field=f"spec.ipFamilies[{i}]") for i, f in enumerate(raw_families)]
    if len(families) == 2 and families[0] == families[1]:
        raise ConversionError(
            "spec.ipFamilies", "names a family twice", "list IPv4 and IPv6 at most once each"
        )
    if not families:
        families = [int(ip.version) for ip in service.cluster_ips] or [primary]
    dual = policy != "SingleStack"
    if dual:
        for version in (primary, 10 - primary):  # 4 <-> 6
            if version not in families:
                families.append(version)
    if service.headless or service.external_name is not None:
        # No address is allocated, so no service CIDR is needed: families only choose
        # which pod addresses become endpoints.
        return tuple(families if dual else families[:1]), dual
    given = {int(ip.version) for ip in service.cluster_ips}
    if policy == "RequireDualStack" and not {4, 6} <= (configured | given):
        raise ConversionError(
            "spec.ipFamilyPolicy",
            "RequireDualStack needs an IPv4 and an IPv6 service CIDR",
            "add --service-cidr for the other family or use PreferDualStack",
        )
    if not dual:
        families = families[:1]
        if not service.cluster_ips and families[0] not in configured:
            raise ConversionError(
                "spec.ipFamilies[0]",
                f"no IPv{families[0]} service CIDR is configured",
                f"add an IPv{families[0]} --service-cidr or drop ipFamilies",
            )
    return tuple(families), dual


def builtin_labels(key: tuple[str, str]) -> Mapping[str, str]:
    """The labels of a Service no manifest gave: the synthesized default/kubernetes's (the
    API server's)."""
    return KUBERNETES_LABELS if key == ("default", "kubernetes") else {}


def kubernetes_service(network: IPv4Network | IPv6Network) -> ServiceSpec:
    """`default/kubernetes` as a real cluster has it (docs/rules.md E1): SingleStack on the
    first service CIDR's family, its first address (offset 1), port https 443/TCP."""
    ips = (network.network_address + 1,) if network.num_addresses > 2 else ()
    service = Service(
        "default", "kubernetes", cluster_ips=ips, ports=(ServicePort("https", "tcp", 443),)
    )
    return ServiceSpec(
        service=service,
        origin=Origin(BUILTIN, 0, "", "Service default/kubernetes"),
        type="ClusterIP",
        selector=None,
        targets=(),
        publish_not_ready=False,
        families=(network.version,),
        dual=False,
    )
