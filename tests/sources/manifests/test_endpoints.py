"""EndpointSlices as the EndpointSlice controller computes them."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

from kdns.cluster.model import ServicePort
from tests.sources.manifests.helpers import (
    EXAMPLES,
    POD_CIDR,
    SVC_CIDR,
    deployment,
    index_of,
    load,
    write,
)


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
