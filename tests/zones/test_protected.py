"""Zone files never hide the cluster's names, and a ZoneSet reports the state of its reloads.

A static zone wins over the cluster zone when it matches a name more closely, so a file for
the cluster zone, a zone below it, or a reverse zone overlapping a service or pod network
would answer cluster names from the file. Such files are refused at start and not reloaded.
"""

from __future__ import annotations

import logging
import os
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

import pytest

from kdns.dns.records import Question, RType
from kdns.zones.zonefile import Protected, ZoneError, ZoneSet, hidden_by

SERVICE_CIDR = IPv4Network("10.96.0.0/16")
POD_CIDR = IPv4Network("10.244.0.0/16")
POD_CIDR6 = IPv6Network("fd00:10:244::/56")
PROTECTED: tuple[Protected, ...] = ("cluster.local.", SERVICE_CIDR, POD_CIDR, POD_CIDR6)


def zone_text(origin: str, address: str = "192.0.2.1") -> str:
    return f"$ORIGIN {origin}\n$TTL 30\n@ SOA ns hm 1 2 3 4 5\nwww A {address}\n"


def write(path: Path, origin: str, address: str = "192.0.2.1") -> Path:
    path.write_text(zone_text(origin, address))
    return path


def rewrite(path: Path, text: str) -> None:
    """Rewrite `path` with an mtime surely different from before (coarse clocks)."""
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def www(zones: ZoneSet, name: str) -> list[str]:
    return [str(r) for r in zones.answer(Question(name, RType.A)).answer]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- refused at start -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "hidden"),
    [
        ("cluster.local.", "the cluster zone cluster.local."),
        ("default.svc.cluster.local.", "names of the cluster zone cluster.local."),
        ("svc.cluster.local.", "names of the cluster zone cluster.local."),
        # Reverse zones holding a cluster network's names (covering it) ...
        ("10.in-addr.arpa.", "the reverse names of the cluster network 10.96.0.0/16"),
        ("in-addr.arpa.", "the reverse names of the cluster network 10.96.0.0/16"),
        ("96.10.in-addr.arpa.", "the reverse names of the cluster network 10.96.0.0/16"),
        # ... or lying inside it (a /24 of the service network, one pod address).
        ("1.96.10.in-addr.arpa.", "the reverse names of the cluster network 10.96.0.0/16"),
        ("5.1.244.10.in-addr.arpa.", "the reverse names of the cluster network 10.244.0.0/16"),
        # fd00:10::/32 covers fd00:10:244::/56.
        (
            "0.1.0.0.0.0.d.f.ip6.arpa.",
            "the reverse names of the cluster network fd00:10:244::/56",
        ),
        ("ip6.arpa.", "the reverse names of the cluster network fd00:10:244::/56"),
    ],
)
def test_a_zone_that_would_hide_cluster_names_stops_the_start(
    tmp_path: Path, origin: str, hidden: str
) -> None:
    path = write(tmp_path / "shadow.zone", origin)
    with pytest.raises(ZoneError) as info:
        ZoneSet.load([path], protected=PROTECTED)
    message = str(info.value)
    assert "\n" not in message  # one line
    assert message.startswith(f"{path}: zone {origin} would hide {hidden}")


def test_the_refusal_names_the_file_even_inside_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "good.zone", "example.internal.")
    bad = write(tmp_path / "svc.zone", "my.default.svc.cluster.local.")
    want = f"{bad}: zone my.default.svc.cluster.local. would hide"
    with pytest.raises(ZoneError, match="^" + re.escape(want)):
        ZoneSet.load([tmp_path], protected=PROTECTED)


@pytest.mark.parametrize(
    "origin",
    [
        "example.internal.",
        "local.",  # above the cluster zone: cluster.local. still matches its names first
        "cluster.local.example.",
        "xcluster.local.",
        "168.192.in-addr.arpa.",
        "11.in-addr.arpa.",
        "95.10.in-addr.arpa.",
        "8.b.d.0.1.0.0.2.ip6.arpa.",  # 2001:db8::/32
    ],
)
def test_zones_beside_the_cluster_names_load(tmp_path: Path, origin: str) -> None:
    path = write(tmp_path / "ok.zone", origin)
    zones = ZoneSet.load([path], protected=PROTECTED)
    assert list(zones.zones) == [origin]


def test_networks_that_are_not_octet_aligned_are_protected_exactly() -> None:
    # kubeadm's default service CIDR 10.96.0.0/12 spans 10.96.x.x .. 10.111.x.x.
    wide = [ip_network("10.96.0.0/12")]
    assert hidden_by("111.10.in-addr.arpa.", wide) is not None
    assert hidden_by("96.10.in-addr.arpa.", wide) is not None
    assert hidden_by("112.10.in-addr.arpa.", wide) is None
    assert hidden_by("95.10.in-addr.arpa.", wide) is None


def test_protected_names_compare_case_insensitively(tmp_path: Path) -> None:
    path = write(tmp_path / "c.zone", "Cluster.Local.")
    with pytest.raises(ZoneError, match=re.escape("would hide the cluster zone cluster.local.")):
        ZoneSet.load([path], protected=["CLUSTER.LOCAL"])


def test_labels_that_are_no_address_hide_no_network() -> None:
    assert hidden_by("x.10.in-addr.arpa.", [SERVICE_CIDR]) is None
    assert hidden_by("010.in-addr.arpa.", [SERVICE_CIDR]) is None  # not how 10 is written
    assert hidden_by("10.in-addr.arpa.", [SERVICE_CIDR]) is not None


def test_without_protected_names_every_zone_loads(tmp_path: Path) -> None:
    """Nothing is protected unless the caller says what the cluster answers."""
    path = write(tmp_path / "c.zone", "cluster.local.")
    assert list(ZoneSet.load([path]).zones) == ["cluster.local."]


# ---- reloads keep the last good zone ----------------------------------------------------


def test_an_edit_that_would_hide_cluster_names_keeps_the_last_good_zone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "r.zone", "r.test.")
    zones = ZoneSet.load([path], protected=PROTECTED)
    caplog.set_level(logging.INFO, logger="kdns.zones.zonefile")

    rewrite(path, zone_text("cluster.local."))
    assert zones.reload_if_changed() is False
    assert list(zones.zones) == ["r.test."]
    assert www(zones, "www.r.test.") == ["www.r.test. 30 IN A 192.0.2.1"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert "would hide the cluster zone cluster.local." in lines[0]
    assert "keeping the last good" in lines[0]


def test_a_new_file_that_would_hide_cluster_names_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "r.zone", "r.test.")
    zones = ZoneSet.load([tmp_path], protected=PROTECTED)
    write(tmp_path / "rev.zone", "10.in-addr.arpa.")
    with caplog.at_level(logging.WARNING, logger="kdns.zones.zonefile"):
        assert zones.reload_if_changed() is False
    assert list(zones.zones) == ["r.test."]
    assert zones.find("1.0.96.10.in-addr.arpa.") is None
    assert len(caplog.records) == 1
    assert "rev.zone" in caplog.records[0].getMessage()


# ---- reload state for monitoring --------------------------------------------------------


def test_reload_state_follows_failures_and_recovery(tmp_path: Path) -> None:
    clock = Clock()
    path = write(tmp_path / "r.zone", "r.test.")
    zones = ZoneSet((path,), clock=clock)
    assert (zones.failing, zones.last_success, zones.failures) == (False, 1000.0, 0)
    assert zones.status() == (False, 1000.0)

    clock.now = 1010.0
    rewrite(path, zone_text("r.test.", "192.0.2.2"))
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success, zones.failures) == (False, 1010.0, 0)

    clock.now = 1020.0
    rewrite(path, zone_text("r.test.") + "oops A not-an-ip\n")
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success, zones.failures) == (True, 1010.0, 1)
    assert zones.status() == (True, 1010.0)

    clock.now = 1030.0  # polled again, nothing changed: still failing, not counted again
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success, zones.failures) == (True, 1010.0, 1)

    clock.now = 1040.0
    rewrite(path, zone_text("r.test.", "192.0.2.3"))
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success, zones.failures) == (False, 1040.0, 1)

    clock.now = 1050.0  # an unchanged, healthy set: the last success stays when it was
    zones.reload_if_changed()
    assert zones.last_success == 1040.0


def test_a_named_file_that_vanishes_is_failing_until_it_returns(tmp_path: Path) -> None:
    clock = Clock()
    path = write(tmp_path / "r.zone", "r.test.")
    zones = ZoneSet((path,), clock=clock)
    text = path.read_text()
    path.unlink()
    zones.reload_if_changed()
    assert (zones.failing, zones.failures) == (True, 1)
    assert www(zones, "www.r.test.") == ["www.r.test. 30 IN A 192.0.2.1"]
    clock.now = 2000.0
    path.write_text(text.replace("192.0.2.1", "192.0.2.9"))
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success) == (False, 2000.0)
    assert www(zones, "www.r.test.") == ["www.r.test. 30 IN A 192.0.2.9"]


def test_a_failing_file_removed_from_its_folder_ends_the_failure(tmp_path: Path) -> None:
    clock = Clock()
    write(tmp_path / "r.zone", "r.test.")
    bad = tmp_path / "o.zone"
    zones = ZoneSet((tmp_path,), clock=clock)
    bad.write_text("garbage\n")
    zones.reload_if_changed()
    assert zones.failing is True
    clock.now = 1500.0
    bad.unlink()
    zones.reload_if_changed()
    assert (zones.failing, zones.last_success, zones.failures) == (False, 1500.0, 1)


def test_a_second_file_for_a_served_zone_is_a_failure(tmp_path: Path) -> None:
    write(tmp_path / "a.zone", "r.test.")
    zones = ZoneSet((tmp_path,))
    write(tmp_path / "b.zone", "r.test.", "192.0.2.7")
    zones.reload_if_changed()
    assert (zones.failing, zones.failures) == (True, 1)
    assert www(zones, "www.r.test.") == ["www.r.test. 30 IN A 192.0.2.1"]
    (tmp_path / "b.zone").unlink()
    zones.reload_if_changed()
    assert zones.failing is False
