"""End to end: `kdns serve --manifests` queried with the real dig over UDP and TCP.

Expected answers come from docs/rules.md (ids in the test names), not from kdns's output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kdns_process import ROOT, Kdns, dig, run_kdns

pytestmark = pytest.mark.e2e

CLUSTER = ROOT / "tests" / "data" / "e2e-cluster"
SEED = ROOT / "deploy" / "examples" / "seed"
Z = "cluster.local."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdns]:
    tmp: Path = tmp_path_factory.mktemp("kdns")
    with run_kdns(["--manifests", str(CLUSTER), "--upstream", "none"], tmp_path=tmp) as k:
        yield k


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdns]:
    tmp: Path = tmp_path_factory.mktemp("kdns-seed")
    with run_kdns(["--manifests", str(SEED), "--upstream", "none"], tmp_path=tmp) as k:
        yield k


def _rdata(lines: list[str]) -> list[str]:
    return sorted(" ".join(line.split()[4:]) for line in lines)


def _types(lines: list[str]) -> list[str]:
    return sorted(line.split()[3] for line in lines)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_seed_services_resolve_to_distinct_cluster_ips_in_the_service_cidr(
    seed: Kdns, tcp: bool
) -> None:
    a = dig(seed.dns_port, "svc-test.default.svc.cluster.local", tcp=tcp)
    b = dig(seed.dns_port, "cloud-lb.default.svc.cluster.local", tcp=tcp)
    assert (a.status, b.status) == ("NOERROR", "NOERROR")
    assert "aa" in a.flags
    ips = [ipaddress.ip_address(_rdata(r.answer)[0]) for r in (a, b)]
    assert all(ip in ipaddress.ip_network("10.96.0.0/16") for ip in ips)
    assert ips[0] != ips[1]
    assert len(a.answer) == len(b.answer) == 1


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_seed_bare_srv_names_the_service_port(seed: Kdns, tcp: bool) -> None:
    r = dig(seed.dns_port, "svc-test.default.svc.cluster.local", "SRV", tcp=tcp)
    assert r.status == "NOERROR"
    assert _rdata(r.answer) == ["0 100 8080 svc-test.default.svc.cluster.local."]
    # R13: the target's address may ride along in the additional section.
    assert [line.split()[3] for line in r.additional] in (["A"], [])


def test_r8_r9_dual_stack_clusterip(cluster: Kdns) -> None:
    a = dig(cluster.dns_port, "web.testns.svc.cluster.local", "A")
    aaaa = dig(cluster.dns_port, "WEB.TestNS.svc.Cluster.Local", "AAAA")  # R5/D4 case
    assert _rdata(a.answer) == ["10.96.0.20"]
    assert _rdata(aaaa.answer) == ["fd00:10:96::20"]
    assert a.answer[0].split()[1] == "5"  # the configured TTL


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_r10_named_port_srv_with_glue(cluster: Kdns, tcp: bool) -> None:
    r = dig(cluster.dns_port, "_http._tcp.web.testns.svc.cluster.local", "SRV", tcp=tcp)
    assert r.status == "NOERROR"
    assert _rdata(r.answer) == ["0 100 80 web.testns.svc.cluster.local."]
    assert sorted(_types(r.additional)) in (["A", "AAAA"], [])


def test_r12_unnamed_port_has_no_srv_and_d3_proto_label_is_empty_non_terminal(
    cluster: Kdns,
) -> None:
    r = dig(cluster.dns_port, "_udp.web.testns.svc.cluster.local", "SRV")
    assert (r.status, r.answer) == ("NOERROR", [])
    assert _types(r.authority) == ["SOA"]


def test_r17_headless_ready_endpoints_merged_and_deduplicated(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "hdls.testns.svc.cluster.local")
    # R6: ready true or absent counts; ready false does not. 10.244.1.5 is in two slices.
    assert _rdata(r.answer) == ["10.244.1.5", "10.244.1.6", "10.244.2.9"]


def test_r20_endpoint_hostname_and_dashed_label(cluster: Kdns) -> None:
    named = dig(cluster.dns_port, "pod-0.hdls.testns.svc.cluster.local")
    dashed = dig(cluster.dns_port, "10-244-1-6.hdls.testns.svc.cluster.local")
    assert _rdata(named.answer) == ["10.244.1.5"]
    assert _rdata(dashed.answer) == ["10.244.1.6"]


def test_r22_headless_srv_targets_endpoints_with_endpoint_port(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "_http._tcp.hdls.testns.svc.cluster.local", "SRV")
    targets = sorted(line.split()[-1] for line in r.answer)
    assert targets == sorted(
        f"{label}.hdls.testns.svc.cluster.local." for label in ("pod-0", "10-244-1-6", "10-244-2-9")
    )
    assert {line.split()[-2] for line in r.answer} == {"8080"}  # Conflict 2: endpoint port


def test_r19_headless_without_ready_endpoints_is_nxdomain_with_soa(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "nobody.testns.svc.cluster.local")
    assert r.status == "NXDOMAIN"
    assert _types(r.authority) == ["SOA"]
    assert "aa" in r.flags


def test_r26_externalname_is_a_cname(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "ext.testns.svc.cluster.local", "CNAME")
    assert _rdata(r.answer) == ["foo.example.com."]


def test_d5_in_zone_externalname_target_is_chased(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "alias.testns.svc.cluster.local", "A")
    assert [line.split()[3] for line in r.answer] == ["CNAME", "A"]
    assert r.answer[1].split()[-1] == "10.96.0.20"


def test_r14_r15_ptr_for_cluster_ips(cluster: Kdns) -> None:
    v4 = dig(cluster.dns_port, "20.0.96.10.in-addr.arpa", "PTR")
    assert _rdata(v4.answer) == ["web.testns.svc.cluster.local."]
    nibbles = ipaddress.ip_address("fd00:10:96::20").reverse_pointer
    v6 = dig(cluster.dns_port, nibbles, "PTR")
    assert _rdata(v6.answer) == ["web.testns.svc.cluster.local."]


def test_r24_ptr_for_headless_endpoints(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "5.1.244.10.in-addr.arpa", "PTR")
    assert _rdata(r.answer) == ["pod-0.hdls.testns.svc.cluster.local."]
    r = dig(cluster.dns_port, "6.1.244.10.in-addr.arpa", "PTR")
    assert _rdata(r.answer) == ["10-244-1-6.hdls.testns.svc.cluster.local."]


def test_unknown_reverse_address_is_nxdomain_with_the_reverse_zone_soa(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "99.99.96.10.in-addr.arpa", "PTR")
    assert r.status == "NXDOMAIN"
    assert [line.split()[0] for line in r.authority] == ["in-addr.arpa."]


def test_r2_dns_version(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "dns-version.cluster.local", "TXT")
    assert _rdata(r.answer) == ['"1.1.0"']


def test_soa_at_apex_has_the_documented_fields(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "cluster.local", "SOA")
    fields = r.answer[0].split()
    assert fields[4:6] == ["ns.dns.cluster.local.", "hostmaster.cluster.local."]
    assert fields[7:] == ["7200", "1800", "86400", "5"]
    assert int(fields[6]) > 1_600_000_000  # serial: Unix time of the last change


@pytest.mark.parametrize(
    ("name", "qtype", "status"),
    [
        ("web.testns.svc.cluster.local", "TXT", "NOERROR"),  # D1 NODATA
        ("web.testns.svc.cluster.local", "MX", "NOERROR"),
        ("svc.cluster.local", "A", "NOERROR"),  # D3 empty non-terminal
        ("testns.svc.cluster.local", "A", "NOERROR"),
        ("missing.testns.svc.cluster.local", "A", "NXDOMAIN"),
        ("web.nonexistent.svc.cluster.local", "A", "NXDOMAIN"),
        ("web.testns.testns.svc.cluster.local", "A", "NXDOMAIN"),  # E7 wrong expansion
        ("dns-version.cluster.local", "A", "NOERROR"),  # Conflict 5: NODATA
    ],
)
def test_d1_d2_negative_answers_carry_the_soa(
    cluster: Kdns, name: str, qtype: str, status: str
) -> None:
    r = dig(cluster.dns_port, name, qtype)
    assert (r.status, r.answer) == (status, [])
    assert _types(r.authority) == ["SOA"]
    assert "aa" in r.flags


def test_p1_e6_pod_records_insecure(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "10-244-9-9.testns.pod.cluster.local")
    assert _rdata(r.answer) == ["10.244.9.9"]
    r = dig(cluster.dns_port, "10-244-9-9.nonexistent.pod.cluster.local")
    assert r.status == "NXDOMAIN"


def test_names_outside_the_zones_are_refused_without_upstream(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "example.com", "A")
    assert r.status == "REFUSED"


def test_axfr_is_refused(cluster: Kdns) -> None:
    r = dig(cluster.dns_port, "cluster.local", "AXFR", tcp=True)
    assert "REFUSED" in r.raw or "Transfer failed" in r.raw


def test_health_and_ready_answer_200(cluster: Kdns) -> None:
    assert cluster.http(cluster.health_port, "/health")[0] == 200
    assert cluster.ready()[0] == 200
