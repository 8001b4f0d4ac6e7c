"""The Kubernetes source against the fake API: sync, changes, and every fault it handles.

Assertions are on a real `kdns.cluster.index.Index`. Expected behaviour comes from the list/watch
contract and client-go's Reflector (docs/architecture.md#the-kubernetes-api-source) and from
CoreDNS's behaviour while unsynced or cut off (docs/rules.md, "kdns's own choices").
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kdns.cluster.model import Kind, Replace, Upsert
from tests.fakes.kubeapi import FakeKubeApi, endpoint_slice, namespace, service
from tests.sources.kube.harness import eventually, ip, run_source, watching


def _requests(fake: FakeKubeApi, path: str, *, watch: bool) -> list[str]:
    return [
        r for r in fake.requests if r.startswith(f"GET {path}?") and (("watch=1" in r) == watch)
    ]


async def test_first_list_syncs_the_index_with_every_kind(kube_api, tmp_path):
    kube_api.apply(namespace("apps"))
    kube_api.apply(service("web", "apps", cluster_ip="10.96.1.1"))
    kube_api.apply(
        endpoint_slice("web-1", "apps", service_name="web", addresses={"10.1.0.1": True})
    )
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        web = run.index.service("apps", "web")
        assert web is not None
        assert web.cluster_ips == (ip("10.96.1.1"),)
        assert [e.address for e in run.index.endpoints("apps", "web")] == [ip("10.1.0.1")]
        assert set(run.index.namespaces) == {"default", "apps"}
        await eventually(lambda: run.stats.api_up == 1)
        assert set(run.stats.last_sync_unix) == {"Service", "EndpointSlice", "Namespace"}


async def test_not_synced_until_every_kind_has_listed(kube_api, tmp_path):
    # As CoreDNS's HasSynced: every enabled informer must have listed.
    kube_api.fail_next(500, count=10**6, path="endpointslices")
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: Kind.SERVICE in run.index._listed)
        await eventually(lambda: len(run.sleep.delays) >= 3)
        assert not run.index.synced
        kube_api.clear_failures()
        await eventually(lambda: run.index.synced)


async def test_services_added_changed_and_deleted_follow_the_watch(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        kube_api.apply(service("web", cluster_ip="10.96.0.5"))
        await eventually(lambda: run.index.service("default", "web") is not None)
        kube_api.apply(service("web", cluster_ip="10.96.0.6"))
        await eventually(
            lambda: (
                getattr(run.index.service("default", "web"), "cluster_ips", ())
                == (ip("10.96.0.6"),)
            )
        )
        kube_api.delete("Service", "default", "web")
        await eventually(lambda: run.index.service("default", "web") is None)
        # One LIST only: the changes came over the watch.
        assert len(_requests(kube_api, "/api/v1/services", watch=False)) == 1


async def test_watch_events_carry_the_time_their_line_was_read(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        kube_api.apply(service("web"))
        await eventually(lambda: run.index.service("default", "web") is not None)
        upserts = [(e, t) for e, t in run.applied if isinstance(e, Upsert)]
        assert upserts
        assert all(t is not None for _, t in upserts)


async def test_endpoint_readiness_flips_are_followed(kube_api, tmp_path):
    kube_api.apply(service("db", headless=True))
    slice_ready = endpoint_slice("db-1", service_name="db", addresses={"10.1.0.7": True})
    kube_api.apply(slice_ready)
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: len(run.index.endpoints("default", "db")) == 1)
        kube_api.apply(endpoint_slice("db-1", service_name="db", addresses={"10.1.0.7": False}))
        await eventually(lambda: len(run.index.endpoints("default", "db")) == 0)
        kube_api.apply(slice_ready)
        await eventually(lambda: len(run.index.endpoints("default", "db")) == 1)


async def test_clean_end_of_watch_rewatches_from_the_last_resource_version(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path, watch_timeout_range=(1, 1)) as run:
        await eventually(lambda: run.index.synced)
        kube_api.apply(service("a"))
        await eventually(lambda: run.index.service("default", "a") is not None)
        last_rv = kube_api.objects[("services", "default", "a")]["metadata"]["resourceVersion"]
        await eventually(lambda: run.stats.watch_restarts.get("Service", 0) >= 1, within=4)
        kube_api.apply(service("b"))
        await eventually(lambda: run.index.service("default", "b") is not None)
        watches = _requests(kube_api, "/api/v1/services", watch=True)
        # The re-watch starts at (or after, via a bookmark) the RV of the last event seen.
        rvs = [int(w.split("resourceVersion=")[1].split("&")[0]) for w in watches]
        assert rvs[1] >= int(last_rv)
        assert len(_requests(kube_api, "/api/v1/services", watch=False)) == 1  # no relist
        assert run.sleep.delays == []  # a clean end is not an error: no backoff


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_compacted_history_relists_and_replaces_the_kind(kube_api, tmp_path, as_http):
    kube_api.watch_410_as_http = as_http
    kube_api.apply(service("stays"))
    kube_api.apply(service("goes"))
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        await kube_api.stop()  # the API goes away ...
        await eventually(lambda: run.stats.api_up == 0)
        kube_api.delete("Service", "default", "goes")  # ... objects change meanwhile ...
        kube_api.apply(service("new", cluster_ip="10.96.0.99"))
        kube_api.compact()  # ... and history is compacted: the old RV is gone (410)
        assert run.index.service("default", "goes") is not None  # last known data kept
        await kube_api.start()
        await eventually(lambda: run.index.service("default", "new") is not None)
        await eventually(lambda: run.index.service("default", "goes") is None)
        assert run.index.service("default", "stays") is not None
        assert run.stats.relists.get("Service", 0) >= 1
        assert any(isinstance(e, Replace) and e.kind is Kind.SERVICE for e, _ in run.applied[3:])
        await eventually(lambda: run.stats.api_up == 1)


async def test_error_410_event_mid_stream_relists(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        lists_before = len(_requests(kube_api, "/api/v1/services", watch=False))
        kube_api.expire_watches()
        await eventually(
            lambda: len(_requests(kube_api, "/api/v1/services", watch=False)) > lists_before
        )
        await eventually(lambda: run.stats.relists.get("Service", 0) == 1)
        kube_api.apply(service("after"))
        await eventually(lambda: run.index.service("default", "after") is not None)


async def test_expired_continue_token_restarts_the_list(kube_api, tmp_path):
    for i in range(5):
        kube_api.apply(service(f"s{i}", cluster_ip=f"10.96.0.{i + 1}"))
    original = kube_api._list
    expired: list[str] = []

    def list_expiring(request, res, ns, selected):
        # The first continued page finds its token expired (the API expires them after ~5 min).
        if request.query.get("continue") and not expired:
            expired.append(request.path_qs)
            kube_api.expire_continue_tokens()
        return original(request, res, ns, selected)

    kube_api._list = list_expiring
    async with run_source(kube_api, tmp_path, page_size=2) as run:
        await eventually(lambda: run.index.synced)
        assert expired
        assert {name for _, name in run.index.services} == {f"s{i}" for i in range(5)}
        first_pages = [
            r for r in _requests(kube_api, "/api/v1/services", watch=False) if "continue" not in r
        ]
        assert len(first_pages) == 2  # the list was restarted from the beginning
        assert all("limit=2" in r for r in first_pages)


async def test_dropped_watches_recover_with_backoff(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        kube_api.drop_watches()
        await eventually(lambda: run.stats.watch_restarts.get("Service", 0) >= 1)
        kube_api.apply(service("after-drop"))
        await eventually(lambda: run.index.service("default", "after-drop") is not None)
        assert run.sleep.delays
        assert run.sleep.delays[0] >= 0.8  # backoff starts at 0.8 s
        kube_api.drop_watches(mid_line=True)
        await eventually(lambda: run.stats.watch_restarts.get("Service", 0) >= 2)
        kube_api.apply(service("after-cut"))
        await eventually(lambda: run.index.service("default", "after-cut") is not None)
        # A drop is not a 410: the watch resumes, no relist.
        assert run.stats.relists.get("Service", 0) == 0


async def test_a_silently_stalled_watch_is_detected_by_the_read_timeout(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path, read_timeout_seconds=0.5) as run:
        await watching(run, kube_api)
        kube_api.bookmark_interval = 0.1  # healthy watches are fed well within 0.5 s
        kube_api.stall()
        await eventually(lambda: run.stats.api_up == 0, within=3)
        kube_api.stall(False)
        kube_api.apply(service("after-stall"))
        await eventually(lambda: run.index.service("default", "after-stall") is not None)
        assert run.stats.watch_restarts.get("Service", 0) >= 1


async def test_429_honours_retry_after(kube_api, tmp_path):
    kube_api.fail_next(429, retry_after=7, path="services")
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        assert 7 in run.sleep.delays


async def test_401_reloads_credentials(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        new_token = kube_api.rotate_token()
        kube_api.drop_watches()  # the reconnect meets the new token: 401
        await eventually(
            lambda: any(r.startswith("GET /api/v1/services?") for r in kube_api.requests[-3:])
        )
        kube_api.write_kubeconfig(run.kubeconfig, token=new_token)  # the credential rotates
        kube_api.apply(service("after-401"))
        await eventually(lambda: run.index.service("default", "after-401") is not None)


@pytest.mark.parametrize("code", [403, 404])
async def test_403_and_404_are_logged_and_retried_keeping_the_index(
    kube_api, tmp_path, caplog, code
):
    caplog.set_level(logging.ERROR, logger="kdns.sources.kube.watch")
    kube_api.apply(service("kept"))
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        kube_api.fail_next(code, count=3, path="services")
        kube_api.drop_watches()
        await eventually(lambda: f"HTTP {code}" in caplog.text)
        assert run.index.service("default", "kept") is not None  # not wiped
        kube_api.apply(service("later"))
        await eventually(lambda: run.index.service("default", "later") is not None)
        assert run.stats.relists.get("Service", 0) == 0


async def test_api_absent_at_start_is_retried_until_it_appears(kube_tls, tmp_path):
    fake = FakeKubeApi(tls=kube_tls, bookmark_interval=0.2)
    await fake.start()  # learn a free port, then go away: connection refused
    await fake.stop()
    fake.apply(namespace("default"))
    fake.apply(service("web", cluster_ip="10.96.0.20"))
    try:
        async with run_source(fake, tmp_path) as run:
            await eventually(lambda: len(run.sleep.delays) >= 3)
            assert not run.index.synced
            assert run.stats.api_up == 0
            await fake.start()
            await eventually(lambda: run.index.synced)
            assert run.index.service("default", "web") is not None
    finally:
        await fake.stop()


async def test_api_away_keeps_answers_and_says_so(kube_api, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    kube_api.apply(service("web"))
    async with run_source(kube_api, tmp_path) as run:
        await watching(run, kube_api)
        await eventually(lambda: run.stats.api_up == 1)
        await kube_api.stop()
        await eventually(lambda: run.stats.api_up == 0)
        assert run.index.synced
        assert run.index.service("default", "web") is not None
        assert "answering from the last known data" in caplog.text


async def test_unconvertible_objects_are_skipped_and_unknown_deletes_are_harmless(
    kube_api, tmp_path, caplog
):
    caplog.set_level(logging.WARNING)
    bad = service("bad", cluster_ip="not-an-ip")
    kube_api.apply(bad)
    kube_api.apply(service("good"))
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        assert run.index.service("default", "bad") is None
        assert run.index.service("default", "good") is not None
        assert "default/bad" in caplog.text
        kube_api.apply(bad)  # MODIFIED, still bad: skipped again
        kube_api.delete("Service", "default", "bad")  # DELETED of an object we never held
        kube_api.apply(service("after"))
        await eventually(lambda: run.index.service("default", "after") is not None)
        assert not run.task.done()


async def test_a_pod_that_stops_running_is_removed(kube_api, tmp_path):
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "status": {"phase": "Running", "podIP": "10.1.0.9", "podIPs": [{"ip": "10.1.0.9"}]},
    }
    kube_api.apply(pod)
    kinds = (Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE, Kind.POD)
    async with run_source(kube_api, tmp_path, kinds=kinds) as run:
        await eventually(lambda: run.index.pod_exists("default", ip("10.1.0.9")))
        pod["status"]["phase"] = "Succeeded"
        kube_api.apply(pod)
        await eventually(lambda: not run.index.pod_exists("default", ip("10.1.0.9")))


async def test_a_watch_line_over_128_kib_is_read(kube_api, tmp_path):
    async with run_source(kube_api, tmp_path) as run:
        await eventually(lambda: run.index.synced)
        big = service("big", cluster_ip="10.96.0.77")
        big["metadata"]["annotations"] = {"blob": "x" * 200_000}
        kube_api.apply(big)
        await eventually(lambda: run.index.service("default", "big") is not None)


async def test_pagination_across_many_namespaces_lists_everything(kube_api, tmp_path):
    expected = set()
    for n in range(10):
        kube_api.apply(namespace(f"ns{n}"))
        for i in range(3):
            kube_api.apply(service(f"s{i}", f"ns{n}", cluster_ip=f"10.96.{n}.{i + 1}"))
            expected.add((f"ns{n}", f"s{i}"))
    async with run_source(kube_api, tmp_path, page_size=4) as run:
        await eventually(lambda: run.index.synced)
        assert set(run.index.services) == expected
        assert len(run.index.namespaces) == 11
        pages = _requests(kube_api, "/api/v1/services", watch=False)
        assert len(pages) == 8  # 30 Services, 4 per page, following `continue`
