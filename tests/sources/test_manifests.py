"""The manifests source: files -> model objects -> a real Index, as DNS would see them."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest

from kdns.cluster.index import Index
from kdns.cluster.model import Event, Kind, Replace, Service, ServicePort
from kdns.sources.manifests import (
    ManifestData,
    ManifestError,
    events,
    load_manifests,
    render_endpoints,
    run_manifests,
)

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "deploy" / "examples" / "seed"
EXAMPLES = ROOT / "deploy" / "examples"
DATA = ROOT / "tests" / "data" / "manifests"
SVC_CIDR = ip_network("10.96.0.0/16")
POD_CIDR = ip_network("10.244.0.0/16")


def load(*paths: Path, **kw: object) -> ManifestData:
    kw.setdefault("service_cidrs", [SVC_CIDR])
    kw.setdefault("pod_cidrs", [POD_CIDR])
    return load_manifests(list(paths), **kw)  # type: ignore[arg-type]


def index_of(data: ManifestData) -> Index:
    index = Index()
    for event in events(data):
        index.apply(event)
    return index


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def deployment(name: str, labels: str, *, replicas: int = 1, ports: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers:
      - name: c
        image: x
        ports: [{ports}]
"""


# ---- the seed examples -----------------------------------------------------------------


def test_seed_examples_give_two_services_with_ten_ready_endpoints_each() -> None:
    data = load(SEED)
    index = index_of(data)
    assert index.synced
    svc_test = index.service("default", "svc-test")
    cloud_lb = index.service("default", "cloud-lb")
    assert svc_test is not None
    assert cloud_lb is not None
    assert len(svc_test.cluster_ips) == 1
    assert len(cloud_lb.cluster_ips) == 1
    assert svc_test.cluster_ips != cloud_lb.cluster_ips
    for svc in (svc_test, cloud_lb):
        assert svc.cluster_ips[0] in SVC_CIDR
        endpoints = index.endpoints("default", svc.name)
        assert len(endpoints) == 10
        assert len({e.address for e in endpoints}) == 10
        assert all(e.address in POD_CIDR for e in endpoints)
        # targetPort 8080 for both: the endpoint port is the pod's, not the Service's.
        assert {e.ports for e in endpoints} == {(ServicePort("", "tcp", 8080),)}
    assert svc_test.ports == (ServicePort("", "tcp", 8080),)
    assert cloud_lb.ports == (ServicePort("", "tcp", 9000),)
    # Both Services select the same ten pods.
    assert {e.address for e in index.endpoints("default", "svc-test")} == {
        e.address for e in index.endpoints("default", "cloud-lb")
    }
    assert len(data.pods) == 10
    assert len({p.name for p in data.pods}) == 10
    assert all(p.name.startswith("svc-test-") for p in data.pods)


def test_seed_summary_shows_kubectl_like_endpoints() -> None:
    text = render_endpoints(load(SEED))
    lines = {line.split()[1]: line for line in text.splitlines()[1:]}
    assert "10/10" in lines["svc-test"]
    assert lines["svc-test"].endswith(" + 7 more...")  # kubectl shows three, then the rest
    assert lines["svc-test"].count(":8080") == 3
    assert "NodePort" in lines["svc-test"]
    assert "LoadBalancer" in lines["cloud-lb"]


def test_kubernetes_service_is_synthesized_at_the_first_address() -> None:
    index = index_of(load(SEED))
    kube = index.service("default", "kubernetes")
    assert kube == Service(
        "default",
        "kubernetes",
        cluster_ips=(ip_address("10.96.0.1"),),
        ports=(ServicePort("https", "tcp", 443),),
    )
    assert index.namespace_exists("kube-system")


def test_a_manifest_replaces_the_synthesized_kubernetes_service(tmp_path: Path) -> None:
    write(
        tmp_path,
        "k.yaml",
        "kind: Service\nmetadata: {name: kubernetes}\nspec: {clusterIP: 10.96.5.5}\n",
    )
    svc = index_of(load(tmp_path)).service("default", "kubernetes")
    assert svc is not None
    assert svc.cluster_ips == (ip_address("10.96.5.5"),)


# ---- ClusterIP allocation ---------------------------------------------------------------


def services_yaml(names: list[str]) -> str:
    return "\n---\n".join(
        f"kind: Service\nmetadata: {{name: {n}}}\nspec: {{ports: [{{port: 80}}]}}" for n in names
    )


def ips_of(data: ManifestData) -> dict[str, tuple[object, ...]]:
    return {s.name: s.cluster_ips for s in data.services}


def test_the_synthesized_kubernetes_service_yields_its_address(tmp_path: Path) -> None:
    write(
        tmp_path, "s.yaml", "kind: Service\nmetadata: {name: api}\nspec: {clusterIP: 10.96.0.1}\n"
    )
    index = index_of(load(tmp_path))
    assert index.service("default", "kubernetes") is None
    api = index.service("default", "api")
    assert api is not None
    assert api.cluster_ips == (ip_address("10.96.0.1"),)


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


# ---- endpoints as the EndpointSlice controller computes them ----------------------------


def test_selector_labels_are_anded_and_namespace_scoped(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        deployment("both", "{app: web, tier: front}", replicas=2)
        + "---"
        + deployment("app-only", "{app: web}", replicas=3)
        + "---\nkind: Service\nmetadata: {name: web}\n"
        "spec: {selector: {app: web, tier: front}, ports: [{port: 80}]}\n"
        "---\nkind: Service\nmetadata: {name: web, namespace: other}\n"
        "spec: {selector: {app: web}, ports: [{port: 80}]}\n",
    )
    data = load(tmp_path)
    index = index_of(data)
    selected = {e.address for e in index.endpoints("default", "web")}
    both = {p.ips[0] for p in data.pods if p.name.startswith("both-")}
    assert selected == both
    assert len(selected) == 2
    assert index.endpoints("other", "web") == ()  # the pods live in default


def test_named_target_port_resolves_per_pod_and_excludes_pods_without_it(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "m.yaml",
        deployment("a", "{app: web, v: a}", ports="{name: http, containerPort: 8080}")
        + "---"
        + deployment("b", "{app: web, v: b}", ports="{name: http, containerPort: 9090}")
        + "---"
        + deployment("c", "{app: web, v: c}", ports="{name: metrics, containerPort: 7000}")
        + "---"
        + deployment(
            "d", "{app: web, v: d}", ports="{name: http, containerPort: 5353, protocol: UDP}"
        )
        + "---\nkind: Service\nmetadata: {name: web}\n"
        "spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}\n",
    )
    data = load(tmp_path)
    pod_ip = {p.name.split("-")[0]: p.ips[0] for p in data.pods}
    by_address = {e.address: e.ports for e in index_of(data).endpoints("default", "web")}
    assert by_address[pod_ip["a"]] == (ServicePort("http", "tcp", 8080),)
    assert by_address[pod_ip["b"]] == (ServicePort("http", "tcp", 9090),)
    # c has no port named http; d has one, but UDP: both get an endpoint without the port,
    # as the controller puts them in a slice whose port list is empty.
    assert by_address[pod_ip["c"]] == ()
    assert by_address[pod_ip["d"]] == ()


def test_statefulset_pods_have_hostnames_under_their_headless_service() -> None:
    data = load(EXAMPLES / "statefulset")
    index = index_of(data)
    svc = index.service("default", "db")
    assert svc is not None
    assert svc.headless
    endpoints = index.endpoints("default", "db")
    assert sorted(e.label for e in endpoints) == ["db-0", "db-1", "db-2"]
    assert sorted(p.name for p in data.pods) == ["db-0", "db-1", "db-2"]
    assert {e.ports for e in endpoints} == {(ServicePort("pg", "tcp", 5432),)}


def test_hostname_is_set_only_when_subdomain_is_the_service_name(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        """
kind: Pod
metadata: {name: p1, labels: {app: x}}
spec: {hostname: host1, subdomain: sub, containers: [{name: c, image: i}]}
---
kind: Pod
metadata: {name: p2, labels: {app: x}}
spec: {hostname: host2, subdomain: elsewhere, containers: [{name: c, image: i}]}
---
kind: Service
metadata: {name: sub}
spec: {clusterIP: None, selector: {app: x}}
""",
    )
    labels = sorted(e.label for e in index_of(load(tmp_path)).endpoints("default", "sub"))
    assert labels[1] == "host1"
    assert labels[0].startswith("10-244-")  # p2 gets the dashed-address label (R7)


def test_pod_manifest_status_is_kept(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        """
kind: Pod
metadata: {name: ok, labels: {app: x}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.9.9, podIPs: [{ip: 10.244.9.9}]}
---
kind: Pod
metadata: {name: unready, labels: {app: x}}
spec: {containers: [{name: c, image: i}]}
status:
  phase: Running
  podIP: 10.244.9.10
  conditions: [{type: Ready, status: "False"}]
---
kind: Pod
metadata: {name: done, labels: {app: x}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Succeeded, podIP: 10.244.9.11}
---
kind: Service
metadata: {name: svc}
spec: {selector: {app: x}, ports: [{port: 80}]}
---
kind: Service
metadata: {name: all}
spec: {selector: {app: x}, publishNotReadyAddresses: true, ports: [{port: 80}]}
""",
    )
    data = load(tmp_path)
    index = index_of(data)
    assert sorted(p.name for p in data.pods) == ["ok", "unready"]
    assert [str(e.address) for e in index.endpoints("default", "svc")] == ["10.244.9.9"]
    assert sorted(str(e.address) for e in index.endpoints("default", "all")) == [
        "10.244.9.10",
        "10.244.9.9",
    ]
    assert index.pod_exists("default", ip_address("10.244.9.9"))
    assert not index.pod_exists("default", ip_address("10.244.9.11"))


def test_given_endpointslices_and_endpoints_are_used_as_they_are(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        deployment("web", "{app: web}", replicas=3)
        + """---
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-manual, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [192.0.2.1]}]
ports: [{port: 80}]
---
kind: Service
metadata: {name: legacy}
spec: {ports: [{port: 53, protocol: UDP}]}
---
kind: Endpoints
metadata: {name: legacy}
subsets: [{addresses: [{ip: 192.0.2.53}], ports: [{port: 53, protocol: UDP}]}]
""",
    )
    index = index_of(load(tmp_path))
    assert [str(e.address) for e in index.endpoints("default", "web")] == ["192.0.2.1"]
    assert [str(e.address) for e in index.endpoints("default", "legacy")] == ["192.0.2.53"]


def test_dual_stack_endpoints_are_split_per_family() -> None:
    data = load(
        EXAMPLES / "dual-stack",
        service_cidrs=[SVC_CIDR, ip_network("fd00:10:96::/112")],
        pod_cidrs=[POD_CIDR, ip_network("fd00:10:244::/64")],
    )
    web = [s for s in data.slices if s.service == "web"]
    assert sorted({a.version for e in s.endpoints for a in e.addresses}.pop() for s in web) == [
        4,
        6,
    ]
    assert len(index_of(data).endpoints("default", "web")) == 4


def test_external_name_example() -> None:
    index = index_of(load(EXAMPLES / "externalname"))
    svc = index.service("prod", "my-db")
    assert svc is not None
    assert svc.external_name == "db.example.com"


def test_json_list_and_unknown_kinds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(
        tmp_path,
        "list.json",
        '{"apiVersion": "v1", "kind": "List", "items": ['
        '{"kind": "Service", "metadata": {"name": "a", "namespace": "ns1"}, "spec": {}},'
        '{"kind": "ConfigMap", "metadata": {"name": "cm"}},'
        '{"kind": "Widget", "metadata": {"name": "w"}}]}',
    )
    data = load(tmp_path)
    assert [s.name for s in data.services if s.namespace == "ns1"] == ["a"]
    assert "ns1" in {n.name for n in data.namespaces}
    assert len(data.warnings) == 1
    assert "Widget" in data.warnings[0]


# ---- errors ------------------------------------------------------------------------------

BAD = [
    (
        "syntax.yaml",
        "kind: Service\nmetadata: {name: a}\n---\nkind: Service\nmetadata:\n  name: [b\n",
        r"syntax\.yaml: line \d+ column \d+: YAML syntax error: .*; fix the YAML syntax$",
    ),
    (
        "port.yaml",
        "kind: Service\nmetadata: {name: ok}\n---\n"
        "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: http}]}\n",
        r'port\.yaml: document 2 \(Service default/web\): spec\.ports\[0\]\.port: "http" '
        r"is not a port number; use an integer 1-65535$",
    ),
    (
        "ip.yaml",
        "kind: Service\nmetadata: {name: web, namespace: prod}\n"
        "spec: {clusterIPs: [10.96.0.5, 10.96.0.999]}\n",
        r"ip\.yaml: document 1 \(Service prod/web\): spec\.clusterIPs\[1\]: "
        r'"10\.96\.0\.999" is not an IP address; use an IPv4 or IPv6 address$',
    ),
    (
        "noname.yaml",
        "kind: Service\nmetadata: {namespace: prod}\nspec: {}\n",
        r"noname\.yaml: document 1 \(Service\): metadata\.name: is missing; "
        r"every object needs a name$",
    ),
    (
        "replicas.yaml",
        "kind: Deployment\nmetadata: {name: d}\nspec: {replicas: three}\n",
        r"replicas\.yaml: document 1 \(Deployment default/d\): spec\.replicas: ",
    ),
    (
        "json.json",
        '{"kind": "Service",\n "metadata": }',
        r"json\.json: line 2 column \d+: JSON syntax error: ",
    ),
]


@pytest.mark.parametrize(("name", "text", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_one_line_naming_file_document_and_field(
    tmp_path: Path, name: str, text: str, pattern: str
) -> None:
    write(tmp_path, name, text)
    with pytest.raises(ManifestError) as info:
        load(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / name))
    assert re.search(pattern, message), message


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or folder"):
        load(tmp_path / "nope")


# ---- watching ------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], *, seconds: float = 3.0) -> float:
    """Wait (bounded) until predicate() holds; returns the seconds it took."""
    start = time.monotonic()
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def bump_mtime(path: Path) -> None:
    # Coarse-mtime filesystems: make sure the edit is visible even within one tick.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_edits_are_applied_and_a_broken_edit_keeps_the_last_good_data(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "s.yaml", services_yaml(["one"]))
    index = Index()
    applied: list[Event] = []
    errors: list[str] = []

    def apply(event: Event) -> None:
        applied.append(event)
        index.apply(event)

    cidrs: list[IPv4Network | IPv6Network] = [SVC_CIDR]
    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=apply,
            service_cidrs=cidrs,
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            on_error=errors.append,
        )
    )
    try:
        await wait_for(lambda: index.service("default", "one") is not None)
        path.write_text(services_yaml(["one", "two"]))
        bump_mtime(path)
        took = await wait_for(lambda: index.service("default", "two") is not None)
        assert took < 1.0  # "an edit must be reflected within about a second"

        path.write_text("kind: Service\nmetadata: {name: [broken\n")
        bump_mtime(path)
        await wait_for(lambda: bool(errors))
        assert "s.yaml" in errors[0]
        assert index.service("default", "two") is not None  # last good data kept

        count = len(applied)
        path.write_text(services_yaml(["two"]))
        bump_mtime(path)
        await wait_for(lambda: index.service("default", "one") is None)
        assert index.service("default", "two") is not None
        assert len(errors) == 1
        assert len(applied) > count

        write(tmp_path, "more.yaml", services_yaml(["three"]))  # a new file is noticed too
        await wait_for(lambda: index.service("default", "three") is not None)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_errors_at_start_are_raised(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", "kind: Service\nmetadata: {}\n")
    with pytest.raises(ManifestError, match=r"metadata\.name"):
        await run_manifests(
            [tmp_path],
            apply=lambda e: None,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
        )


def test_a_folder_is_read_recursively_in_sorted_order() -> None:
    data = load(DATA / "mixed")
    assert [p.relative_to(DATA / "mixed").as_posix() for p in data.files] == [
        "00-namespace.yaml",
        "apps/api.json",
        "apps/nested/worker.yml",
    ]
    index = index_of(data)
    assert index.namespace_exists("empty")
    endpoints = index.endpoints("shop", "api")
    assert len(endpoints) == 2
    assert {e.ports for e in endpoints} == {(ServicePort("grpc", "tcp", 50051),)}
    assert len(index.endpoints("shop", "agent")) == 1  # a DaemonSet stands as one pod
    assert data.warnings == ()  # ConfigMap is a known kind DNS skips


async def test_run_manifests_with_initial_data_does_not_apply_it_again(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", services_yaml(["one"]))
    initial = load(tmp_path)
    applied: list[Event] = []
    task = asyncio.create_task(
        run_manifests(
            [tmp_path],
            apply=applied.append,
            service_cidrs=[SVC_CIDR],
            pod_cidrs=[POD_CIDR],
            poll_seconds=0.02,
            initial=initial,
        )
    )
    try:
        await asyncio.sleep(0.1)
        assert applied == []  # nothing changed on disk
        write(tmp_path, "t.yaml", services_yaml(["two"]))
        await wait_for(lambda: bool(applied))
        # Only the kinds that changed are replaced: the Services.
        assert [(type(e), getattr(e, "kind", None)) for e in applied] == [(Replace, Kind.SERVICE)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_summary_counts_and_caps_the_table(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", services_yaml([f"s{i}" for i in range(30)]))
    lines = load(tmp_path).summary_lines(max_services=5)
    assert lines[0].startswith("manifests: 1 files, 31 services, 0 endpointslices")
    assert lines[1].split()[:2] == ["NAMESPACE", "NAME"]
    assert len(lines) == 1 + 1 + 5 + 1
    assert lines[-1] == "... and 26 more services"


# ---- big JSON Lists are read item by item (issue 5) --------------------------------------


def _list_objects(services: int, endpoints: int) -> list[dict[str, object]]:
    """Headless Services, each with an EndpointSlice of `endpoints` endpoints; in every
    slice the endpoint at index 1 is not ready."""
    items: list[dict[str, object]] = []
    for i in range(services):
        name = f"svc-{i:03d}"
        meta = {"name": name, "namespace": "big"}
        port = {"name": "http", "protocol": "TCP", "port": 80}
        items.append(
            {"kind": "Service", "metadata": meta, "spec": {"clusterIP": "None", "ports": [port]}}
        )
        eps = [
            {"addresses": [f"10.{i // 256}.{i % 256}.{j + 1}"], "conditions": {"ready": j != 1}}
            for j in range(endpoints)
        ]
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": "big",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [port],
                "endpoints": eps,
            }
        )
    return items


def _same(a: ManifestData, b: ManifestData) -> None:
    assert a.services == b.services
    assert a.slices == b.slices
    assert a.namespaces == b.namespaces
    assert a.pods == b.pods


def test_a_json_list_is_read_item_by_item_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import yaml

    objs = _list_objects(30, 5)
    (tmp_path / "yaml").mkdir()
    write(tmp_path / "yaml", "all.yaml", yaml.safe_dump_all(objs))
    reference = load(tmp_path / "yaml")  # multi-document YAML: no JSON involved
    kind_first = {"apiVersion": "v1", "kind": "List", "items": objs, "metadata": {}}
    # kubectl get -o json sorts keys: items comes before kind.
    kubectl = {"apiVersion": "v1", "items": objs, "kind": "List", "metadata": {"x": [1]}}

    def no_whole_parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads of the whole List")

    for n, doc in enumerate([kind_first, kubectl]):
        folder = tmp_path / f"json{n}"
        folder.mkdir()
        write(folder, "list.json", json.dumps(doc, indent=n or None))
        with monkeypatch.context() as m:
            m.setattr(json, "loads", no_whole_parse)
            _same(load(folder), reference)
        assert len(reference.slices) == 30


def test_json_shapes_that_are_not_a_plain_list_are_read_whole(tmp_path: Path) -> None:
    import json

    objs = _list_objects(2, 2)
    reference = load(write(tmp_path, "ref.json", json.dumps({"kind": "List", "items": objs})))
    # A top-level array is not a Kubernetes document (as before): an error naming it.
    write(tmp_path, "array.json", json.dumps(objs))
    with pytest.raises(ManifestError, match=r"document 1: is a list, not an object"):
        load(tmp_path / "array.json")
    # Duplicate keys: the last one wins, as in any JSON reader (RFC 8259 section 4).
    dup = '{"kind": "Service", "items": [], "kind": "List", "items": ' + json.dumps(objs) + "}"
    _same(load(write(tmp_path, "dup.json", dup)), reference)
    # A kind that is not a List keeps `items` as an ordinary field.
    odd = '{"kind": "Namespace", "metadata": {"name": "odd"}, "items": [1, 2]}'
    assert "odd" in {n.name for n in load(write(tmp_path, "odd.json", odd)).namespaces}


LIST_ERRORS = [
    (  # a missing comma between two items: at the start of the third one
        '{"kind": "List", "items": [\n'
        '{"kind": "Namespace", "metadata": {"name": "a"}},\n'
        '{"kind": "Namespace", "metadata": {"name": "b"}}\n'
        '{"kind": "Namespace", "metadata": {"name": "c"}}\n]}\n',
        "line 4 column 1: JSON syntax error: Expecting ',' delimiter",
    ),
    (  # inside the second item: `}` (column 48) where a property name must be
        '{"kind": "List", "items": [\n'
        '{"kind": "Namespace", "metadata": {"name": "a"}},\n'
        '{"kind": "Namespace", "metadata": {"name": "b",}}\n]}\n',
        "line 3 column 48: JSON syntax error: Expecting property name enclosed in double quotes",
    ),
    (  # after the items: the object is never closed
        '{"kind": "List", "items": [\n{"kind": "Namespace", "metadata": {"name": "a"}}\n],\n',
        "line 4 column 1: JSON syntax error: Expecting property name enclosed in double quotes",
    ),
    (  # the second item is not an object
        '{"kind": "List", "items": [{"kind": "Namespace", "metadata": {"name": "a"}}, 7]}',
        "document 1 (List): items[1]: is not an object; each item must be a Kubernetes object",
    ),
]


@pytest.mark.parametrize(("text", "expected"), LIST_ERRORS)
def test_errors_in_a_streamed_json_list_name_the_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "list.json", text)
    with pytest.raises(ManifestError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {expected}")


def test_summary_renders_only_the_printed_rows_with_exact_totals(tmp_path: Path) -> None:
    import json

    objs = _list_objects(60, 40)  # 60 Services x 40 endpoints, one not ready per slice
    long_name = "a-service-name-longer-than-any-other-one"
    objs.append({"kind": "Service", "metadata": {"name": long_name, "namespace": "zz"}})
    write(tmp_path, "list.json", json.dumps({"kind": "List", "items": objs}))
    data = load(tmp_path)
    lines = data.summary_lines(max_services=5)
    assert lines[0].startswith(
        f"manifests: 1 files, {60 + 2} services, 60 endpointslices ({60 * 39} ready endpoints)"
    )
    assert len(lines) == 1 + 1 + 5 + 1
    assert lines[-1] == f"... and {62 - 5} more services"
    # The rows printed are those of the full table, padded for every Service (the long
    # name beyond the cut widens the NAME column).
    assert lines[1:7] == render_endpoints(data).splitlines()[:6]
    first = lines[2].split()
    assert first[:5] == ["big", "svc-000", "ClusterIP", "None", "39/40"]
    assert first[5:] == ["10.0.0.1:80,10.0.0.3:80,10.0.0.4:80", "+", "36", "more..."]
    assert lines[2].index("ClusterIP") == lines[1].index("TYPE") > len(long_name)
