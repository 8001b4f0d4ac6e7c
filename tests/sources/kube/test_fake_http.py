"""The fake API's own HTTP surface: mutations by POST/PUT/DELETE JSON reach watchers."""

from __future__ import annotations

import json
import ssl

import aiohttp

from tests.fakes.kubeapi import FakeKubeApi, service


async def test_http_create_update_delete_are_seen_by_a_watch(kube_api: FakeKubeApi):
    assert kube_api.tls is not None
    context = ssl.create_default_context(cafile=str(kube_api.tls.ca_cert))
    auth = {"Authorization": f"Bearer {kube_api.token}"}
    base = kube_api.url + "/api/v1/namespaces/default/services"
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(base, ssl=context) as resp:
            listed = await resp.json()
        assert listed["kind"] == "ServiceList"
        rv = listed["metadata"]["resourceVersion"]
        async with session.get(
            base, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5"}, ssl=context
        ) as watch:
            async with session.post(base, json=service("web"), ssl=context) as resp:
                assert resp.status == 201
            async with session.post(base, json=service("web"), ssl=context) as resp:
                assert resp.status == 409  # AlreadyExists
            body = service("web", cluster_ip="10.96.0.11")
            async with session.put(f"{base}/web", json=body, ssl=context) as resp:
                assert resp.status == 200
            async with session.delete(f"{base}/web", ssl=context) as resp:
                assert resp.status == 200
            async with session.delete(f"{base}/web", ssl=context) as resp:
                assert resp.status == 404
            types: list[str] = []
            while len(types) < 3:
                line = await watch.content.readline()
                assert line
                event = json.loads(line)
                if event["type"] != "BOOKMARK":
                    types.append(event["type"])
                    assert event["object"]["metadata"]["name"] == "web"
        assert types == ["ADDED", "MODIFIED", "DELETED"]


async def test_wrong_token_is_401_with_a_status_body(kube_api: FakeKubeApi):
    assert kube_api.tls is not None
    context = ssl.create_default_context(cafile=str(kube_api.tls.ca_cert))
    url = kube_api.url + "/api/v1/services"
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer nope"}) as session,
        session.get(url, ssl=context) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["kind"] == "Status"


async def test_watch_from_an_old_version_gets_error_410_after_compaction(kube_api: FakeKubeApi):
    assert kube_api.tls is not None
    context = ssl.create_default_context(cafile=str(kube_api.tls.ca_cert))
    kube_api.apply(service("a"))
    kube_api.compact()
    auth = {"Authorization": f"Bearer {kube_api.token}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        params = {"watch": "1", "resourceVersion": "1"}
        url = kube_api.url + "/api/v1/services"
        async with session.get(url, params=params, ssl=context) as resp:
            assert resp.status == 200  # a real apiserver: 200, then one ERROR event
            event = json.loads(await resp.content.readline())
            assert event["type"] == "ERROR"
            assert event["object"]["code"] == 410
            assert await resp.content.read() == b""  # and the stream ends
