"""API JSON -> model: real-shaped objects as `kubectl get -o json` prints them."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from kdns.cluster.model import Endpoint, EndpointSlice, Namespace, Pod, Service, ServicePort
from kdns.sources.convert import (
    ConversionError,
    endpointslice_from_api,
    namespace_from_api,
    object_from_api,
    pod_from_api,
    service_from_api,
    slices_from_endpoints,
)


def svc(spec: dict[str, Any], *, name: str = "web", namespace: str | None = "prod") -> Any:
    meta: dict[str, Any] = {"name": name, "uid": "1234", "resourceVersion": "77"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": {}}


def test_clusterip_service_keeps_ips_and_ports_lower_cased() -> None:
    obj = svc(
        {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20"],
            "ports": [{"name": "HTTP", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"},
        },
        name="Web",
        namespace="Prod",
    )
    assert service_from_api(obj) == Service(
        "prod",
        "web",
        cluster_ips=(ip_address("10.96.0.20"),),
        ports=(ServicePort("http", "tcp", 80),),
    )


@pytest.mark.parametrize("stype", ["NodePort", "LoadBalancer"])
def test_nodeport_and_loadbalancer_are_clusterip_like(stype: str) -> None:
    obj = svc(
        {
            "type": stype,
            "clusterIPs": ["10.96.0.21"],
            "ports": [{"port": 9000, "nodePort": 30001, "targetPort": 8080}],
        }
    )
    got = service_from_api(obj)
    assert got.cluster_ips == (ip_address("10.96.0.21"),)
    assert got.ports == (ServicePort("", "tcp", 9000),)  # protocol defaults to TCP
    assert not got.headless
    assert got.external_name is None


def test_dual_stack_service_keeps_family_order() -> None:
    obj = svc(
        {
            "clusterIP": "fd00:10:96::a",
            "clusterIPs": ["fd00:10:96::a", "10.96.0.30"],
            "ipFamilies": ["IPv6", "IPv4"],
            "ipFamilyPolicy": "PreferDualStack",
        }
    )
    assert service_from_api(obj).cluster_ips == (
        ip_address("fd00:10:96::a"),
        ip_address("10.96.0.30"),
    )


def test_cluster_ip_alone_is_used_when_cluster_ips_is_absent() -> None:
    obj = svc({"clusterIP": "10.96.0.31"})
    assert service_from_api(obj).cluster_ips == (ip_address("10.96.0.31"),)


def test_headless_service() -> None:
    obj = svc({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]})
    got = service_from_api(obj)
    assert got.headless
    assert got.cluster_ips == ()


def test_external_name_is_lower_case_without_trailing_dot() -> None:
    obj = svc({"type": "ExternalName", "externalName": "DB.Example.COM."})
    got = service_from_api(obj)
    assert got.external_name == "db.example.com"
    assert got.cluster_ips == ()
    assert not got.headless


def test_external_name_without_target_is_an_error() -> None:
    with pytest.raises(ConversionError, match=r"^spec\.externalName: "):
        service_from_api(svc({"type": "ExternalName"}))


def test_missing_namespace_means_default() -> None:
    assert service_from_api(svc({}, namespace=None)).namespace == "default"


def test_bad_cluster_ip_names_the_field() -> None:
    obj = svc({"clusterIPs": ["10.96.0.1", "10.96.0.300"]})
    with pytest.raises(ConversionError) as info:
        service_from_api(obj)
    assert info.value.field == "spec.clusterIPs[1]"
    assert "10.96.0.300" in str(info.value)
    assert "not an IP address" in str(info.value)


def test_string_port_is_an_error() -> None:
    with pytest.raises(ConversionError) as info:
        service_from_api(svc({"ports": [{"port": "http"}]}))
    assert str(info.value) == (
        'spec.ports[0].port: "http" is not a port number; use an integer 1-65535'
    )


def test_missing_name_is_an_error() -> None:
    with pytest.raises(ConversionError, match=r"^metadata\.name: is missing"):
        service_from_api({"kind": "Service", "metadata": {}, "spec": {}})


def slice_obj(endpoints: Any, ports: Any, *, address_type: str = "IPv4") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc12",
            "namespace": "prod",
            "labels": {
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    }


def test_endpointslice_readiness_true_false_and_absent() -> None:
    obj = slice_obj(
        [
            {
                "addresses": ["10.244.1.5"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "hostname": "Web-0",
                "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "prod"},
                "nodeName": "kind-worker",
            },
            {"addresses": ["10.244.2.7"], "conditions": {"ready": False}},
            {"addresses": ["10.244.3.9"], "conditions": {}},  # unknown -> ready
            {"addresses": ["10.244.3.10"]},  # no conditions at all -> ready
            {"addresses": ["10.244.3.11"], "conditions": {"ready": None}},
        ],
        [{"name": "HTTP", "protocol": "TCP", "port": 8080}],
    )
    got = endpointslice_from_api(obj)
    assert got == EndpointSlice(
        "prod",
        "web-abc12",
        service="web",
        endpoints=(
            Endpoint((ip_address("10.244.1.5"),), ready=True, hostname="web-0", pod_name="web-0"),
            Endpoint((ip_address("10.244.2.7"),), ready=False),
            Endpoint((ip_address("10.244.3.9"),), ready=True),
            Endpoint((ip_address("10.244.3.10"),), ready=True),
            Endpoint((ip_address("10.244.3.11"),), ready=True),
        ),
        ports=(ServicePort("http", "tcp", 8080),),
    )


def test_endpointslice_keeps_the_terminating_condition() -> None:
    """Not DNS data (answers read `ready` only), but `kdns explain` says why an endpoint is
    left out: a terminating one differs from a merely unready one, and from a terminating
    one that stays ready (publishNotReadyAddresses)."""
    obj = slice_obj(
        [
            {"addresses": ["10.244.1.5"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["10.244.1.6"], "conditions": {"ready": False}},
            {"addresses": ["10.244.1.7"], "conditions": {"ready": True, "terminating": True}},
            {"addresses": ["10.244.1.8"], "conditions": {"terminating": None}},
        ],
        [],
    )
    got = endpointslice_from_api(obj)
    assert got is not None
    assert [(e.ready, e.terminating) for e in got.endpoints] == [
        (False, True),
        (False, False),
        (True, True),
        (True, False),
    ]
    unchanged = endpointslice_from_api(obj)
    obj["endpoints"][1]["conditions"]["terminating"] = True
    assert endpointslice_from_api(obj) != unchanged  # a change the index must apply


def test_endpointslice_with_null_ports_and_endpoints() -> None:
    got = endpointslice_from_api(slice_obj(None, None))
    assert got is not None
    assert got.endpoints == ()
    assert got.ports == ()


def test_endpointslice_port_without_number_means_all_ports_and_is_dropped() -> None:
    got = endpointslice_from_api(slice_obj([{"addresses": ["10.0.0.1"]}], [{"port": None}]))
    assert got is not None
    assert got.ports == ()


def test_ipv6_endpointslice() -> None:
    obj = slice_obj([{"addresses": ["fd00:10:244::5"]}], [], address_type="IPv6")
    got = endpointslice_from_api(obj)
    assert got is not None
    assert got.endpoints[0].addresses == (ip_address("fd00:10:244::5"),)


def test_fqdn_endpointslice_is_ignored() -> None:
    obj = slice_obj([{"addresses": ["db.example.com"]}], [], address_type="FQDN")
    assert endpointslice_from_api(obj) is None


def test_endpointslice_without_service_label_belongs_to_no_service() -> None:
    obj = slice_obj([], [])
    obj["metadata"]["labels"] = {}
    got = endpointslice_from_api(obj)
    assert got is not None
    assert got.service is None


def test_endpointslice_bad_address_names_the_field() -> None:
    obj = slice_obj([{"addresses": ["10.0.0.1"]}, {"addresses": ["nope"]}], [])
    with pytest.raises(ConversionError) as info:
        endpointslice_from_api(obj)
    assert info.value.field == "endpoints[1].addresses[0]"


def test_legacy_endpoints_become_one_slice_per_subset() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "prod"},
        "subsets": [
            {
                "addresses": [
                    {
                        "ip": "10.244.1.5",
                        "hostname": "web-0",
                        "targetRef": {"kind": "Pod", "name": "web-0"},
                    }
                ],
                "notReadyAddresses": [{"ip": "10.244.1.6"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
            {"addresses": [{"ip": "10.244.2.1"}], "ports": [{"port": 9090}]},
        ],
    }
    got = slices_from_endpoints(obj)
    assert [s.service for s in got] == ["web", "web"]
    assert len({s.name for s in got}) == 2
    # The targetRef pod name is read (and checked) but not kept: no answer uses it.
    assert got[0].endpoints == (
        Endpoint((ip_address("10.244.1.5"),), ready=True, hostname="web-0"),
        Endpoint((ip_address("10.244.1.6"),), ready=False),
    )
    assert got[0].ports == (ServicePort("http", "tcp", 8080),)
    assert got[1].ports == (ServicePort("", "tcp", 9090),)


def test_endpoints_without_subsets_give_no_slices() -> None:
    obj = {"kind": "Endpoints", "metadata": {"name": "web"}}
    assert slices_from_endpoints(obj) == []


def pod_obj(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "prod", **meta},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": status,
    }


def test_running_pod_keeps_all_pod_ips() -> None:
    obj = pod_obj(
        {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244::5"}],
        }
    )
    assert pod_from_api(obj) == Pod(
        "prod", "web-0", ips=(ip_address("10.244.1.5"), ip_address("fd00:10:244::5"))
    )


def test_pod_ip_is_used_when_pod_ips_is_absent() -> None:
    got = pod_from_api(pod_obj({"phase": "Running", "podIP": "10.244.1.5"}))
    assert got is not None
    assert got.ips == (ip_address("10.244.1.5"),)


def test_pending_pod_without_ip() -> None:
    assert pod_from_api(pod_obj({"phase": "Pending"})) == Pod("prod", "web-0")


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Unknown"])
def test_finished_pods_are_not_running(phase: str) -> None:
    assert pod_from_api(pod_obj({"phase": phase, "podIP": "10.244.1.5"})) is None


def test_terminating_pod_is_not_running() -> None:
    obj = pod_obj(
        {"phase": "Running", "podIP": "10.244.1.5"}, deletionTimestamp="2024-01-01T00:00:00Z"
    )
    assert pod_from_api(obj) is None


def test_namespace() -> None:
    assert namespace_from_api({"kind": "Namespace", "metadata": {"name": "Prod"}}) == Namespace(
        "prod"
    )


def test_object_from_api_dispatches_by_kind_or_hint() -> None:
    assert isinstance(object_from_api(svc({"clusterIP": "10.96.0.9"})), Service)
    item = svc({"clusterIP": "10.96.0.9"})
    del item["kind"]  # items of a ServiceList carry no kind
    assert isinstance(object_from_api(item, kind="Service"), Service)
    assert object_from_api({"kind": "ConfigMap", "metadata": {"name": "x"}}) is None
    assert isinstance(object_from_api(pod_obj({"phase": "Running"})), Pod)


def test_equal_ports_and_repeated_strings_are_shared_across_objects() -> None:
    # Issue 5: 100k Services with the same ports hold one ports tuple, not 100k copies.
    def one(name: str) -> dict[str, object]:
        return {
            "metadata": {"name": name, "namespace": "Prod"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "HTTP", "port": 80}]},
        }

    a, b = service_from_api(one("a")), service_from_api(one("b"))
    assert a.ports == (ServicePort("http", "tcp", 80),)
    assert a.ports is b.ports
    assert a.namespace is b.namespace


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http", '"http"'),
        ('say "hi"\n', '"say \\"hi\\"\\n"'),  # one line, whatever the value holds
        ("x" * 61, '"' + "x" * 60 + '..." (61 characters)'),
        (80, "80"),
        (10**60, "an integer of about 61 digits"),
        (-(10**4000), "an integer of about 4001 digits"),
        (None, "None"),
        (True, "True"),
        ([[1, 2]] * 3, "a list of 3 items"),
        ({"a": [1] * 10**6}, "a mapping of 1 keys"),
    ],
)
def test_shown_is_short_and_one_line_and_never_walks_a_container(
    value: object, expected: str
) -> None:
    from kdns.sources.convert import shown

    assert shown(value) == expected
