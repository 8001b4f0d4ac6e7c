"""The manifests source under the kubernetes plugin's filters: it keeps what the API source
would get from a server asked with the same selectors (objects labelled as a real cluster
labels them: computed EndpointSlices carry their Service's labels, every Namespace its
`kubernetes.io/metadata.name`), and the filters never move an allocated address."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from kdns.cluster.index import Index
from kdns.cluster.model import Service
from kdns.config.selector import parse_selector
from kdns.sources.convert import SourceFilter
from kdns.sources.manifests import ManifestData, events, load_manifests

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {selector: {run: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec: {clusterIP: None, selector: {run: db}, ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: dev, labels: {app: web}}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-given
  namespace: dev
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.244.9.9]}]
ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  selector: {matchLabels: {run: web}}
  template:
    metadata: {labels: {run: web, app: web}}
    spec: {containers: [{name: c, image: x}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: prod}
spec:
  selector: {matchLabels: {run: db}}
  template:
    metadata: {labels: {run: db}}
    spec: {containers: [{name: c, image: x}]}
"""


def load(tmp_path: Path, filters: SourceFilter | None = None) -> ManifestData:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return load_manifests(
        [path],
        service_cidrs=[ip_network("10.96.0.0/16")],
        pod_cidrs=[ip_network("10.244.0.0/16")],
        filters=filters,
    )


def names(objects: tuple[Service, ...]) -> list[str]:
    return sorted(f"{o.namespace}/{o.name}" for o in objects)


def test_labels_keep_matching_services_slices_and_pods(tmp_path: Path) -> None:
    everything = load(tmp_path)
    data = load(tmp_path, SourceFilter(labels=parse_selector("app=web")))
    assert names(data.services) == ["dev/web", "prod/web"]
    # prod/web's computed slices carry its labels; dev/web's given slice has none.
    assert [s.service for s in data.slices] == ["web"]
    assert data.slices[0].namespace == "prod"
    assert [p.name.split("-")[0] for p in data.pods] == ["web"]
    # The filter came after allocation: the same addresses as without it.
    before = {(s.namespace, s.name): s.cluster_ips for s in everything.services}
    assert all(before[(s.namespace, s.name)] == s.cluster_ips for s in data.services)
    assert {p.ips for p in data.pods} <= {p.ips for p in everything.pods}


def test_computed_slices_are_labelled_as_the_controller_labels_them(tmp_path: Path) -> None:
    by_name = load(tmp_path, SourceFilter(labels=parse_selector("kubernetes.io/service-name")))
    assert names(by_name.services) == []  # Services have no such label
    assert sorted(s.service or "" for s in by_name.slices) == ["db", "web", "web"]
    headless = load(tmp_path, SourceFilter(labels=parse_selector("service.kubernetes.io/headless")))
    assert [s.service for s in headless.slices] == ["db"]
    managed = SourceFilter(
        labels=parse_selector(
            "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
        )
    )
    assert sorted(s.service or "" for s in load(tmp_path, managed).slices) == ["db", "web"]


def test_the_synthesized_kubernetes_service_has_the_api_servers_labels(tmp_path: Path) -> None:
    data = load(tmp_path, SourceFilter(labels=parse_selector("component=apiserver")))
    assert names(data.services) == ["default/kubernetes"]


def test_namespace_labels_see_declared_labels_and_the_name_label(tmp_path: Path) -> None:
    team = load(tmp_path, SourceFilter(namespace_labels=parse_selector("team=a")))
    assert [n.name for n in team.namespaces] == ["prod"]
    assert len(team.services) == len(load(tmp_path).services)  # hidden at answer time
    named = parse_selector("kubernetes.io/metadata.name in (dev, kube-system)")
    assert [n.name for n in load(tmp_path, SourceFilter(namespace_labels=named)).namespaces] == [
        "dev",
        "kube-system",
    ]


def test_noendpoints_keeps_no_slices(tmp_path: Path) -> None:
    data = load(tmp_path, SourceFilter(endpoints=False))
    assert data.slices == ()
    assert len(data.services) == len(load(tmp_path).services)


def test_pod_names_name_the_endpoints_of_workload_pods(tmp_path: Path) -> None:
    data = load(tmp_path, SourceFilter(pod_names=True))
    index = Index()
    for event in events(data):
        index.apply(event)
    (endpoint,) = index.endpoints("prod", "db")
    (pod,) = [p for p in data.pods if p.name.startswith("db-")]
    assert endpoint.label == pod.name
    assert endpoint.address in pod.ips
    plain = Index()
    for event in events(load(tmp_path)):
        plain.apply(event)
    (endpoint,) = plain.endpoints("prod", "db")
    assert endpoint.label == str(endpoint.address).replace(".", "-")
