"""The Kubernetes API over aiohttp: one LIST page, one WATCH stream, typed errors.

Owns the HTTP protocol details (docs/architecture.md, "The Kubernetes API source"):
`limit`/`continue` paging, watch query parameters, newline-delimited JSON framing split
here with no line-length limit (aiohttp's `readline` stops at 64 KiB), timeouts, and
mapping HTTP statuses to exceptions. It does not retry, back off, convert objects or touch
the index: that is `watch.py`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from kdns.cluster.model import Kind
from kdns.sources.kube.auth import Credentials

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _version

    USER_AGENT = f"kdns/{_version('kdns')}"
except Exception:  # not installed as a distribution (running from a checkout)
    USER_AGENT = "kdns/0.1.0"

# Cluster-wide collection paths (all namespaces).
RESOURCE_PATHS: dict[Kind, str] = {
    Kind.SERVICE: "/api/v1/services",
    Kind.ENDPOINT_SLICE: "/apis/discovery.k8s.io/v1/endpointslices",
    Kind.NAMESPACE: "/api/v1/namespaces",
    Kind.POD: "/api/v1/pods",
}

PAGE_SIZE = 500
"""Items per LIST page: client-go's pager default."""


# ---- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """The API answered with an error (an HTTP status, or an ERROR watch event)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"HTTP {status} {reason}: {message}".rstrip(": "))


class UnauthorizedError(ApiError):
    """401: the credentials are wrong or expired; reload them."""


class ForbiddenError(ApiError):
    """403: RBAC does not allow list/watch of this resource."""


class NotFoundError(ApiError):
    """404: the resource does not exist on this server (API group not served?)."""


class ExpiredError(ApiError):
    """410 Gone/ExpiredError: the resourceVersion or continue token fell out of history; relist."""


class TooManyRequestsError(ApiError):
    """429: the server asks us to slow down for `retry_after` seconds."""

    def __init__(self, status: int, reason: str = "", message: str = "", *, retry_after: float):
        super().__init__(status, reason, message)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx (or any other unexpected status)."""


class UnreachableError(Exception):
    """No HTTP answer: connection refused or reset, TLS failure, read timeout (a stalled
    connection), or a stream cut mid-line. `tls` is True when the server's certificate
    did not verify (a rotated CA: worth reloading the credentials)."""

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls


_ERRORS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    410: ExpiredError,
}


def error_for(status: int, body: Any, *, retry_after: str | None = None) -> ApiError:
    """The typed error for an HTTP status (or an ERROR event's Status object)."""
    reason = message = ""
    if isinstance(body, dict):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or "")
    if status == 429:
        try:
            seconds = float(retry_after) if retry_after else 1.0
        except ValueError:
            seconds = 1.0
        return TooManyRequestsError(status, reason, message, retry_after=max(0.0, seconds))
    return _ERRORS.get(status, ServerError)(status, reason, message)


# ---- data --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One LIST page: raw items (convert and drop them at once), the list's RV, and the
    continue token ("" on the last page)."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch line: type, object, and time.monotonic() when its bytes were read."""

    type: str
    object: dict[str, Any]
    received_at: float


# ---- the client --------------------------------------------------------------------------


class KubeApi:
    """An aiohttp session bound to one set of credentials."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        connect_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 90.0,
        watch_timeout_range: tuple[int, int] = (240, 300),
        rng: random.Random | None = None,
    ) -> None:
        self.credentials = credentials
        # total=None: a watch is long-lived. sock_read is the inactivity timeout that
        # catches a silently stalled (half-open) connection; bookmarks keep it fed.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_seconds, sock_read=read_timeout_seconds
        )
        self._watch_timeout_range = watch_timeout_range
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(keepalive_timeout=30, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                # Our own framing (watch) and json.loads (list): no size limit from aiohttp.
                read_bufsize=2**20,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, path: str, params: dict[str, str]) -> aiohttp.ClientResponse:
        url = self.credentials.host + path
        try:
            resp = await self._client().get(
                url,
                params=params,
                headers=self.credentials.headers(),
                ssl=self.credentials.ssl_context,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            tls = isinstance(exc, aiohttp.ClientConnectorCertificateError)
            raise UnreachableError(f"GET {path}: {_describe(exc)}", tls=tls) from exc
        if resp.status != 200:
            try:
                body: Any = json.loads(await resp.read())
            except (ValueError, aiohttp.ClientError, TimeoutError, OSError):
                body = None
            finally:
                resp.release()
            raise error_for(resp.status, body, retry_after=resp.headers.get("Retry-After"))
        return resp

    async def list_page(
        self,
        kind: Kind,
        *,
        continue_token: str = "",
        limit: int = PAGE_SIZE,
        label_selector: str = "",
        field_selector: str = "",
    ) -> Page:
        """GET one page of the cluster-wide list (RV unset: a consistent, current read) of
        the objects the selectors match (every page asks with the same selectors, as
        client-go's pager does)."""
        params = {"limit": str(limit), **_selectors(label_selector, field_selector)}
        if continue_token:
            params["continue"] = continue_token
        resp = await self._get(RESOURCE_PATHS[kind], params)
        try:
            body = json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UnreachableError(f"LIST {kind}: {_describe(exc)}") from exc
        except ValueError as exc:
            raise ServerError(200, "BadJSON", str(exc)) from exc
        finally:
            resp.release()
        meta = body.get("metadata") or {}
        return Page(
            items=body.get("items") or [],
            resource_version=str(meta.get("resourceVersion") or ""),
            continue_token=str(meta.get("continue") or ""),
        )

    async def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
    ) -> WatchStream:
        """Open a watch of the changes after `resource_version` (returns once the server
        has answered 200); iterate the stream until the server ends it.

        A bounded `timeoutSeconds` makes the server end it cleanly now and then; the caller
        re-watches from the last RV. ERROR events are yielded as they come. With selectors
        the server sends only matching objects: one that stops matching comes as DELETED,
        one that starts matching as ADDED.
        """
        low, high = self._watch_timeout_range
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._rng.randint(low, high)),
            **_selectors(label_selector, field_selector),
        }
        return WatchStream(kind, await self._get(RESOURCE_PATHS[kind], params))


class WatchStream:
    """One open watch response: `async with` it, then `async for` its events."""

    def __init__(self, kind: Kind, response: aiohttp.ClientResponse) -> None:
        self._kind = kind
        self._response = response

    async def __aenter__(self) -> WatchStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._response.close()  # never reuse a half-read watch connection

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[WatchEvent]:
        # Chunk boundaries are not line boundaries, and lines may exceed
        # aiohttp's 64 KiB readline limit: split on b"\n" ourselves, with no limit.
        buffer = bytearray()
        try:
            async for chunk in self._response.content.iter_any():
                received_at = time.monotonic()
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    line = bytes(buffer[start:end])
                    start = end + 1
                    if line.strip():
                        yield _parse_line(line, received_at)
                del buffer[:start]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UnreachableError(f"WATCH {self._kind}: {_describe(exc)}") from exc
        if buffer.strip():
            # The stream ended inside a line: the connection was cut, not closed cleanly.
            raise UnreachableError(
                f"WATCH {self._kind}: stream ended mid-line ({len(buffer)} bytes)"
            )


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _parse_line(line: bytes, received_at: float) -> WatchEvent:
    try:
        data = json.loads(line)
        return WatchEvent(str(data["type"]), data["object"], received_at)
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(200, "BadWatchLine", f"{exc}: {line[:200]!r}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out (no data: connection stalled or server unreachable)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host}:{exc.port} not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
