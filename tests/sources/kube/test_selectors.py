"""The API source asks the server for only what the kubernetes plugin's options serve, as
CoreDNS's watches do: `labelSelector` on Services, EndpointSlices and Pods (`labels`) and
on Namespaces (`namespace_labels`), Pods that are not running left out by a
`fieldSelector`, no EndpointSlice watch with `noendpoints`, pod names kept for
`endpoint_pod_names`. The fake API filters LIST and WATCH as the API server's watch cache
does (an object relabelled out of the selector is DELETED, one relabelled in is ADDED)."""

from __future__ import annotations

import json
import ssl
import urllib.parse
from typing import Any

import aiohttp

from kdns.cluster.model import Kind
from kdns.config.selector import parse_selector
from kdns.sources.convert import SourceFilter
from kdns.sources.kube.source import required_kinds
from tests.fakes.kubeapi import FakeKubeApi, endpoint_slice, namespace, service
from tests.sources.kube.harness import eventually, ip, run_source, watching

WEB = parse_selector("app=web")


def labelled(obj: dict[str, Any], **labels: str) -> dict[str, Any]:
    obj["metadata"].setdefault("labels", {}).update(labels)
    return obj


def pod(
    name: str, ns: str, address: str, *, phase: str = "Running", **labels: str
) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "status": {"phase": phase, "podIP": address, "podIPs": [{"ip": address}]},
    }


def params(fake: FakeKubeApi, path: str, *, watch: bool) -> list[dict[str, str]]:
    """The query parameters of every LIST (or WATCH) of `path`, in order."""
    found = []
    for line in fake.requests:
        method, _, target = line.partition(" ")
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        if method == "GET" and url.path == path and (query.get("watch") == "1") == watch:
            found.append(query)
    return found


# ---- the fake API itself -----------------------------------------------------------------


async def get(fake: FakeKubeApi, path: str) -> tuple[int, Any]:
    assert fake.tls is not None
    context = ssl.create_default_context(cafile=str(fake.tls.ca_cert))
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.url + path, headers=headers, ssl=context) as resp,
    ):
        return resp.status, json.loads(await resp.read())


async def test_the_fake_filters_a_list_by_labels_and_fields(kube_api: FakeKubeApi) -> None:
    kube_api.apply(labelled(service("web", cluster_ip="10.96.0.1"), app="web", tier="front"))
    kube_api.apply(labelled(service("db", cluster_ip="10.96.0.2"), app="db"))
    kube_api.apply(service("bare", cluster_ip="10.96.0.3"))
    kube_api.apply(pod("run", "default", "10.244.0.1"))
    kube_api.apply(pod("done", "default", "10.244.0.2", phase="Succeeded"))

    async def names(path: str) -> list[str]:
        code, body = await get(kube_api, path)
        assert code == 200, body
        return [item["metadata"]["name"] for item in body["items"]]

    assert await names("/api/v1/services?labelSelector=app%3Dweb") == ["web"]
    assert await names("/api/v1/services?labelSelector=app") == ["db", "web"]
    assert await names("/api/v1/services?labelSelector=!app") == ["bare"]
    assert await names("/api/v1/services?labelSelector=app+notin+(web)") == ["bare", "db"]
    assert await names("/api/v1/services?fieldSelector=metadata.name%3Ddb") == ["db"]
    assert await names("/api/v1/pods?fieldSelector=status.phase!%3DSucceeded") == ["run"]
    code, body = await get(kube_api, "/api/v1/services?labelSelector=app+in+()")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = await get(kube_api, "/api/v1/services?fieldSelector=status.phase%3DRunning")
    assert (code, body["message"]) == (400, 'field label not supported: "status.phase"')


# ---- the source ----------------------------------------------------------------------------


async def test_labels_select_services_and_slices_and_follow_relabelling(kube_api, tmp_path):
    kube_api.apply(labelled(service("web", cluster_ip="10.96.0.1"), app="web"))
    kube_api.apply(service("other", cluster_ip="10.96.0.2"))
    slice_ = endpoint_slice("web-a", service_name="web", addresses={"10.244.0.5": True})
    kube_api.apply(labelled(slice_, app="web"))  # the controller copies the Service's labels
    kube_api.apply(endpoint_slice("other-a", service_name="other", addresses={"10.244.0.6": True}))
    async with run_source(kube_api, tmp_path, filters=SourceFilter(labels=WEB)) as run:
        await watching(run, kube_api)
        assert set(run.index.services) == {("default", "web")}
        assert set(run.index.slices) == {("default", "web-a")}
        # Relabelled out of the selector: the watch says DELETED; back in: ADDED.
        kube_api.apply(labelled(service("web", cluster_ip="10.96.0.1"), app="api"))
        await eventually(lambda: ("default", "web") not in run.index.services)
        kube_api.apply(labelled(service("other", cluster_ip="10.96.0.2"), app="web"))
        await eventually(lambda: ("default", "other") in run.index.services)
        kube_api.apply(labelled(service("late", cluster_ip="10.96.0.3"), app="web"))
        await eventually(lambda: ("default", "late") in run.index.services)
    for path in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        for query in params(kube_api, path, watch=False) + params(kube_api, path, watch=True):
            assert query["labelSelector"] == "app=web"
    for query in params(kube_api, "/api/v1/namespaces", watch=False):
        assert "labelSelector" not in query


async def test_namespace_labels_select_namespaces_only(kube_api, tmp_path):
    kube_api.apply(labelled(namespace("prod"), team="a"))
    kube_api.apply(namespace("dev"))
    kube_api.apply(service("web", "dev", cluster_ip="10.96.0.1"))
    filters = SourceFilter(namespace_labels=parse_selector("team in (a, b)"))
    async with run_source(kube_api, tmp_path, filters=filters) as run:
        await watching(run, kube_api)
        assert sorted(run.index.listed_namespaces()) == ["prod"]
        assert ("dev", "web") in run.index.services  # hidden at answer time, not here
        kube_api.apply(labelled(namespace("dev"), team="b"))
        await eventually(lambda: "dev" in run.index.listed_namespaces())
        kube_api.apply(labelled(namespace("prod"), team="c"))
        await eventually(lambda: "prod" not in run.index.listed_namespaces())
    (query,) = params(kube_api, "/api/v1/namespaces", watch=False)
    assert query["labelSelector"] == "team in (a,b)"


async def test_pods_are_asked_running_and_with_the_labels(kube_api, tmp_path):
    kube_api.apply(pod("web-1", "default", "10.244.0.5", app="web"))
    kube_api.apply(pod("web-2", "default", "10.244.0.6", phase="Succeeded", app="web"))
    kube_api.apply(pod("db-1", "default", "10.244.0.7", app="db"))
    kinds = required_kinds(True)
    async with run_source(kube_api, tmp_path, kinds=kinds, filters=SourceFilter(labels=WEB)) as run:
        await watching(run, kube_api)
        assert set(run.index.pods) == {("default", "web-1")}
        kube_api.apply(pod("web-1", "default", "10.244.0.5", phase="Failed", app="web"))
        await eventually(lambda: not run.index.pods)  # it left the field selector: DELETED
    (query,) = params(kube_api, "/api/v1/pods", watch=False)
    assert (
        query["fieldSelector"]
        == "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"
    )
    assert query["labelSelector"] == "app=web"


async def test_noendpoints_watches_no_endpointslices(kube_api, tmp_path):
    kube_api.apply(service("web", cluster_ip="10.96.0.1"))
    kinds = required_kinds(False, endpoints=False)
    assert Kind.ENDPOINT_SLICE not in kinds
    async with run_source(kube_api, tmp_path, kinds=kinds) as run:
        await watching(run, kube_api)
        assert run.index.synced
    assert not params(kube_api, "/apis/discovery.k8s.io/v1/endpointslices", watch=False)


async def test_endpoint_pod_names_keep_the_target_pods_names(kube_api, tmp_path):
    kube_api.apply(service("web", headless=True))
    slice_ = endpoint_slice("web-a", service_name="web", addresses={"10.244.0.5": True})
    slice_["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "web-7d9f-x2b4k"}
    kube_api.apply(slice_)
    async with run_source(kube_api, tmp_path, filters=SourceFilter(pod_names=True)) as run:
        await watching(run, kube_api)
        (endpoint,) = run.index.endpoints("default", "web")
        assert (endpoint.label, endpoint.address) == ("web-7d9f-x2b4k", ip("10.244.0.5"))
    async with run_source(kube_api, tmp_path) as run:  # without the option: the dashed name
        await watching(run, kube_api)
        (endpoint,) = run.index.endpoints("default", "web")
        assert endpoint.label == "10-244-0-5"
