"""`kdns explain --server URL`: ask a running kdns's `/debug/explain` for the JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from kdns.explain.run import ExplainError

TIMEOUT_SECONDS = 15.0  # the server may forward (2 s per upstream try)


def fetch(server: str, name: str, qtype: str | None) -> dict[str, Any]:
    """The explanation from `server` (http://HOST:PORT, the scheme optional). Raises
    ExplainError with one line naming the server and the fix."""
    base = server if "://" in server else f"http://{server}"
    if not base.startswith(("http://", "https://")):
        raise ExplainError(f"--server {server}: give an http:// URL, e.g. http://127.0.0.1:9154")
    params = {"name": name, **({"type": qtype} if qtype else {})}
    url = f"{base.rstrip('/')}/debug/explain?{urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        raise ExplainError(f"--server {server}: {_error_text(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise ExplainError(
            f"--server {server}: cannot reach it ({why}); is kdns serving with --debug-addr "
            "there (default 127.0.0.1:9154)?"
        ) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise ExplainError(f"--server {server}: the reply is not JSON; is it kdns?") from None
    if not isinstance(data, dict):
        raise ExplainError(f"--server {server}: unexpected reply; is it kdns?")
    return data


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read())
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    if exc.code == 404:
        return "no /debug/explain here (HTTP 404); point it at kdns's --debug-addr"
    return f"HTTP {exc.code}"


__all__ = ["fetch"]
