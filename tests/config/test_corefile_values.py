"""Corefile values read as CoreDNS reads them: Go durations, zones, reverse CIDRs."""

from __future__ import annotations

import pytest

from kdns.config.corefile.values import (
    format_duration,
    normalize_zone,
    parse_duration,
    parse_listen,
    zones_from,
)
from kdns.config.settings import HostPort


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1.5s", -1.5),
        ("+2m", 120.0),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("100ns", 100e-9),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "'5' has no unit: write e.g. 5s"),
        ("1h30", "'1h30' has no unit: write e.g. 30s"),
        ("", "'' is not a duration: write e.g. 5s, 1m30s or 500ms"),
        ("5d", "'5d' has an unknown unit 'd': the units are ns, us, ms, s, m and h"),
        ("s", "'s' is not a duration: write e.g. 5s, 1m30s or 500ms"),
        ("5 s", "'5 s' has an unknown unit ' s': the units are ns, us, ms, s, m and h"),
        ("1.2.3s", "'1.2.3s' has no unit: write e.g. 1.2s"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (60, "1m0s"), (90, "1m30s"), (3600, "1h0m0s"), (0.5, "500ms")],
)
def test_durations_print_the_way_go_prints_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "zone"),
    [(".", "."), ("Cluster.Local", "cluster.local."), ("example.org.", "example.org."),
     ("_tcp.example.org", "_tcp.example.org.")],
)  # fmt: skip
def test_zone_names_are_lower_case_and_fully_qualified(text: str, zone: str) -> None:
    assert normalize_zone(text) == zone


@pytest.mark.parametrize(
    ("text", "zones"),
    [
        ("10.0.0.0/8", ["10.in-addr.arpa."]),
        ("192.168.1.0/24", ["1.168.192.in-addr.arpa."]),
        ("10.1.2.3/32", ["3.2.1.10.in-addr.arpa."]),
        ("172.16.0.0/12", [f"{n}.172.in-addr.arpa." for n in range(16, 32)]),
        ("10.0.0.0/30", [f"{n}.0.0.10.in-addr.arpa." for n in range(4)]),
        ("::/0", ["ip6.arpa."]),
        ("fd00:1::/32", ["1.0.0.0.0.0.d.f.ip6.arpa."]),
        ("fd00::/6", [f"{n:x}.f.ip6.arpa." for n in range(12, 16)]),
    ],
)
def test_cidrs_stand_for_their_reverse_zones(text: str, zones: list[str]) -> None:
    assert zones_from(text) == zones


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        (":8080", HostPort("", 8080)),
        ("127.0.0.1:8080", HostPort("127.0.0.1", 8080)),
        ("[::1]:8080", HostPort("::1", 8080)),
        ("localhost:9153", HostPort("127.0.0.1", 9153)),
        ("0.0.0.0:0", HostPort("0.0.0.0", 0)),
    ],
)
def test_listen_addresses(text: str, addr: HostPort) -> None:
    assert parse_listen(text) == addr
