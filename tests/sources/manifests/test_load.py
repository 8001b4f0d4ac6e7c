"""Loading: the kinds read, the synthesized kubernetes Service, and one-line errors."""

from __future__ import annotations

import re
from ipaddress import ip_address
from pathlib import Path

import pytest

from kdns.cluster.model import Service, ServicePort
from kdns.sources.manifests import (
    ManifestError,
)
from tests.sources.manifests.helpers import (
    EXAMPLES,
    POD_CIDR,
    SEED,
    SVC_CIDR,
    index_of,
    load,
    write,
)


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


def test_the_synthesized_kubernetes_service_yields_its_address(tmp_path: Path) -> None:
    write(
        tmp_path, "s.yaml", "kind: Service\nmetadata: {name: api}\nspec: {clusterIP: 10.96.0.1}\n"
    )
    index = index_of(load(tmp_path))
    assert index.service("default", "kubernetes") is None
    api = index.service("default", "api")
    assert api is not None
    assert api.cluster_ips == (ip_address("10.96.0.1"),)


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
