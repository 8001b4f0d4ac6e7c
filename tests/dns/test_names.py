"""The name grammar: which shape a lower-cased name has (docs/rules.md owner-name forms)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from kdns.dns.names import (
    IN_ADDR_ARPA,
    IP6_ARPA,
    Apex,
    DnsRoot,
    DnsVersion,
    EndpointName,
    Name,
    NameServer,
    Nowhere,
    PodName,
    PodNamespace,
    PodRoot,
    PortName,
    ProtocolName,
    ReverseAddress,
    ReversePrefix,
    ServiceName,
    ServiceNamespace,
    ServiceRoot,
    absolute,
    parse_name,
    pod_address,
    served_zone,
)

Z = "cluster.local."


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        pytest.param("cluster.local.", Apex(Z), id="D7 apex"),
        pytest.param("cluster.local", Apex(Z), id="D7 apex without dot"),
        pytest.param("dns-version.cluster.local.", DnsVersion(Z), id="R2 dns-version"),
        pytest.param("dns.cluster.local.", DnsRoot(Z), id="D3 dns"),
        pytest.param("ns.dns.cluster.local.", NameServer(Z), id="D7 ns.dns"),
        pytest.param("svc.cluster.local.", ServiceRoot(Z), id="D3 svc"),
        pytest.param("ns1.svc.cluster.local.", ServiceNamespace(Z, "ns1"), id="D3 ns.svc"),
        pytest.param("s.ns1.svc.cluster.local.", ServiceName(Z, "ns1", "s"), id="R8 service"),
        pytest.param(
            "web-0.s.ns1.svc.cluster.local.",
            EndpointName(Z, "ns1", "s", "web-0"),
            id="R20 endpoint",
        ),
        pytest.param(
            "_tcp.s.ns1.svc.cluster.local.", ProtocolName(Z, "ns1", "s", "tcp"), id="D3 _proto"
        ),
        pytest.param(
            "_http._tcp.s.ns1.svc.cluster.local.",
            PortName(Z, "ns1", "s", "http", "tcp"),
            id="R10 SRV name",
        ),
        pytest.param(
            "_._tcp.s.ns1.svc.cluster.local.", PortName(Z, "ns1", "s", "", "tcp"), id="R12 empty"
        ),
        pytest.param("http._tcp.s.ns1.svc.cluster.local.", Nowhere(Z), id="R10 no underscore"),
        pytest.param("_a._b._c.s.ns1.svc.cluster.local.", Nowhere(Z), id="D1 too deep under svc"),
        pytest.param("pod.cluster.local.", PodRoot(Z), id="P1 pod"),
        pytest.param("ns1.pod.cluster.local.", PodNamespace(Z, "ns1"), id="P1 ns.pod"),
        pytest.param(
            "1-2-3-4.ns1.pod.cluster.local.",
            PodName(Z, "ns1", IPv4Address("1.2.3.4")),
            id="P1 pod v4",
        ),
        pytest.param(
            "fd00--1.ns1.pod.cluster.local.",
            PodName(Z, "ns1", IPv6Address("fd00::1")),
            id="P1 pod v6",
        ),
        pytest.param("x.foo.ns1.pod.cluster.local.", Nowhere(Z), id="P1 too deep under pod"),
        pytest.param("foo.ns1.pod.cluster.local.", PodName(Z, "ns1", None), id="P1 not an IP"),
        pytest.param("x.dns.cluster.local.", Nowhere(Z), id="D1 other under dns"),
        pytest.param("a.ns.dns.cluster.local.", Nowhere(Z), id="D1 below ns.dns"),
        pytest.param("foo.cluster.local.", Nowhere(Z), id="D1 unknown top label"),
        pytest.param("a.dns-version.cluster.local.", Nowhere(Z), id="D1 below dns-version"),
        pytest.param("a.b.cluster.local.", Nowhere(Z), id="E7 ns.zone"),
        pytest.param("s..svc.cluster.local.", Nowhere(Z), id="D1 empty label"),
        pytest.param("example.com.", None, id="D6 outside"),
        pytest.param("xcluster.local.", None, id="D6 suffix without a label boundary"),
        pytest.param(".", None, id="D6 root"),
    ],
)
def test_cluster_zone_shapes(qname: str, expected: Name | None) -> None:
    assert parse_name(qname, zone="cluster.local") == expected


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        pytest.param("in-addr.arpa.", Apex(IN_ADDR_ARPA), id="D7 in-addr apex"),
        pytest.param("ip6.arpa.", Apex(IP6_ARPA), id="D7 ip6 apex"),
        pytest.param(
            "4.3.2.1.in-addr.arpa.",
            ReverseAddress(IN_ADDR_ARPA, IPv4Address("1.2.3.4")),
            id="R14 full v4",
        ),
        pytest.param(
            "0.0.0.0.in-addr.arpa.",
            ReverseAddress(IN_ADDR_ARPA, IPv4Address("0.0.0.0")),
            id="R14 zeros are fine",
        ),
        pytest.param(
            "255.255.255.255.in-addr.arpa.",
            ReverseAddress(IN_ADDR_ARPA, IPv4Address("255.255.255.255")),
            id="R14 max octets",
        ),
        pytest.param(
            "10.in-addr.arpa.",
            ReversePrefix(IN_ADDR_ARPA, IPv4Network("10.0.0.0/8")),
            id="D3 /8",
        ),
        pytest.param(
            "0.96.10.in-addr.arpa.",
            ReversePrefix(IN_ADDR_ARPA, IPv4Network("10.96.0.0/24")),
            id="D3 /24",
        ),
        pytest.param("010.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 leading zero"),
        pytest.param("00.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 double zero"),
        pytest.param("256.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 256"),
        pytest.param("1000.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 four digits"),
        pytest.param("-1.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 negative"),
        pytest.param("\u0661.0.0.10.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 non-ASCII digit"),
        pytest.param("1.2.3.4.5.in-addr.arpa.", Nowhere(IN_ADDR_ARPA), id="D1 five octets"),
        pytest.param(
            "1." + "0." * 31 + "ip6.arpa.",
            ReverseAddress(IP6_ARPA, IPv6Address("::1")),
            id="R15 full v6",
        ),
        pytest.param(
            "d.f.ip6.arpa.",
            ReversePrefix(IP6_ARPA, IPv6Network("fd00::/8")),
            id="D3 v6 /8",
        ),
        pytest.param(
            "8.e.f.ip6.arpa.",
            ReversePrefix(IP6_ARPA, IPv6Network("fe80::/12")),
            id="D3 v6 /12",
        ),
        pytest.param("g.ip6.arpa.", Nowhere(IP6_ARPA), id="D1 non-hex"),
        pytest.param("00.ip6.arpa.", Nowhere(IP6_ARPA), id="D1 two chars"),
        pytest.param("0." * 33 + "ip6.arpa.", Nowhere(IP6_ARPA), id="D1 33 nibbles"),
        pytest.param("arpa.", None, id="D6 arpa"),
    ],
)
def test_reverse_shapes(qname: str, expected: Name | None) -> None:
    assert parse_name(qname, zone="cluster.local.") == expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("10-244-0-5", IPv4Address("10.244.0.5")),
        ("fd00--1", IPv6Address("fd00::1")),
        ("fd00--0", IPv6Address("fd00::")),
        ("--1", IPv6Address("::1")),
        ("1-2-3-4-5-6-7-8", IPv6Address("1:2:3:4:5:6:7:8")),
        ("10-244-0-256", None),
        ("010-244-0-5", None),  # leading zeros are not an address
        ("10-244-0", None),  # two dashes: read as IPv6, which it is not
        ("1--2-3-4", IPv6Address("1::2:3:4")),  # `--` means IPv6 even with 3 dashes
        ("foo", None),
        ("", None),
    ],
)
def test_pod_address(label: str, expected: object) -> None:
    """P1: CoreDNS's rule, 3 dashes and no `--` is IPv4, anything else IPv6."""
    assert pod_address(label) == expected


def test_served_zone_prefers_the_cluster_zone() -> None:
    assert served_zone("10.in-addr.arpa.", zone="10.in-addr.arpa") == "10.in-addr.arpa."
    assert served_zone("9.in-addr.arpa.", zone="10.in-addr.arpa") == IN_ADDR_ARPA


def test_absolute() -> None:
    assert absolute("a.b") == "a.b."
    assert absolute("a.b.") == "a.b."
    assert absolute("") == "."


def test_reverse_names_round_trip() -> None:
    """R14/R15: the parser reads back the name of every address it is given."""
    for text in ("10.96.0.10", "192.168.255.1", "fd00:10::3", "2001:db8::ff00:42:8329"):
        address = IPv6Address(text) if ":" in text else IPv4Address(text)
        parsed = parse_name(address.reverse_pointer + ".", zone=Z)
        assert isinstance(parsed, ReverseAddress)
        assert parsed.address == address
