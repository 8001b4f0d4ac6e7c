"""`GET /debug/explain` (the handler, without sockets) and `kdns explain`'s usage errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kdns.cli import main
from kdns.explain.debug import DebugExplain
from kdns.explain.run import Explainer
from tests.explain.test_explain import cluster, config

DATA = Path(__file__).parents[1] / "data" / "explain"


@pytest.fixture
def handler() -> DebugExplain:
    return DebugExplain(Explainer.offline(config(), cluster()))


async def test_json_by_default_and_text_on_request(handler: DebugExplain) -> None:
    status, ctype, body = await handler({"name": "queue.shop.svc.cluster.local"})
    assert (status, ctype) == (200, "application/json")
    data = json.loads(body)
    assert data["answer"]["rcode"] == "NXDOMAIN"
    assert [r["code"] for r in data["reasons"]] == ["headless-no-ready-endpoints"]
    status, ctype, body = await handler({"name": "queue.shop.svc.cluster.local", "format": "text"})
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    assert b"LEFT OUT: not ready" in body


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "give the name"),
        ({"name": "a..b"}, "not a DNS name"),
        ({"name": "web.shop.svc.cluster.local", "type": "NOPE"}, "not a record type"),
    ],
)
async def test_bad_questions_are_400_with_one_line(
    handler: DebugExplain, params: dict[str, str], needle: str
) -> None:
    status, ctype, body = await handler(params)
    assert (status, ctype) == (400, "application/json")
    assert needle in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "web.shop.svc.cluster.local"], "give --manifests PATH"),
        (
            ["explain", "web", "--server", "http://127.0.0.1:9", "--manifests", str(DATA)],
            "--manifests goes with offline use",
        ),
        (["explain", "web", "NOPE", "--manifests", str(DATA)], "not a record type"),
        (["explain", "web", "--manifests", str(DATA), "--ttl", "x"], "--ttl"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("KDNS_MANIFESTS", "KDNS_ZONE", "KDNS_UPSTREAM"):
        monkeypatch.delenv(var, raising=False)
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert needle in err
    assert err.count("\n") == 1


def test_an_unreachable_server_says_how_to_fix_it(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["explain", "web.shop.svc.cluster.local", "--server", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--debug-addr" in err
