"""A `ClusterView` that shows only what the kubernetes plugin's options expose.

The sources already keep out what the API can filter (`labels`, `namespace_labels` on the
Namespace watch, `noendpoints`); this view applies what can only be decided when asked,
as CoreDNS does at query time:

* `namespaces NS...`: objects of other namespaces do not exist: their names, pod records
  and PTR records are NXDOMAIN (CoreDNS `configuredNamespace`).
* `namespace_labels SELECTOR`: a namespace exists only while a Namespace object of that
  name is held; the source lists only the ones whose labels match, so the objects of the
  others are hidden like those of an unlisted namespace (CoreDNS `namespaceExposed`).
  kdns hides their PTR records too (CoreDNS checks only `namespaces` there): a PTR
  would point at a name that is NXDOMAIN.
* `ignore empty_service`: a ClusterIP-like Service without ready endpoints does not exist,
  so a client's search walk goes on to the next domain (headless and ExternalName
  Services are unaffected, as in CoreDNS). Its ClusterIP's PTR goes with it (kdns: the
  PTR would name an NXDOMAIN).

The empty non-terminals of the reverse trees (`10.in-addr.arpa.` and the like) are counted
over every address held, hidden or not: the prefixes, never the names, can show.
`answer()` stays as it is; it reads this view like any other. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from ipaddress import IPv4Network, IPv6Network

from kdns.cluster.model import IPAddress, Service
from kdns.dns.view import ClusterView, ReadyEndpoint, ReverseName


class FilteredView:
    """`view` as the options expose it (see the module docstring)."""

    def __init__(
        self,
        view: ClusterView,
        *,
        namespaces: Collection[str] = (),
        listed_only: bool = False,
        ignore_empty_service: bool = False,
    ) -> None:
        self.view = view
        self.namespaces = frozenset(namespaces)  # () = every namespace
        self.listed_only = listed_only  # namespace_labels: only listed Namespace objects
        self.ignore_empty_service = ignore_empty_service

    def exposed(self, namespace: str) -> bool:
        if self.namespaces and namespace not in self.namespaces:
            return False
        return not self.listed_only or namespace in self.view.listed_namespaces()

    # ---- ClusterView -------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.view.synced

    @property
    def serial(self) -> int:
        return self.view.serial

    def namespace_exists(self, namespace: str) -> bool:
        return self.exposed(namespace) and self.view.namespace_exists(namespace)

    def has_services(self, namespace: str | None = None) -> bool:
        if namespace is not None:
            return self.exposed(namespace) and self.view.has_services(namespace)
        if not self.namespaces and not self.listed_only:
            return self.view.has_services()
        candidates = self.namespaces or self.view.listed_namespaces()
        return any(self.exposed(ns) and self.view.has_services(ns) for ns in candidates)

    def service(self, namespace: str, name: str) -> Service | None:
        if not self.exposed(namespace):
            return None
        service = self.view.service(namespace, name)
        if (
            service is not None
            and self.ignore_empty_service
            and not service.headless
            and service.external_name is None
            and not self.view.endpoints(namespace, name)
        ):
            return None
        return service

    def endpoints(self, namespace: str, service: str) -> Sequence[ReadyEndpoint]:
        return self.view.endpoints(namespace, service) if self.exposed(namespace) else ()

    def reverse(self, address: IPAddress) -> Sequence[ReverseName]:
        return tuple(
            owner
            for owner in self.view.reverse(address)
            if self.service(owner.namespace, owner.service) is not None
        )

    def reverse_prefix_exists(self, network: IPv4Network | IPv6Network) -> bool:
        if network.prefixlen == network.max_prefixlen:
            return bool(self.reverse(network.network_address))
        return self.view.reverse_prefix_exists(network)

    def pod_exists(self, namespace: str, address: IPAddress) -> bool:
        return self.exposed(namespace) and self.view.pod_exists(namespace, address)

    def pod_namespace(self, address: IPAddress) -> str | None:
        # Who asks is not filtered: autopath finds any pod's namespace (CoreDNS podWithIP).
        return self.view.pod_namespace(address)

    def listed_namespaces(self) -> Collection[str]:
        return self.view.listed_namespaces()


__all__ = ["FilteredView"]
