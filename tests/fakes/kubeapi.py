"""A faithful fake Kubernetes API server (aiohttp, HTTPS, bearer token) for tests.

Speaks the list/watch contract (docs/architecture.md#the-kubernetes-api-source): discovery
enough for kubectl; LIST with `kind: XList`, `metadata.resourceVersion`, `limit`/`continue`
(an expired continue -> 410); WATCH with real RV semantics (unset/"0": synthetic ADDED then
live; X: changes after X), idle BOOKMARKs, `timeoutSeconds` clean close, a history window
with `compact()` (old RVs get 200 + ERROR 410, or HTTP 410 with `watch_410_as_http`).
`labelSelector` and `fieldSelector` (metadata.name, metadata.namespace, and a Pod's
status.phase; `=`, `==`, `!=`) filter LIST and WATCH as the API's watch cache does: a
change that makes an object match is sent as ADDED, one that makes it stop matching as
DELETED (its previous state at the new RV); a bad selector is 400 BadRequest.
Mutations through Python (`apply`, `delete`) or HTTP POST/PUT/DELETE JSON. Fault knobs:
`drop_watches()`, `stall()`, `fail_next()`, `expire_watches()`, `rotate_token()`,
`stop()`/`start()` on the same port. Binds 127.0.0.1 only.

Manual use: `python -m tests.fakes.kubeapi --dir /tmp/fake [--port N] [--services N]`
writes `kubeconfig` into --dir and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import secrets
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kdns.config.selector import Selector, SelectorError, parse_selector

GROUP_VERSIONS = {"": "v1", "discovery.k8s.io": "v1"}


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str
    namespaced: bool
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES = {
    r.plural: r
    for r in (
        Resource("services", "Service", "", True, ("svc",)),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", True),
        Resource("namespaces", "Namespace", "", False, ("ns",)),
        Resource("pods", "Pod", "", True, ("po",)),
        Resource("endpoints", "Endpoints", "", True, ("ep",)),
    )
}
BY_KIND = {r.kind: r for r in RESOURCES.values()}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# ---- TLS material ------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls(directory: Path, *, reuse: bool = False) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (openssl CLI);
    `reuse` keeps the files already in `directory` (a restarted fake keeps its CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    if reuse and ca_crt.exists() and crt.exists() and key.exists():
        return TlsFiles(ca_crt, crt, key)
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "3",
         "-subj", "/CN=kdns-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "3", "-extfile", ext],
    ]  # fmt: skip
    for argv in run:
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=30)
    return TlsFiles(ca_crt, crt, key)


# ---- the server --------------------------------------------------------------------------


@dataclass
class _Failure:
    status: int
    count: int
    retry_after: float | None
    watch: bool | None  # None: any request; True: only watches; False: only non-watch
    path: str | None


@dataclass
class _Snapshot:
    resource_version: int
    items: list[dict[str, Any]]
    created: float = field(default_factory=time.monotonic)


@dataclass
class _Event:
    rv: int
    plural: str
    type: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # MODIFIED: the state before; DELETED: the last one


class BadSelectorError(ValueError):
    """A labelSelector or fieldSelector the API would refuse (400 BadRequest)."""


@dataclass(frozen=True)
class Filter:
    """The selectors of one LIST or WATCH request."""

    labels: Selector | None = None
    fields: tuple[tuple[str, str, str], ...] = ()  # (path, "=" or "!=", value)

    @classmethod
    def from_query(cls, query: Mapping[str, str], res: Resource) -> Filter:
        labels = None
        text = query.get("labelSelector", "")
        if text.strip():
            try:
                labels = parse_selector(text)
            except SelectorError as exc:
                raise BadSelectorError(f"unable to parse requirement: {exc}") from None
        fields: list[tuple[str, str, str]] = []
        for part in filter(None, (p.strip() for p in query.get("fieldSelector", "").split(","))):
            op = "!=" if "!=" in part else "==" if "==" in part else "="
            path, _, value = part.partition(op)
            path = path.strip()
            allowed = {"metadata.name", "metadata.namespace"}
            if res.kind == "Pod":
                allowed.add("status.phase")
            if path not in allowed:
                raise BadSelectorError(f'field label not supported: "{path}"')
            fields.append((path, "!=" if op == "!=" else "=", value.strip()))
        return cls(labels, tuple(fields))

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.labels is not None and not self.labels.matches(meta.get("labels") or {}):
            return False
        for path, op, value in self.fields:
            section, _, key = path.partition(".")
            got = str((obj.get(section) or {}).get(key) or "")
            if (got == value) != (op == "="):
                return False
        return True


class FakeKubeApi:
    """The fake API server. Use `await start()` / `await stop()` (or the pytest fixture)."""

    def __init__(
        self,
        *,
        tls: TlsFiles | None,
        token: str = "test-token",
        bookmark_interval: float = 1.0,
        history: int = 100_000,
        port: int = 0,
    ) -> None:
        self.tls = tls
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.history = history
        self.port = port
        self.rv = 1
        self.compacted_rv = 1  # events with rv <= this are gone
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[_Event] = []
        self.watch_410_as_http = False
        self.requests: list[str] = []  # "GET /api/v1/services?..." in order
        self._wakeup = asyncio.Event()  # replaced by a fresh one on every notify
        self._snapshots: dict[str, _Snapshot] = {}
        self._failures: list[_Failure] = []
        self._watches: dict[web.StreamResponse, web.Request] = {}
        self._stalled = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._expire_flag = 0
        self._drop_flag = 0
        self._drop_mid_line = False
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve on 127.0.0.1 (the same port again after a stop())."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=context, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._runner = runner

    async def stop(self) -> None:
        """The API goes away: watches are cut, new connections are refused."""
        if self._runner is None:
            return
        self.drop_watches()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    # ---- data --------------------------------------------------------------------------

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(
        self, plural: str, type_: str, obj: dict[str, Any], prev: dict[str, Any] | None = None
    ) -> None:
        self.events.append(_Event(self.rv, plural, type_, obj, prev))
        if len(self.events) > self.history:
            dropped = self.events[: len(self.events) - self.history]
            del self.events[: len(dropped)]
            self.compacted_rv = dropped[-1].rv
        self._notify()

    def _notify(self) -> None:
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (by kind/namespace/name); emits ADDED or MODIFIED."""
        obj = copy.deepcopy(obj)
        res = BY_KIND[obj["kind"]]
        obj.setdefault("apiVersion", res.api_version)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = (res.plural, meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(self._bump())
        self.objects[key] = obj
        self._record(res.plural, "MODIFIED" if old else "ADDED", obj, old)
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete an object; emits DELETED with its last state (and a new RV)."""
        res = BY_KIND.get(kind) or RESOURCES[kind]
        obj = self.objects.pop((res.plural, namespace if res.namespaced else "", name), None)
        if obj is None:
            return None
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._bump())
        self._record(res.plural, "DELETED", obj, obj)
        return obj

    def compact(self) -> None:
        """Forget all history: watches from any older RV get 410 (etcd compaction)."""
        self.events.clear()
        self.compacted_rv = self.rv

    # ---- fault knobs -------------------------------------------------------------------

    def drop_watches(self, *, mid_line: bool = False) -> None:
        """Abruptly close every open watch's transport (optionally after half a line)."""
        self._drop_mid_line = mid_line
        self._drop_flag += 1
        for request in list(self._watches.values()):
            transport = request.transport
            if transport is None:
                continue
            if mid_line:  # one well-formed HTTP chunk holding half a JSON line
                half = b'{"type":"ADDED","object":{"metadata":{"na'
                transport.write(b"%x\r\n%s\r\n" % (len(half), half))
            transport.abort()
        self._notify()

    def stall(self, stalled: bool = True) -> None:
        """Stalled: open watches and new ones send nothing more (the connection stays open)."""
        self._stalled = stalled
        if stalled:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    def expire_watches(self) -> None:
        """Send ERROR 410 to every open watch, then end it (a watcher fell behind)."""
        self._expire_flag += 1
        self._notify()

    def expire_continue_tokens(self) -> None:
        self._snapshots.clear()

    def fail_next(
        self,
        status_code: int,
        count: int = 1,
        *,
        retry_after: float | None = None,
        watch: bool | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` matching API requests with this HTTP status."""
        self._failures.append(_Failure(status_code, count, retry_after, watch, path))

    def open_watches(self, plural: str | None = None) -> int:
        """How many watches are being served (of one resource, e.g. "services")."""
        return sum(
            1 for request in self._watches.values() if plural is None or plural in request.path
        )

    def clear_failures(self) -> None:
        self._failures.clear()

    def rotate_token(self, new: str | None = None) -> str:
        """Accept only a new token from now on (old one gets 401); returns it."""
        self.token = new or secrets.token_hex(8)
        return self.token

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig pointing at this server (CA, bearer token)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority"] = str(self.tls.ca_cert)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": {"token": token or self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # ---- HTTP --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        is_watch = request.query.get("watch") in ("1", "true")
        for failure in self._failures:
            if failure.count <= 0:
                continue
            if failure.watch is not None and failure.watch != is_watch:
                continue
            if failure.path is not None and failure.path not in request.path:
                continue
            failure.count -= 1
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(int(failure.retry_after))
            return web.json_response(
                status(failure.status, "Injected", f"injected {failure.status}"),
                status=failure.status,
                headers=headers,
            )
        parts = [p for p in request.path.split("/") if p]
        if request.path == "/version":
            return web.json_response(
                {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "platform": "linux"}
            )
        if parts == ["api"]:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            version = {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": "discovery.k8s.io",
                            "versions": [version],
                            "preferredVersion": version,
                        }
                    ],
                }
            )
        if parts in (["api", "v1"], ["apis", "discovery.k8s.io", "v1"]):
            group = "" if parts[0] == "api" else parts[1]
            return web.json_response(self._resource_list(group))
        route = self._route(parts)
        if route is None:
            return web.json_response(
                status(404, "NotFound", "the server could not find it"), status=404
            )
        res, namespace, name = route
        if request.method == "GET" and name is None:
            try:
                selected = Filter.from_query(request.query, res)
            except BadSelectorError as exc:
                return web.json_response(status(400, "BadRequest", str(exc)), status=400)
            if is_watch:
                return await self._watch(request, res, namespace, selected)
            return self._list(request, res, namespace, selected)
        if request.method == "GET":
            obj = self.objects.get((res.plural, namespace or "", name or ""))
            if obj is None:
                return web.json_response(status(404, "NotFound", f'"{name}" not found'), status=404)
            return web.json_response(obj)
        if request.method in ("POST", "PUT"):
            body = await request.json()
            body.setdefault("kind", res.kind)
            if namespace and res.namespaced:
                body.setdefault("metadata", {})["namespace"] = namespace
            exists = (res.plural, namespace or "", body["metadata"]["name"]) in self.objects
            if request.method == "POST" and exists:
                return web.json_response(status(409, "AlreadyExists", "already exists"), status=409)
            return web.json_response(self.apply(body), status=201 if not exists else 200)
        if request.method == "DELETE" and name is not None:
            gone = self.delete(res.kind, namespace or "", name)
            if gone is None:
                return web.json_response(status(404, "NotFound", f'"{name}" not found'), status=404)
            return web.json_response(gone)
        return web.json_response(status(405, "MethodNotAllowed", "not allowed"), status=405)

    def _resource_list(self, group: str) -> dict[str, Any]:
        resources = [
            {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "update", "watch"],
                "shortNames": list(r.short),
            }
            for r in RESOURCES.values()
            if r.group == group
        ]
        gv = f"{group}/v1" if group else "v1"
        return {"kind": "APIResourceList", "groupVersion": gv, "resources": resources}

    def _route(self, parts: list[str]) -> tuple[Resource, str | None, str | None] | None:
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif parts[:3] == ["apis", "discovery.k8s.io", "v1"]:
            rest = parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in RESOURCES:
            namespace, rest = rest[1], rest[2:]
        if not rest or rest[0] not in RESOURCES or len(rest) > 2:
            return None
        res = RESOURCES[rest[0]]
        if res.group != (parts[1] if parts[0] == "apis" else ""):
            return None
        return res, namespace, rest[1] if len(rest) == 2 else None

    def _matching(self, res: Resource, namespace: str | None) -> Iterator[dict[str, Any]]:
        for (plural, ns, _), obj in sorted(self.objects.items()):
            if plural == res.plural and (namespace is None or ns == namespace):
                yield obj

    def _list(
        self, request: web.Request, res: Resource, namespace: str | None, selected: Filter
    ) -> web.Response:
        token = request.query.get("continue", "")
        limit = int(request.query.get("limit") or 0)
        if request.query.get("resourceVersion") == "0" and not token:
            limit = 0  # The API's contract: RV="0" is served from the watch cache, ignores limit
        if token:
            snapshot = self._snapshots.get(token)
            if snapshot is None or snapshot.resource_version < self.compacted_rv:
                body = status(
                    410, "Expired", "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue "
                    "parameter."
                )  # fmt: skip
                return web.json_response(body, status=410)
            del self._snapshots[token]
        else:
            items = [
                copy.deepcopy(o) for o in self._matching(res, namespace) if selected.matches(o)
            ]
            for item in items:
                item.pop("kind", None)  # list items carry no kind/apiVersion
                item.pop("apiVersion", None)
            snapshot = _Snapshot(self.rv, items)
        items = snapshot.items
        meta: dict[str, Any] = {"resourceVersion": str(snapshot.resource_version)}
        if limit and len(items) > limit:
            rest = _Snapshot(snapshot.resource_version, items[limit:])
            items = items[:limit]
            next_token = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
            self._snapshots[next_token] = rest
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(rest.items)
        body = {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta,
                "items": items}  # fmt: skip
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None, selected: Filter
    ) -> web.StreamResponse:
        query = request.query
        rv_param = query.get("resourceVersion", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        expired = rv_param not in ("", "0") and int(rv_param) < self.compacted_rv
        too_old = status(
            410, "Expired", f"too old resource version: {rv_param} ({self.compacted_rv})"
        )
        if expired and self.watch_410_as_http:
            return web.json_response(too_old, status=410)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        self._watches[resp] = request
        await resp.prepare(request)
        drop_flag, expire_flag = self._drop_flag, self._expire_flag
        try:
            if expired:
                # A real apiserver: 200, one ERROR event, end of stream (what a real one sends).
                await self._send(resp, "ERROR", too_old)
                return resp
            if rv_param in ("", "0"):
                position = self.rv
                for obj in list(self._matching(res, namespace)):
                    if selected.matches(obj):
                        await self._send(resp, "ADDED", obj)
            else:
                position = int(rv_param)
            deadline = time.monotonic() + timeout
            while True:
                wakeup = self._wakeup
                if self._stalled:
                    await self._unstalled.wait()
                if self._drop_flag != drop_flag:
                    break
                if self._expire_flag != expire_flag:
                    gone = status(410, "Expired", "watch expired: the watcher fell behind")
                    await self._send(resp, "ERROR", gone)
                    break
                sent = False
                for event in [e for e in self.events if e.rv > position]:
                    position = event.rv
                    if event.plural != res.plural:
                        continue
                    ns = event.obj["metadata"].get("namespace")
                    if namespace is not None and ns != namespace:
                        continue
                    seen = _as_seen(event, selected)
                    if seen is not None:
                        await self._send(resp, *seen)
                        sent = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break  # timeoutSeconds: a clean end of the stream
                try:
                    await asyncio.wait_for(wakeup.wait(), min(remaining, self.bookmark_interval))
                except TimeoutError:
                    if bookmarks and not sent and not self._stalled:
                        position = max(position, self.rv)
                        bookmark = {"kind": res.kind, "apiVersion": res.api_version,
                                    "metadata": {"resourceVersion": str(position)}}  # fmt: skip
                        await self._send(resp, "BOOKMARK", bookmark)
            if self._drop_flag == drop_flag:
                await resp.write_eof()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self._watches.pop(resp, None)
        return resp

    async def _send(self, resp: web.StreamResponse, type_: str, obj: dict[str, Any]) -> None:
        await resp.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")


def _as_seen(event: _Event, selected: Filter) -> tuple[str, dict[str, Any]] | None:
    """What a watch with `selected` sees of `event` (the API's watch cache): whether the
    object matches now and matched before decides ADDED, MODIFIED, DELETED or nothing."""
    now = event.type != "DELETED" and selected.matches(event.obj)
    before = event.prev is not None and selected.matches(event.prev)
    if now:
        return ("MODIFIED" if before else "ADDED"), event.obj
    if before:
        assert event.prev is not None
        gone = copy.deepcopy(event.prev)
        gone["metadata"]["resourceVersion"] = str(event.rv)
        return "DELETED", gone
    return None


# ---- builders ----------------------------------------------------------------------------


def service(
    name: str,
    namespace: str = "default",
    *,
    cluster_ip: str | None = "10.96.0.10",
    port: int = 80,
    headless: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }
    if headless:
        spec["clusterIP"] = "None"
        spec["clusterIPs"] = ["None"]
    elif cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoint_slice(
    name: str,
    namespace: str = "default",
    *,
    service_name: str,
    addresses: dict[str, bool],
    port: int = 8080,
) -> dict[str, Any]:
    """A slice with one endpoint per address; the bool is `conditions.ready`."""
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in addresses.items()
        ],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def namespace(name: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name}}


# ---- pytest fixtures (import them into a conftest.py) ------------------------------------


@pytest.fixture(scope="session")
def kube_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """One throwaway CA + server certificate per test session."""
    return make_tls(tmp_path_factory.mktemp("kube-tls"))


@pytest.fixture
async def kube_api(kube_tls: TlsFiles) -> AsyncIterator[FakeKubeApi]:
    """A running fake API (HTTPS, token) holding the namespace `default`."""
    fake = FakeKubeApi(tls=kube_tls, bookmark_interval=0.2)
    fake.apply(namespace("default"))
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def kubeconfig_for(fake: FakeKubeApi, path: Path, *, token: str | None = None) -> Path:
    """Write a kubeconfig for `fake` at `path` (CA + bearer token) and return the path."""
    return fake.write_kubeconfig(path, token=token)


# ---- manual use --------------------------------------------------------------------------


async def _main(directory: Path, port: int, services: int) -> None:
    fake = FakeKubeApi(tls=make_tls(directory / "tls", reuse=True), port=port)
    fake.apply(namespace("default"))
    fake.apply(namespace("kube-system"))
    for i in range(services):
        fake.apply(service(f"svc{i}", cluster_ip=f"10.96.{i // 250}.{i % 250 + 1}"))
    await fake.start()
    kubeconfig = fake.write_kubeconfig(directory / "kubeconfig")
    print(f"fake API at {fake.url}; KUBECONFIG={kubeconfig}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where kubeconfig and TLS go")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--services", type=int, default=0, help="seed this many Services")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.dir, args.port, args.services))
    except KeyboardInterrupt:
        pass
