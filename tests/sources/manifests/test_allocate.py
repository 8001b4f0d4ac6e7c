"""ClusterIP allocation: stable, collision-probing, dual-stack."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest

from kdns.sources.manifests import ManifestError
from tests.sources.manifests.helpers import (
    POD_CIDR,
    SVC_CIDR,
    index_of,
    ips_of,
    load,
    services_yaml,
    write,
)


def test_allocation_is_stable_across_loads_and_unaffected_by_other_services(
    tmp_path: Path,
) -> None:
    names = [f"svc-{i}" for i in range(40)]
    path = write(tmp_path, "s.yaml", services_yaml(names))
    first = ips_of(load(path))
    assert ips_of(load(path)) == first
    # Removing half and adding others leaves the remaining ones where they were
    # (no home collisions among 60 names in a /16 for these names).
    path.write_text(services_yaml(names[::2] + [f"other-{i}" for i in range(20)]))
    second = ips_of(load(path))
    for name in names[::2]:
        assert second[name] == first[name]
    all_ips = [ip for ips in second.values() for ip in ips]
    assert len(all_ips) == len(set(all_ips))


def test_allocation_never_uses_reserved_addresses_and_probes_on_collision(
    tmp_path: Path,
) -> None:
    # A /28 has 16 addresses: 0 (network), 15 (broadcast), 1 and 10 are never allocated,
    # so 12 Services fill it exactly, forcing collisions and probing.
    path = write(tmp_path, "s.yaml", services_yaml([f"s{i}" for i in range(12)]))
    data = load(path, service_cidrs=[ip_network("10.96.0.0/28")])
    offsets = sorted(int(s.cluster_ips[0]) - int(ip_address("10.96.0.0")) for s in data.services)
    assert offsets == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]  # .1 = kubernetes


def test_full_service_cidr_is_a_one_line_error(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", services_yaml([f"s{i}" for i in range(13)]))
    with pytest.raises(ManifestError, match=r"no free address in 10\.96\.0\.0/28") as info:
        load(path, service_cidrs=[ip_network("10.96.0.0/28")])
    assert "\n" not in str(info.value)


def test_explicit_cluster_ip_is_kept_and_never_reallocated(tmp_path: Path) -> None:
    names = [f"s{i}" for i in range(20)]
    path = write(tmp_path, "s.yaml", services_yaml(names))
    taken = ips_of(load(path))["s7"][0]
    path.write_text(
        services_yaml(names)
        + f"\n---\nkind: Service\nmetadata: {{name: pinned}}\nspec: {{clusterIP: {taken}}}\n"
    )
    data = ips_of(load(path))
    assert data["pinned"] == (taken,)
    assert data["s7"] != (taken,)
    assert data["s7"][0] in SVC_CIDR


def test_duplicate_explicit_cluster_ip_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        "s.yaml",
        "kind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.3.3}\n---\n"
        "kind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.3.3}\n",
    )
    with pytest.raises(ManifestError, match=r"10\.96\.3\.3 is already the ClusterIP"):
        load(tmp_path)


DUAL = """
kind: Service
metadata: {name: web}
spec:
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv6, IPv4]
  ports: [{port: 80}]
"""


def test_prefer_dual_stack_gets_one_address_per_configured_family(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", DUAL)
    v6 = ip_network("fd00:10:96::/112")
    svc = index_of(load(path, service_cidrs=[SVC_CIDR, v6])).service("default", "web")
    assert svc is not None
    assert [ip.version for ip in svc.cluster_ips] == [6, 4]  # ipFamilies order
    assert svc.cluster_ips[0] in v6
    assert svc.cluster_ips[1] in SVC_CIDR
    # Only IPv4 configured: PreferDualStack falls back to the family there is.
    single = index_of(load(path)).service("default", "web")
    assert single is not None
    assert [ip.version for ip in single.cluster_ips] == [4]


def test_require_dual_stack_without_both_families_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", DUAL.replace("PreferDualStack", "RequireDualStack"))
    with pytest.raises(ManifestError, match=r"spec\.ipFamilyPolicy: RequireDualStack"):
        load(tmp_path)


def test_require_dual_stack_with_both_addresses_given_needs_no_cidr(tmp_path: Path) -> None:
    text = DUAL.replace("PreferDualStack", "RequireDualStack").replace(
        "spec:", "spec:\n  clusterIPs: [10.96.7.7, 'fd00::7']", 1
    )
    write(tmp_path, "s.yaml", text)
    svc = index_of(load(tmp_path)).service("default", "web")
    assert svc is not None
    assert sorted(map(str, svc.cluster_ips)) == ["10.96.7.7", "fd00::7"]


HEADLESS_DUAL = """
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: db}
---
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec: {containers: [{name: c, image: i}]}
"""


@pytest.mark.parametrize(
    "service_cidrs",
    [[SVC_CIDR], [ip_network("fd00:10:96::/112")]],
    ids=["ipv4 service cidr", "ipv6 service cidr"],
)
def test_a_headless_dual_stack_service_needs_no_service_cidr_of_either_family(
    tmp_path: Path, service_cidrs: list[IPv4Network | IPv6Network]
) -> None:
    # A headless Service gets no ClusterIP, so no service CIDR is involved; its families
    # choose which pod addresses become endpoints (both here: the pods are dual-stack).
    write(tmp_path, "db.yaml", HEADLESS_DUAL)
    v6_pods = ip_network("fd00:10:244::/64")
    data = load(tmp_path, service_cidrs=service_cidrs, pod_cidrs=[POD_CIDR, v6_pods])
    index = index_of(data)
    db = index.service("default", "db")
    assert db is not None
    assert db.headless
    assert db.cluster_ips == ()
    addresses = {e.address for e in index.endpoints("default", "db")}
    assert {a.version for a in addresses} == {4, 6}
    (pod,) = [p for p in data.pods if p.name == "db-0"]
    assert addresses == set(pod.ips)


def test_an_external_name_service_needs_no_service_cidr_for_its_families(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "x.yaml",
        "kind: Service\nmetadata: {name: x}\nspec: {type: ExternalName, externalName: a.example,"
        " ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6]}\n",
    )
    svc = index_of(load(tmp_path)).service("default", "x")
    assert svc is not None
    assert svc.external_name == "a.example"
