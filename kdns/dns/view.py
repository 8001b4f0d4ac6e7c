"""The narrow read interface the answer logic uses: what it may ask of the cluster data.

`kdns.cluster.index.Index` implements it from watched objects; tests implement it over plain data.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

from kdns.cluster.model import IPAddress, Service, ServicePort


@dataclass(frozen=True, slots=True)
class ReadyEndpoint:
    """A ready address of a Service, merged over its EndpointSlices.

    `label` is the endpoint's hostname when set, else its pod name where the slice keeps
    one (`endpoint_pod_names`), else the system-assigned one: the address with dashes
    (spec R7, CoreDNS's form: `10-244-1-5`, `fd00--1`).
    """

    label: str
    address: IPAddress
    ports: tuple[ServicePort, ...]  # the EndpointSlice's ports (resolved targetPorts)


@dataclass(frozen=True, slots=True)
class ReverseName:
    """Who owns an address: a Service's ClusterIP (`label` None) or an endpoint's label."""

    namespace: str
    service: str
    label: str | None = None


class ClusterView(Protocol):
    @property
    def synced(self) -> bool:
        """False until every watched kind has been listed once: misses are SERVFAIL then."""

    @property
    def serial(self) -> int:
        """SOA serial: Unix time of the last change to the data."""

    def namespace_exists(self, namespace: str) -> bool:
        """A Namespace object exists, or some object lives in that namespace."""

    def has_services(self, namespace: str | None = None) -> bool:
        """Any Service at all (namespace None), or any in `namespace`."""

    def service(self, namespace: str, name: str) -> Service | None:
        """The Service, by lower-case namespace and name."""

    def endpoints(self, namespace: str, service: str) -> Sequence[ReadyEndpoint]:
        """Ready endpoints of a Service over all its slices; each (label, address) once."""

    def reverse(self, address: IPAddress) -> Sequence[ReverseName]:
        """Owners of an address: the ClusterIP's Service first, else each Service whose
        ready endpoints hold it."""

    def reverse_prefix_exists(self, network: IPv4Network | IPv6Network) -> bool:
        """Some ClusterIP or ready endpoint address lies in `network` (for the empty
        non-terminals of the reverse trees, RFC 8020). Prefix lengths are multiples of 8
        (IPv4) or 4 (IPv6)."""

    def pod_exists(self, namespace: str, address: IPAddress) -> bool:
        """A running Pod in `namespace` has `address` (for `--pods verified`)."""

    def pod_namespace(self, address: IPAddress) -> str | None:
        """The namespace of a running Pod that has `address` (for `autopath`); when several
        Pods share it, one of them. None when no Pod has it."""

    def listed_namespaces(self) -> Collection[str]:
        """The names of the Namespace objects held (as the API lists them; with
        `namespace_labels`, the ones whose labels match)."""
