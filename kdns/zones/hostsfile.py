"""/etc/hosts-style data for the `hosts` plugin: parsing, and lookups by name and address.

The format is hosts(5) as CoreDNS reads it (its hostsfile.go, after Go's net package): `#`
starts a comment; a line is `ADDRESS NAME [ALIASES...]`; lines with fewer than two fields
or an address that does not parse are skipped; an IPv6 zone (`%eth0`) is dropped and an
IPv4-mapped IPv6 address counts as IPv4. Names are lower-cased and made absolute; names
outside the plugin's zones, and names that are not plain DNS names (non-ASCII, escapes,
labels over 63 octets), are skipped. A name
whose leftmost label is `*` is a wildcard: it matches exactly one more label (never the
name itself) and makes no PTR record. An exact name wins over a wildcard.

Every name of a line gets a reverse entry for its address (unless `no_reverse`), in file
order, so a PTR query answers all of them.

Pure: no I/O here (the plugin reads the file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TypeVar

Address = IPv4Address | IPv6Address
K = TypeVar("K")
V = TypeVar("V")

_MAX_NAME = 254  # presentation length of a 255-octet wire name, with its final dot
_MAX_LABEL = 63


@dataclass(frozen=True, slots=True)
class HostsData:
    """One source of entries (the file, or the Corefile's inline lines)."""

    v4: Mapping[str, tuple[IPv4Address, ...]] = field(default_factory=dict)
    v6: Mapping[str, tuple[IPv6Address, ...]] = field(default_factory=dict)
    wild4: Mapping[str, tuple[IPv4Address, ...]] = field(default_factory=dict)
    wild6: Mapping[str, tuple[IPv6Address, ...]] = field(default_factory=dict)
    names: Mapping[Address, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        """The entries, as CoreDNS counts them (coredns_hosts_entries)."""
        tables = (self.v4, self.v6, self.wild4, self.wild6)
        return sum(len(v) for t in tables for v in t.values()) + sum(
            len(v) for v in self.names.values()
        )

    def addresses(self, lname: str, *, v6: bool) -> tuple[Address, ...]:
        exact, wild = (self.v6, self.wild6) if v6 else (self.v4, self.wild4)
        found: tuple[Address, ...] | None = exact.get(lname)
        if found is None and "." in lname[:-1]:
            found = wild.get("*." + lname.split(".", 1)[1])
        return found or ()


def parse_address(text: str) -> Address | None:
    try:
        address = ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _valid(name: str) -> bool:
    """A name kdns can write: printable ASCII without escapes, labels of 1..63 octets."""
    if len(name) > _MAX_NAME or name == "." or "\\" in name:
        return False
    if not (name.isascii() and name.isprintable()):
        return False
    return all(0 < len(label.encode()) <= _MAX_LABEL for label in name[:-1].split("."))


def _inside(name: str, zones: Sequence[str]) -> bool:
    return any(z == "." or name == z or name.endswith("." + z) for z in zones)


def parse_hosts(text: str, *, zones: Sequence[str], reverse: bool = True) -> HostsData:
    v4: dict[str, list[IPv4Address]] = {}
    v6: dict[str, list[IPv6Address]] = {}
    wild4: dict[str, list[IPv4Address]] = {}
    wild6: dict[str, list[IPv6Address]] = {}
    names: dict[Address, list[str]] = {}
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address = parse_address(fields[0])
        if address is None:
            continue
        for host in fields[1:]:
            name = host.lower() if host.endswith(".") else host.lower() + "."
            if not _valid(name) or not _inside(name, zones):
                continue
            wildcard = name.startswith("*.")
            if isinstance(address, IPv4Address):
                _add(wild4 if wildcard else v4, name, address)
            else:
                _add(wild6 if wildcard else v6, name, address)
            if reverse and not wildcard:
                _add(names, address, name)
    return HostsData(
        v4=_frozen(v4), v6=_frozen(v6), wild4=_frozen(wild4), wild6=_frozen(wild6),
        names=_frozen(names),
    )  # fmt: skip


def _add(table: dict[K, list[V]], key: K, value: V) -> None:
    found = table.setdefault(key, [])
    if value not in found:  # RFC 2181 §5: no duplicate records in an RRset
        found.append(value)


def _frozen(table: dict[K, list[V]]) -> dict[K, tuple[V, ...]]:
    return {k: tuple(v) for k, v in table.items()}


def address_of_reverse(lname: str) -> Address | None:
    """The address a full reverse name stands for (`4.3.2.1.in-addr.arpa.` -> 1.2.3.4; 32
    nibbles under ip6.arpa.), else None (CoreDNS's dnsutil.ExtractAddressFromReverse)."""
    if lname.endswith(".in-addr.arpa."):
        labels = lname[: -len(".in-addr.arpa.")].split(".")
        if len(labels) != 4:
            return None
        return parse_address(".".join(reversed(labels)))
    if lname.endswith(".ip6.arpa."):
        nibbles = lname[: -len(".ip6.arpa.")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 for n in nibbles):
            return None
        digits = "".join(reversed(nibbles))
        return parse_address(":".join(digits[i : i + 4] for i in range(0, 32, 4)))
    return None


__all__ = ["Address", "HostsData", "address_of_reverse", "parse_address", "parse_hosts"]
