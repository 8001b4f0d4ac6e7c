"""`kubernetes`: authoritative answers for the cluster zone and the reverse trees.

The answers themselves come from `kdns.dns.answer.answer()` over the index (pure, tested
from tables); this plugin decides which names are its own (its zones), when a miss is passed
to the next plugin (`fallthrough`), and chases an ExternalName target that lies outside the
served zones through the rest of the chain (docs/rules.md R27), as CoreDNS's plugin does
through its upstream. A miss that falls through and then finds no upstream answering is
answered with the plugin's own NXDOMAIN, not SERVFAIL (a kdns choice: CoreDNS answers
SERVFAIL, which makes clients retry a name that is negative anyway).

Several forward zones (`kubernetes cluster.local example.org`) serve the same cluster under
each name; the first is the primary one, used in PTR targets. A reverse zone narrower than
`in-addr.arpa.` (e.g. `10.in-addr.arpa.`) limits which reverse names are answered here; the
negative answers still carry the SOA of `in-addr.arpa.`/`ip6.arpa.`.

Replies are cacheable by the fast path while the index is synced: the fast path drops them
precisely when the data they show changes. A reply that chased an ExternalName target depends
on an upstream and is not kept.

The options that choose what is served are applied twice over: the source keeps out what
the API can filter (`labels`, `namespace_labels`, `noendpoints`, and keeps pod names for
`endpoint_pod_names`), and `kdns.dns.filtered.FilteredView` hides the rest when asked
(`namespaces`, the namespaces `namespace_labels` left out, `ignore empty_service`).

`search_path()` is what `autopath @kubernetes` asks for (CoreDNS's AutoPath): the search
path of the pod that sent the query, found by its address (`pods verified` keeps the pods).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from ipaddress import IPv6Address, ip_address
from typing import Final

from kdns.cluster.model import IPAddress
from kdns.config.model import KubernetesConfig
from kdns.config.settings import PodMode
from kdns.dns.answer import AnswerConfig, answer, named_port, service_below
from kdns.dns.filtered import FilteredView
from kdns.dns.names import pod_address
from kdns.dns.records import Question, Rcode, Record, Reply, RType
from kdns.dns.view import ClusterView
from kdns.dns.wire import FormatError, build_query, decode_query, decode_reply
from kdns.serve.chain import Dep, Plugin, Request, Response, Result, then

log = logging.getLogger(__name__)

_REVERSE: Final = ("in-addr.arpa.", "ip6.arpa.")


def in_zone(lname: str, zone: str) -> bool:
    return zone == "." or lname == zone or lname.endswith("." + zone)


def longest_zone(lname: str, zones: tuple[str, ...]) -> str | None:
    best: str | None = None
    for zone in zones:
        if in_zone(lname, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


class KubernetesPlugin(Plugin):
    name = "kubernetes"

    def __init__(
        self,
        config: KubernetesConfig,
        view: ClusterView,
        *,
        self_addresses: tuple[IPAddress, ...] = (),
    ) -> None:
        super().__init__()
        self.config = config
        if config.namespaces or config.namespace_labels or config.ignore_empty_service:
            view = FilteredView(
                view,
                namespaces=config.namespaces,
                listed_only=config.namespace_labels is not None,
                ignore_empty_service=config.ignore_empty_service,
            )
        self.view = view
        self.zones = config.zones
        # One C-level test for "in none of the zones" (most forwarded names): the zones
        # themselves, and the suffixes of names below them.
        self._zone_set = frozenset(config.zones)
        self._below = tuple("." + z for z in config.zones) if "." not in config.zones else ("",)
        forward = [z for z in config.zones if not z.endswith(_REVERSE)] or ["cluster.local."]
        primary = forward[0]
        self.cluster_zones = tuple(forward)
        self._answer_configs = {
            zone: AnswerConfig(
                zone=zone,
                ttl=config.ttl,
                pods=config.pods,
                self_addresses=self_addresses,
                cluster_networks=config.final_networks,
            )
            for zone in forward
        }
        self._primary = self._answer_configs[primary]
        self._absent: dict[tuple[str, ...], Callable[[bytes], bool]] = {}

    def serve(self, request: Request) -> Result:
        lname = request.question.lname
        if lname not in self._zone_set and not lname.endswith(self._below):
            return self.next.serve(request)  # (as longest_zone's None, without the loop)
        zone = longest_zone(lname, self.zones)
        if zone is None:
            return self.next.serve(request)
        config = self._answer_configs.get(zone, self._primary)
        if zone.endswith(_REVERSE):
            config = self._primary
        reply = answer(request.question, self.view, config=config)
        if self._falls_through(lname, reply):
            if reply.rcode != Rcode.NXDOMAIN:
                return self.next.serve(request)
            # When the rest of the chain fails (no upstream answered), our own NXDOMAIN is
            # the better answer than SERVFAIL: clients would retry a name that is negative.
            return then(self.next.serve(request), lambda got: _own_if_failed(got, reply))
        if reply.chase is not None:
            return self._chase(request, reply)
        cacheable = reply.cacheable and self.view.synced
        siblings = None
        if cacheable and reply.rcode == Rcode.NXDOMAIN:
            siblings = self._siblings(lname, config)
        return Response(
            reply,
            plugin=self.name,
            cacheable=cacheable,
            dep=_dependency(lname, config.zone, reply),
            siblings=siblings,
        )

    def search_path(self, request: Request, host: Sequence[str]) -> tuple[str, ...] | None:
        """The search path of the pod that sent `request`, as its resolv.conf has it
        (kubelet: `<ns>.svc.<zone> svc.<zone> <zone>`, then the node's `host` domains),
        ending with "" (the name itself); None when no autopath applies: the name is
        outside this plugin's zones, pods are not verified, or the client is no known pod.
        CoreDNS's AutoPath of the kubernetes plugin."""
        zone = longest_zone(request.question.lname, self.zones)
        if zone is None or self.config.pods is not PodMode.VERIFIED or request.client is None:
            return None
        try:
            address = ip_address(request.client[0].split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 client
        namespace = self.view.pod_namespace(address)
        if namespace is None:
            return None
        svc = "svc." if zone == "." else f"svc.{zone}"
        return (f"{namespace}.{svc}", svc, zone, *host, "")

    def _siblings(self, lname: str, config: AnswerConfig) -> Callable[[bytes], bool] | None:
        """For an NXDOMAIN: which sibling names (another first label) share the reply. Every
        NXDOMAIN of the zone holds only its SOA, so the reply holds for every sibling that
        does not exist either, by the test `answer()` applies to its shape (the grammar of
        `kdns.dns.names.parse_name`):
        * `<x>.<zone>`: `x` is none of the names the zone has (and not `hostmaster`, which
          the SOA names: its reply compresses differently);
        * `<x>.svc.<zone>`: no Service in namespace `x` (D3);
        * `<x>.<ns>.svc.<zone>`: no Service `x` in `ns`;
        * `<x>.<svc>.<ns>.svc.<zone>`: no endpoint labelled `x` (R20), or for `_x` no
          named port of protocol `x` (D3);
        * `<x>._<proto>.<svc>.<ns>.svc.<zone>`: `x` is no `_<port>` of a named port of that
          protocol (R10, R22);
        * `<x>.pod.<zone>` and `<x>.<ns>.pod.<zone>`: no such namespace, or no pod address
          `x` as the `pods` mode reads it (P1);
        * `<x>.dns.<zone>`: `x` is not `ns`;
        * every deeper or other name: none exists, so every plain `x`.
        These are the search-path misses of ndots:5 too (`www.example.com.<ns>.svc.<zone>`).
        Labels that are not plain (`[a-z0-9_-]`) are left to the slow path. None for names
        with escapes, and when one of our zones, or a zone misses fall through in, lies at or
        below the parent (it answers some siblings)."""
        zone = config.zone
        labels = lname[: -len(zone) - 1].split(".") if lname.endswith("." + zone) else []
        n = len(labels)
        if "\\" in lname or not n:
            return None
        parent = lname.split(".", 1)[1]
        below = "." + parent
        if any(z.endswith(below) for z in self.zones):
            return None
        if self.config.fallthrough and any(z.endswith(below) for z in self.config.fallthrough):
            return None
        top = labels[-1]
        key: tuple[str, ...]
        if n == 1:
            key = ("zone",)
        elif top == "svc" and n <= 4:
            key = ("svc", *labels[1:-1])  # (), (ns,) or (svc, ns)
        elif top == "svc" and n == 5 and labels[1].startswith("_"):
            key = ("port", labels[1][1:], labels[2], labels[3])  # (proto, svc, ns)
        elif top == "pod" and n <= 3:
            key = ("pod", *labels[1:-1])  # () or (ns,)
        elif top == "dns" and n == 2:
            key = ("dns",)
        else:
            key = ("nowhere",)
        absent = self._absent.get(key)
        if absent is None:
            if len(self._absent) >= _ABSENT_CACHE:
                self._absent.clear()
            absent = self._absent[key] = self._absent_test(key, config.pods)
        return absent

    def _absent_test(self, key: tuple[str, ...], pods: PodMode) -> Callable[[bytes], bool]:
        """The test of one `_siblings` shape."""
        match key:
            case ("zone",):
                return _not_in_zone
            case ("svc",):
                return _no_namespace(self.view)
            case ("svc", namespace):
                return _no_service_in(self.view, namespace)
            case ("svc", service, namespace):
                return _nothing_below(self.view, namespace, service)
            case ("pod",):
                return _no_pod_namespace(self.view, pods)
            case ("pod", namespace):
                return _no_pod_in(self.view, namespace, pods)
            case ("dns",):
                return _not_ns
            case ("port", protocol, service, namespace):
                return _no_port_of(self.view, namespace, service, protocol)
        return _plain

    def _falls_through(self, lname: str, reply: Reply) -> bool:
        fallthrough = self.config.fallthrough
        if fallthrough is None:
            return False
        if reply.rcode == Rcode.NXDOMAIN or (reply.rcode == Rcode.SERVFAIL and reply.fallthrough):
            if lname.endswith(_REVERSE) and not reply.fallthrough:
                return False  # a reverse name inside the cluster's own networks: final
            return not fallthrough or any(in_zone(lname, z) for z in fallthrough)
        return False

    def _chase(self, request: Request, reply: Reply) -> Result:
        """Resolve an ExternalName target outside our zones through the rest of the chain
        and append its records after the CNAME; on failure the CNAME goes alone."""
        assert reply.chase is not None
        target = reply.chase
        qtype = request.question.qtype
        probe = build_query(target, qtype, qid=request.query.id)
        sub = Request(
            data=probe,
            query=decode_query(probe),
            tcp=False,
            family=request.family,
            max_size=65535,
            zone=request.zone,
            server=request.server,
            client=request.client,
        )
        sub.question = Question(target, qtype)
        done = replace(reply, chase=None)

        def append(found: Response) -> Response:
            extra: tuple[Record, ...] = ()
            if found.reply is not None:
                if found.reply.rcode == Rcode.NOERROR:
                    extra = found.reply.answer
            elif found.wire is not None:
                try:
                    decoded = decode_reply(found.wire)
                except FormatError as exc:
                    log.warning("ExternalName target %s: unusable reply: %s", target, exc)
                else:
                    if decoded.rcode == Rcode.NOERROR:
                        extra = decoded.answer
            return Response(replace(done, answer=done.answer + extra), plugin=self.name)

        return then(self.next.serve(sub), append)


_ABSENT_CACHE: Final = 1024  # sibling tests kept (one per namespace or Service; they hold no data)
_PLAIN_LABEL: Final = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
# The names directly below a cluster zone (`parse_name`), and the SOA's RNAME.
_ZONE_CHILDREN: Final = frozenset((b"dns-version", b"svc", b"pod", b"dns", b"hostmaster"))


def _no_service_in(view: ClusterView, namespace: str) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label names no Service in `namespace`, read live."""
    service = view.service

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False  # not plain: the slow path decides
        return service(namespace, label.decode("ascii")) is None

    return absent


def _no_namespace(view: ClusterView) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label names a namespace without Services, read live."""
    has_services = view.has_services

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False
        return not has_services(label.decode("ascii"))

    return absent


def _nothing_below(view: ClusterView, namespace: str, name: str) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label names nothing below a Service, read live, by
    `answer()`'s tests (`service_below`: nothing below a missing Service, an ExternalName
    or a headless Service without ready endpoints): `_<proto>` is a protocol name with a
    named port of that protocol below it (D3), any other label an endpoint's (R20, N6)."""

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False
        found = service_below(view, namespace, name)
        if found is None:
            return True
        text = label.decode("ascii")
        if text.startswith("_"):
            return not named_port(found[0], text[1:])
        return all(e.label != text for e in found[1])

    return absent


def _no_port_of(
    view: ClusterView, namespace: str, name: str, protocol: str
) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label `x` names nothing as `x._<protocol>.<Service>...`:
    only `_<port>` can, for a named port of that protocol (R10, R22), read live."""

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False
        if not label.startswith(b"_"):
            return True
        found = service_below(view, namespace, name)
        port = label[1:].decode("ascii")
        return found is None or not port or not named_port(found[0], protocol, port)

    return absent


def _no_pod_namespace(view: ClusterView, pods: PodMode) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label is no namespace of the pod tree, read live."""
    exists = view.namespace_exists

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False
        return pods is PodMode.DISABLED or not exists(label.decode("ascii"))

    return absent


def _no_pod_in(view: ClusterView, namespace: str, pods: PodMode) -> Callable[[bytes], bool]:
    """Whether a plain lower-case label names no pod in `namespace` under the `pods` mode
    (P1: an address spelled with dashes; `verified` also needs the pod), read live."""

    def absent(label: bytes) -> bool:
        if label.translate(None, _PLAIN_LABEL):
            return False
        if pods is PodMode.DISABLED or not view.namespace_exists(namespace):
            return True
        address = pod_address(label.decode("ascii"))
        if address is None:
            return True
        return pods is PodMode.VERIFIED and not view.pod_exists(namespace, address)

    return absent


def _not_ns(label: bytes) -> bool:
    """Below `dns.<zone>` only `ns` exists."""
    return not label.translate(None, _PLAIN_LABEL) and label != b"ns"


def _plain(label: bytes) -> bool:
    """Where no name exists at all: every plain label."""
    return not label.translate(None, _PLAIN_LABEL)


def _not_in_zone(label: bytes) -> bool:
    """Whether a plain lower-case label is none of the names below a cluster zone."""
    return not label.translate(None, _PLAIN_LABEL) and label not in _ZONE_CHILDREN


def _own_if_failed(got: Response, own: Reply) -> Response:
    if got.error is not None and got.rcode == Rcode.SERVFAIL:
        return Response(own, plugin="kubernetes")
    return got


def _dependency(lname: str, zone: str, reply: Reply) -> Dep:
    """The Service a reply shows: `(ns, svc)` for `...<svc>.<ns>.svc.<zone>` names, whose
    answers read only that Service and its slices; None (structural, dropped on every
    change) for everything else, and for CNAMEs, which read two names."""
    if not lname.endswith("." + zone) or any(r.rtype == RType.CNAME for r in reply.answer):
        return None
    labels = lname[: -len(zone) - 1].split(".")
    if len(labels) >= 3 and labels[-1] == "svc":
        return (labels[-2], labels[-3])
    return None
