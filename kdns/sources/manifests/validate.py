"""The API server's checks on the fields DNS uses, so a manifest the API server would refuse
is refused here too, naming the field and the fix, instead of being served oddly.

Names: a Namespace, a Service (the relaxed rule of Kubernetes 1.34+; older servers also
want a leading letter) and a StatefulSet (its name becomes its pods' hostnames) are
DNS-1123 labels; other objects' names are DNS-1123 subdomains; `metadata.namespace`, pod
`hostname` and `subdomain`, endpoint hostnames and Service/EndpointSlice port names are
labels; container port names and named target ports are IANA service names;
`externalName` is a DNS name. All lower-case (RFC 1123, as the API server: it refuses
upper case rather than folding it). Counts are int32, ports 1-65535.

Only values of the right type are checked here; a value of the wrong type is the
converter's error (`kdns.sources.convert`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kdns.sources.convert import ConversionError, is_mapping, shown

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
PORT_NAME_MAX = 15
INT32_MAX = 2**31 - 1
ENDPOINTS_PER_SLICE_MAX = 1000  # the EndpointSlice API's limit
ADDRESSES_PER_ENDPOINT_MAX = 100  # likewise
IP_FAMILIES_MAX = 2  # spec.ipFamilies and spec.clusterIPs: one per family

_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_PORT_NAME = re.compile(r"[a-z0-9](?:-?[a-z0-9])*")
_label_match = _LABEL.fullmatch
_subdomain_match = _SUBDOMAIN.fullmatch

LABEL_RULE = (
    "a DNS-1123 label: at most 63 characters, lower-case letters, digits and '-', "
    "starting and ending with a letter or digit"
)
SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: at most 253 characters, labels of lower-case letters, digits and "
    "'-' joined by '.', each starting and ending with a letter or digit"
)
DNS_NAME_RULE = (
    "labels of at most 63 lower-case letters, digits and '-', each starting and ending with "
    "a letter or digit, joined by '.', at most 253 characters in all (RFC 1123)"
)
PORT_NAME_RULE = (
    "an IANA service name: at most 15 characters, lower-case letters, digits and single '-' "
    "between them, with at least one letter"
)

NAMESPACE_NAME_KINDS = frozenset({"Namespace", "Service", "StatefulSet"})


def _suggestion(value: str, *, dots: bool, limit: int) -> str:
    """`value` turned into a name that passes, for the fix text ("" when none is near)."""
    allowed = "abcdefghijklmnopqrstuvwxyz0123456789-" + ("." if dots else "")
    fixed = "".join(c if c in allowed else "-" for c in value.lower()[: limit * 2])
    fixed = re.sub(r"-{2,}", "-", fixed)[:limit].strip("-.")
    return fixed


def _fix(value: str, *, dots: bool, limit: int) -> str:
    near = _suggestion(value, dots=dots, limit=limit)
    return f"rename it, e.g. {shown(near)}" if near and near != value else "rename it"


def is_label(value: str) -> bool:
    """Whether `value` is a DNS-1123 label."""
    return len(value) <= LABEL_MAX and _LABEL.fullmatch(value) is not None


def is_subdomain(value: str) -> bool:
    """Whether `value` is a DNS-1123 subdomain."""
    return len(value) <= SUBDOMAIN_MAX and _SUBDOMAIN.fullmatch(value) is not None


def label(value: Any, *, field: str, what: str = "name") -> None:
    """`value`, when a string, must be a DNS-1123 label."""
    if value.__class__ is str and len(value) <= LABEL_MAX and _label_match(value):
        return  # the common case first: this runs for every name of every object
    if isinstance(value, str) and value:
        raise ConversionError(
            field,
            f"{shown(value)} is not a valid {what}: {LABEL_RULE}",
            _fix(value, dots=False, limit=LABEL_MAX),
        )


def known_label(value: Any, known: set[str], *, field: str, what: str) -> None:
    """As `label`, for strings that repeat (namespaces, port names, hostnames): the ones
    found valid are kept in `known` and not matched again."""
    if value.__class__ is str and value in known:
        return
    label(value, field=field, what=what)
    if value.__class__ is str:
        known.add(value)


def subdomain(value: Any, *, field: str, what: str = "name") -> None:
    """`value`, when a string, must be a DNS-1123 subdomain."""
    if value.__class__ is str and len(value) <= SUBDOMAIN_MAX and _subdomain_match(value):
        return
    if isinstance(value, str) and value:
        raise ConversionError(
            field,
            f"{shown(value)} is not a valid {what}: {SUBDOMAIN_RULE}",
            _fix(value, dots=True, limit=SUBDOMAIN_MAX),
        )


def dns_name(value: Any, *, field: str) -> None:
    """`value`, when a string, must be a DNS name the API server accepts as a CNAME
    target: a DNS-1123 subdomain, optionally with a trailing dot, and (for the wire
    format, RFC 1035 section 2.3.4) no label longer than 63 characters."""
    if not isinstance(value, str) or not value:
        return
    name = value.removesuffix(".")
    if is_subdomain(name) and all(len(part) <= LABEL_MAX for part in name.split(".")):
        return
    near = ".".join(
        _suggestion(part, dots=False, limit=LABEL_MAX) for part in name.split(".")[:127]
    ).strip(".")
    raise ConversionError(
        field,
        f"{shown(value)} is not a valid DNS name: {DNS_NAME_RULE}",
        f"use a DNS name such as {shown(near) if near and near != value else 'db.example.com'}",
    )


def port_name(value: Any, *, field: str) -> None:
    """`value`, when a non-empty string, must be an IANA service name (container ports,
    named target ports)."""
    if not isinstance(value, str) or not value:
        return
    if (
        len(value) <= PORT_NAME_MAX
        and _PORT_NAME.fullmatch(value) is not None
        and any(c.isalpha() for c in value)
    ):
        return
    raise ConversionError(
        field,
        f"{shown(value)} is not a valid port name: {PORT_NAME_RULE}",
        _fix(value, dots=False, limit=PORT_NAME_MAX),
    )


def count(value: Any, *, field: str, default: int) -> int:
    """A count the API server keeps as an int32 of at least 0 (`replicas`, `parallelism`);
    missing or null gives `default`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        raise ConversionError(
            field,
            f"{shown(value)} is not a count (an integer from 0 to {INT32_MAX})",
            "use an integer 0 or more",
        )
    return value


def metadata(kind: str, obj: Mapping[str, Any], *, known: set[str]) -> None:
    """The object's name and namespace, by the rule of its kind (`known`: see
    `known_label`). Runs for every object: the valid case is tested inline."""
    meta = obj.get("metadata")
    if not is_mapping(meta):
        return
    name = meta.get("name")
    if kind in NAMESPACE_NAME_KINDS:
        if not (name.__class__ is str and len(name) <= LABEL_MAX and _label_match(name)):
            label(name, field="metadata.name", what=f"{kind} name")
    elif not (name.__class__ is str and len(name) <= SUBDOMAIN_MAX and _subdomain_match(name)):
        subdomain(name, field="metadata.name", what=f"{kind} name")
    if kind != "Namespace":
        namespace = meta.get("namespace")
        if namespace is not None and (namespace.__class__ is not str or namespace not in known):
            known_label(namespace, known, field="metadata.namespace", what="namespace name")


def at_most(items: Any, limit: int, *, field: str, what: str) -> None:
    """A list the API server caps at `limit` entries."""
    if isinstance(items, list) and len(items) > limit:
        raise ConversionError(
            field, f"has {len(items)} {what}, more than the {limit} the API allows", "split it"
        )


def endpoint_hostnames(kind: str, obj: Mapping[str, Any], *, known: set[str]) -> None:
    """Endpoint hostnames and port names of an EndpointSlice or an Endpoints object
    (walked after conversion, so the shapes are known to be right; `known`: see
    `known_label`)."""
    if kind == "EndpointSlice":
        _endpoints(obj.get("endpoints"), "endpoints", known, addresses="addresses")
        _port_names(obj.get("ports"), "ports", known)
        return
    for s, subset in enumerate(obj.get("subsets") or ()):
        for key in ("addresses", "notReadyAddresses"):
            _endpoints(subset.get(key), f"subsets[{s}].{key}", known, addresses=None)
        _port_names(subset.get("ports"), f"subsets[{s}].ports", known)


def _endpoints(entries: Any, field: str, known: set[str], *, addresses: str | None) -> None:
    if not entries:
        return
    if addresses is not None:
        at_most(entries, ENDPOINTS_PER_SLICE_MAX, field=field, what="endpoints")
    for i, entry in enumerate(entries):  # per endpoint: the checks inline, errors apart
        hostname = entry.get("hostname")
        if hostname is not None and (hostname.__class__ is not str or hostname not in known):
            known_label(hostname, known, field=f"{field}[{i}].hostname", what="hostname")
        if addresses is not None:
            found = entry.get(addresses)
            if found.__class__ is list and len(found) > ADDRESSES_PER_ENDPOINT_MAX:
                at_most(
                    found,
                    ADDRESSES_PER_ENDPOINT_MAX,
                    field=f"{field}[{i}].{addresses}",
                    what="addresses",
                )


def _port_names(ports: Any, field: str, known: set[str]) -> None:
    for i, port in enumerate(ports or ()):
        if is_mapping(port) and port.get("name"):
            known_label(port.get("name"), known, field=f"{field}[{i}].name", what="port name")
