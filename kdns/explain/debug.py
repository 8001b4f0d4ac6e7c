"""`GET /debug/explain?name=NAME[&type=TYPE][&format=text]` on a running kdns: the JSON of
`kdns explain` (text with format=text), from this process's own servers and index. The
question is answered for real, forwarding included (so the reply says which upstream
answered, or that the cache did) and is counted in the metrics like any query. Served on
loopback unless `--debug-addr` says otherwise (`kdns.observe.http`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from kdns.explain.render import render
from kdns.explain.run import Explainer, ExplainError, question_for

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def _error(status: int, message: str) -> tuple[int, str, bytes]:
    return status, JSON, json.dumps({"error": message}).encode() + b"\n"


class DebugExplain:
    """The route handler (a `kdns.observe.http.QueryRoute`)."""

    def __init__(self, explainer: Explainer) -> None:
        self.explainer = explainer

    async def __call__(self, params: Mapping[str, str]) -> tuple[int, str, bytes]:
        name = params.get("name", "").strip()
        if not name:
            return _error(400, "give the name to explain: /debug/explain?name=NAME&type=TYPE")
        try:
            qname, qtype = question_for(name, params.get("type") or None)
        except ExplainError as exc:
            return _error(400, str(exc))
        try:
            explanation = await self.explainer.explain(qname, qtype)
        except ExplainError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # a bug here must not take the HTTP server down
            log.exception("debug/explain of %s failed", qname)
            return _error(500, f"explaining {qname} failed: {type(exc).__name__}: {exc}")
        data = explanation.as_json()
        if params.get("format") == "text":
            return 200, TEXT, render(data).encode()
        return 200, JSON, json.dumps(data, indent=2).encode() + b"\n"


__all__ = ["DebugExplain"]
