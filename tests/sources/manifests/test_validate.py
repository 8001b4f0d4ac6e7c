"""Fields checked as the API server checks them: what it refuses is refused, with one line
naming the file, the document (and List item), the field and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kdns.sources.manifests import ManifestError
from kdns.sources.manifests.validate import is_label, is_subdomain
from tests.sources.manifests.helpers import index_of, load, write

OK = "kind: Service\nmetadata: {name: ok}\nspec: {ports: [{port: 80}]}\n---\n"


def service(spec: str, name: str = "web") -> str:
    return f"kind: Service\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def pod(spec: str) -> str:
    return f"kind: Pod\nmetadata: {{name: p}}\nspec: {spec}\n"


REFUSED = [
    (
        "external name with spaces and !",
        OK + service('{type: ExternalName, externalName: "not a valid name!!"}'),
        r'document 2 \(Service default/web\): spec\.externalName: "not a valid name!!" is not '
        r'a valid DNS name: .*; use a DNS name such as "not-a-valid-name"$',
    ),
    (
        "external name in upper case",
        service("{type: ExternalName, externalName: DB.Example.com}"),
        r'spec\.externalName: "DB\.Example\.com" is not a valid DNS name: .*lower-case.*'
        r'; use a DNS name such as "db\.example\.com"$',
    ),
    (
        "external name with a 64-character label",
        service(f"{{type: ExternalName, externalName: {'a' * 64}.example.com}}"),
        r"spec\.externalName: .* is not a valid DNS name: labels of at most 63",
    ),
    (
        "service name with an underscore",
        service("{ports: [{port: 80}]}", name="Bad_Name"),
        r'document 1 \(Service default/Bad_Name\): metadata\.name: "Bad_Name" is not a valid '
        r"Service name: a DNS-1123 label: .*; rename it, e\.g\. \"bad-name\"$",
    ),
    (
        "service name in upper case",
        service("{ports: [{port: 80}]}", name="Web"),
        r'metadata\.name: "Web" is not a valid Service name: .*; rename it, e\.g\. "web"$',
    ),
    (
        "service name with a dot",
        service("{ports: [{port: 80}]}", name="web.v2"),
        r'metadata\.name: "web\.v2" is not a valid Service name: a DNS-1123 label',
    ),
    (
        "namespace name with a dot",
        "kind: Namespace\nmetadata: {name: team.a}\n",
        r'document 1 \(Namespace team\.a\): metadata\.name: "team\.a" is not a valid '
        r"Namespace name: a DNS-1123 label",
    ),
    (
        "namespace of a service",
        "kind: Service\nmetadata: {name: web, namespace: Prod}\n",
        r'metadata\.namespace: "Prod" is not a valid namespace name: .*e\.g\. "prod"$',
    ),
    (
        "deployment name with an underscore",
        "kind: Deployment\nmetadata: {name: my_app}\nspec: {replicas: 1}\n",
        r'metadata\.name: "my_app" is not a valid Deployment name: a DNS-1123 subdomain',
    ),
    (
        "statefulset name with a dot (its pods' hostnames)",
        "kind: StatefulSet\nmetadata: {name: db.v2}\nspec: {replicas: 1}\n",
        r'metadata\.name: "db\.v2" is not a valid StatefulSet name: a DNS-1123 label',
    ),
    (
        "pod hostname",
        pod("{hostname: Host_1, containers: [{name: c, image: i}]}"),
        r'spec\.hostname: "Host_1" is not a valid hostname: a DNS-1123 label',
    ),
    (
        "pod subdomain",
        pod("{subdomain: a.b, containers: [{name: c, image: i}]}"),
        r'spec\.subdomain: "a\.b" is not a valid subdomain: a DNS-1123 label',
    ),
    (
        "service port name",
        service("{ports: [{name: HTTP, port: 80}]}"),
        r'spec\.ports\[0\]\.name: "HTTP" is not a valid port name: a DNS-1123 label',
    ),
    (
        "two ports with one name",
        service("{ports: [{name: http, port: 80}, {name: http, port: 81}]}"),
        r'spec\.ports\[1\]\.name: "http" is also the name of spec\.ports\[0\]; give each '
        r"port its own name$",
    ),
    (
        "named target port longer than 15",
        service("{ports: [{port: 80, targetPort: a-very-long-port-name}]}"),
        r'spec\.ports\[0\]\.targetPort: "a-very-long-port-name" is not a valid port name: an '
        r"IANA service name",
    ),
    (
        "container port name",
        pod("{containers: [{name: c, image: i, ports: [{name: web--ui, containerPort: 80}]}]}"),
        r"spec\.containers\[0\]\.ports\[0\]\.name: \"web--ui\" is not a valid port name",
    ),
    (
        "ip family twice",
        service("{ipFamilies: [IPv4, IPv4], ipFamilyPolicy: PreferDualStack}"),
        r"spec\.ipFamilies: names a family twice; list IPv4 and IPv6 at most once each$",
    ),
    (
        "three cluster IPs",
        service("{clusterIPs: [10.96.0.5, 10.96.0.6, 10.96.0.7]}"),
        r"spec\.clusterIPs: has 3 addresses, more than the 2 the API allows",
    ),
    (
        "endpoint hostname",
        "kind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\n"
        "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}, "
        "{addresses: [10.0.0.2], hostname: web_1}]\n",
        r'endpoints\[1\]\.hostname: "web_1" is not a valid hostname: a DNS-1123 label',
    ),
    (
        "endpoints subset hostname",
        "kind: Endpoints\nmetadata: {name: web}\n"
        "subsets: [{notReadyAddresses: [{ip: 10.0.0.1, hostname: -x}]}]\n",
        r'subsets\[0\]\.notReadyAddresses\[0\]\.hostname: "-x" is not a valid hostname',
    ),
    (
        "endpointslice with 1001 endpoints",
        "kind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: ["
        + ", ".join(f"{{addresses: [10.0.{i // 250}.{i % 250 + 1}]}}" for i in range(1001))
        + "]\n",
        r"endpoints: has 1001 endpoints, more than the 1000 the API allows; split it$",
    ),
    (
        "endpoint with 101 addresses",
        "kind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: "
        "[{addresses: [10.0.0.1]}, {addresses: ["
        + ", ".join(f"10.1.0.{i + 1}" for i in range(101))
        + "]}]\n",
        r"endpoints\[1\]\.addresses: has 101 addresses, more than the 100 the API allows",
    ),
    (
        "endpointslice port name",
        "kind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n"
        "endpoints: [{addresses: [10.0.0.1]}]\nports: [{name: Web, port: 80}]\n",
        r'ports\[0\]\.name: "Web" is not a valid port name',
    ),
    (
        "replicas beyond int32",
        "kind: Deployment\nmetadata: {name: d}\nspec: {replicas: 100000000000000000000}\n",
        r"document 1 \(Deployment default/d\): spec\.replicas: 100000000000000000000 is not a "
        r"count \(an integer from 0 to 2147483647\); use an integer 0 or more$",
    ),
    (
        "negative parallelism",
        "kind: Job\nmetadata: {name: j}\nspec: {parallelism: -1}\n",
        r"spec\.parallelism: -1 is not a count",
    ),
    (
        "statefulset service name",
        "kind: StatefulSet\nmetadata: {name: db}\nspec: {serviceName: DB, replicas: 1}\n",
        r'spec\.serviceName: "DB" is not a valid Service name',
    ),
]


@pytest.mark.parametrize(("text", "pattern"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_what_the_api_server_refuses_is_one_line_naming_file_document_field_and_fix(
    tmp_path: Path, text: str, pattern: str
) -> None:
    path = write(tmp_path, "m.yaml", text)
    with pytest.raises(ManifestError) as info:
        load(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert re.search(pattern, message), message


def test_errors_inside_a_list_name_the_item(tmp_path: Path) -> None:
    items = [
        {"kind": "Service", "metadata": {"name": "a"}},
        {"kind": "Service", "metadata": {"name": "B"}},
    ]
    path = write(tmp_path, "l.json", json.dumps({"kind": "List", "items": items}))
    with pytest.raises(ManifestError) as info:
        load(tmp_path)
    assert str(info.value).startswith(
        f'{path}: document 1 (Service default/B): items[1].metadata.name: "B" is not a valid'
    )


def test_what_the_api_server_accepts_is_served(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        # A trailing dot on externalName, a Service name starting with a digit (the
        # relaxed rule), dots in a Deployment's name, a numeric-string targetPort, and
        # names at their longest.
        service("{type: ExternalName, externalName: db.example.com.}", name="db")
        + "---\n"
        + service("{ports: [{name: a-1, port: 80, targetPort: '8080'}]}", name="1st")
        + "---\n"
        + service("{selector: {app: w}, ports: [{port: 80, targetPort: metrics-port1}]}")
        + "---\nkind: Deployment\nmetadata: {name: web.v2}\n"
        "spec: {replicas: 2, selector: {matchLabels: {app: w}}, template: {metadata: "
        "{labels: {app: w}}, spec: {containers: [{name: c, ports: [{name: metrics-port1, "
        "containerPort: 9090}]}]}}}\n" + "---\n" + service("{clusterIP: None}", name="x" * 63),
    )
    index = index_of(load(tmp_path))
    db = index.service("default", "db")
    assert db is not None
    assert db.external_name == "db.example.com"
    assert index.service("default", "1st") is not None
    assert index.service("default", "x" * 63) is not None
    assert {e.ports[0].port for e in index.endpoints("default", "web")} == {9090}


@pytest.mark.parametrize(
    ("name", "label", "subdomain"),
    [
        ("web", True, True),
        ("web-1", True, True),
        ("1web", True, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("web.v2", False, True),
        ("Web", False, False),
        ("-web", False, False),
        ("web-", False, False),
        ("web_1", False, False),
        ("web..v2", False, False),
        ("", False, False),
        ("a." * 126 + "a", False, True),  # 253 characters
        ("a." * 126 + "ab", False, False),  # 254
    ],
)
def test_dns_1123_names(name: str, label: bool, subdomain: bool) -> None:
    assert is_label(name) is label
    assert is_subdomain(name) is subdomain
