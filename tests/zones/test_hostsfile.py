"""Reading /etc/hosts-style text as CoreDNS's hostsfile.go reads it (after Go's net
package), and the reverse names it answers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from kdns.zones.hostsfile import address_of_reverse, parse_hosts

TEXT = """\
# comment line
127.0.0.1       localhost localhost.localdomain
192.0.2.10      DB.example.org db.example.org. db   # trailing comment, repeated name
::ffff:192.0.2.11   mapped.example.org
fe80::1%eth0    linklocal.example.org
2001:db8::1     v6.example.org
192.0.2.40      *.apps.example.org
192.0.2.50
bogus           nope.example.org
192.0.2.60      café.example.org a\\.b.example.org
"""


def test_lines_fields_and_addresses() -> None:
    data = parse_hosts(TEXT, zones=["example.org."])
    assert dict(data.v4) == {
        "db.example.org.": (IPv4Address("192.0.2.10"),),
        "mapped.example.org.": (IPv4Address("192.0.2.11"),),  # IPv4-mapped counts as IPv4
    }
    assert dict(data.v6) == {
        "linklocal.example.org.": (IPv6Address("fe80::1"),),  # the zone id dropped
        "v6.example.org.": (IPv6Address("2001:db8::1"),),
    }
    assert dict(data.wild4) == {"*.apps.example.org.": (IPv4Address("192.0.2.40"),)}
    assert data.names[IPv4Address("192.0.2.10")] == ("db.example.org.",)
    assert IPv4Address("192.0.2.40") not in data.names  # wildcards make no PTR
    assert len(data) == 2 + 2 + 1 + 4  # CoreDNS's coredns_hosts_entries count


def test_every_zone_and_no_reverse() -> None:
    data = parse_hosts(TEXT, zones=["."], reverse=False)
    assert data.addresses("localhost.localdomain.", v6=False) == (IPv4Address("127.0.0.1"),)
    assert data.addresses("db.", v6=False) == (IPv4Address("192.0.2.10"),)
    assert dict(data.names) == {}


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        ("x.apps.example.org.", (IPv4Address("192.0.2.40"),)),
        ("apps.example.org.", ()),
        ("y.x.apps.example.org.", ()),
    ],
)
def test_wildcards_match_one_label(qname: str, expected: tuple[IPv4Address, ...]) -> None:
    assert parse_hosts(TEXT, zones=["."]).addresses(qname, v6=False) == expected


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("10.2.0.192.in-addr.arpa.", "192.0.2.10"),
        ("1." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa.", "2001:db8::1"),
        ("2.0.192.in-addr.arpa.", None),  # not a whole address
        ("300.2.0.192.in-addr.arpa.", None),
        ("example.org.", None),
    ],
)
def test_address_of_reverse(name: str, address: str | None) -> None:
    found = address_of_reverse(name)
    assert (str(found) if found is not None else None) == address
