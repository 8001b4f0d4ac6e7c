"""`kdns explain` as a process: offline from manifests, and against a running `kdns serve`
through its debug endpoint. The expected reasons are docs/rules.md's: readiness is
conditions.ready (R6), a headless Service answers only ready endpoints (R17) and does not
exist without one (R19), ExternalName is a CNAME whose outside target goes upstream (R26,
R27), names outside the zones are forwarded (D6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kdns_process import ROOT, free_port, require_tool, run_kdns

DATA = ROOT / "tests" / "data" / "explain"
# Offline nothing is sent, so this upstream need not exist (port 1 on loopback).
NOWHERE = "127.0.0.1:1"


def kdns_explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kdns", "explain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )


def offline(name: str, *extra: str) -> tuple[str, dict[str, Any]]:
    """(text output, JSON output) of an offline explain."""
    base = [name, *extra, "--manifests", str(DATA), "--upstream", NOWHERE]
    text = kdns_explain(*base)
    assert text.returncode == 0, text.stderr
    as_json = kdns_explain(*base, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    return text.stdout, json.loads(as_json.stdout)


def excluded(data: dict[str, Any]) -> dict[str, str]:
    return {e["address"]: e["reason"] for e in data["excluded"]}


def reason_codes(data: dict[str, Any]) -> list[str]:
    return [r["code"] for r in data["reasons"]]


def test_offline_not_ready_and_terminating_endpoints_are_left_out_with_reasons() -> None:
    text, data = offline("web.shop.svc.cluster.local")
    assert "web.shop.svc.cluster.local. 5 IN A 10.244.1.10" in text
    assert "10.244.1.11" in text
    assert "LEFT OUT: not ready (conditions.ready is false)" in text
    assert "LEFT OUT: terminating" in text
    assert data["answer"]["answer"] == ["web.shop.svc.cluster.local. 5 IN A 10.244.1.10"]
    assert data["route"]["plugin"] == "kubernetes"
    assert excluded(data) == {
        "10.244.1.11": "not-ready",
        "10.244.1.12": "terminating",
        "fd00:10:244::10": "other-family",
    }


def test_offline_headless_without_ready_endpoint_is_nxdomain_r19() -> None:
    text, data = offline("queue.shop.svc.cluster.local")
    assert "Answer: NXDOMAIN" in text
    assert "docs/rules.md R19" in text
    assert reason_codes(data) == ["headless-no-ready-endpoints"]


def test_offline_wrong_namespace_and_misspelt_names() -> None:
    text, data = offline("api.shop.svc.cluster.local")
    assert "Did you mean:" in text
    assert [s["name"] for s in data["suggestions"]] == ["api.prod.svc.cluster.local."]
    for typo in ("paymants", "paymnets"):  # one letter off, one swapped pair
        text, data = offline(f"{typo}.shop.svc.cluster.local")
        assert data["answer"]["rcode"] == "NXDOMAIN"
        assert [s["name"] for s in data["suggestions"]] == ["payments.shop.svc.cluster.local."]
        assert "payments.shop.svc.cluster.local." in text


def test_offline_external_name_and_forwarded_names_say_where_they_would_go() -> None:
    text, data = offline("db.shop.svc.cluster.local")
    assert "IN CNAME db.example.com." in text
    assert "docs/rules.md R27" in text
    assert data["forward"] == {
        "name": "db.example.com.",
        "upstreams": [NOWHERE],
        "asked": False,
        "answered_by": None,
        "from_cache": False,
    }
    text, data = offline("www.example.com")
    assert f"would be sent to {NOWHERE}" in text
    assert data["answer"]["obtained"] is False
    assert reason_codes(data) == ["forwarded"]


def test_offline_reverse_lookup_of_a_not_ready_address() -> None:
    text, data = offline("10.244.1.11")
    assert data["name"] == "11.1.244.10.in-addr.arpa."
    assert data["answer"]["rcode"] == "NXDOMAIN"
    assert "not-ready" in reason_codes(data)
    assert "only ready endpoints get PTR records" in text


def test_offline_bad_input_is_one_line() -> None:
    out = kdns_explain("web.shop.svc.cluster.local")
    assert out.returncode == 2
    assert "--manifests" in out.stderr
    assert out.stderr.count("\n") == 1


# ---- against a running kdns ------------------------------------------------------------------

DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None
)


@pytest.fixture
def dnsmasq() -> Iterator[int]:
    """A real upstream on loopback answering *.dnsmasq.test with 192.0.2.7."""
    exe = DNSMASQ or require_tool("dnsmasq")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--user=root", "--address=/dnsmasq.test/192.0.2.7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {}


def test_a_running_kdns_explains_through_its_debug_endpoint(tmp_path: Path, dnsmasq: int) -> None:
    debug = free_port()
    upstream = f"127.0.0.1:{dnsmasq}"
    args = ["--manifests", str(DATA), "--upstream", upstream, "--debug-addr", f"127.0.0.1:{debug}"]
    with run_kdns(args, tmp_path=tmp_path) as k:
        server = f"http://127.0.0.1:{debug}"
        out = kdns_explain("web.shop.svc.cluster.local", "--server", server)
        assert out.returncode == 0, out.stderr
        assert "asked the running kdns" in out.stdout
        assert "LEFT OUT: not ready (conditions.ready is false)" in out.stdout
        assert "LEFT OUT: terminating" in out.stdout

        out = kdns_explain("paymnets.shop.svc.cluster.local", "--server", server, "-o", "json")
        data = json.loads(out.stdout)
        assert data["source"] == "server"
        assert [s["name"] for s in data["suggestions"]] == ["payments.shop.svc.cluster.local."]

        # A forwarded name: the upstream that answered, then the cache (dnsmasq may need a
        # moment to listen: retried, bounded).
        deadline = time.monotonic() + 10
        while True:
            status, data = get_json(f"{server}/debug/explain?name=www.dnsmasq.test&type=A")
            assert status == 200
            if data["answer"]["rcode"] == "NOERROR" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [r.split()[-1] for r in data["answer"]["answer"]] == ["192.0.2.7"]
        assert data["route"]["plugin"] == "forward"
        assert data["forward"]["answered_by"] == upstream
        assert data["forward"]["from_cache"] is False
        status, data = get_json(f"{server}/debug/explain?name=www.dnsmasq.test&type=A")
        assert data["route"]["plugin"] == "cache"
        assert data["forward"]["from_cache"] is True

        status, data = get_json(f"{server}/debug/explain?type=A")
        assert status == 400
        assert "give the name" in data["error"]
        # The debug endpoint is its own listener, not part of /metrics.
        status, _ = get_json(f"http://127.0.0.1:{k.metrics_port}/debug/explain?name=x")
        assert status == 404
