"""Forwarding end to end: `kdns serve --corefile` as a process on loopback ports, queried
with the real dig, upstreams on loopback (dnsmasq, a silent socket, and the scripted fake
upstream serving DNS over TLS from this test process). Expected behaviour is CoreDNS's
forward and cache plugins: stale answers while the upstream is down (serve_stale),
`policy sequential` failing over from a dead first upstream, a DoT upstream whose
certificate is verified, and `except` names left to the next plugin."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdns.config.settings import HostPort
from tests.e2e.kdns_process import ROOT, dig, require_tool
from tests.fakes.tls import SERVER_NAME, make_pki
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.e2e


@dataclass
class Kdns:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def metric(self, family: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as reply:
            text = reply.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith((family + "{", family + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


def ports(count: int) -> list[int]:
    """`count` different ports free for UDP and TCP on 127.0.0.1, held while they are
    picked (a port released and picked again would be a port shared by two servers)."""
    held: list[socket.socket] = []
    try:
        while len(held) < 2 * count:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            held += [udp, tcp]
        return [int(s.getsockname()[1]) for s in held[::2]]
    finally:
        for s in held:
            s.close()


@contextlib.contextmanager
def kdns(tmp_path: Path, plugins: str, own: list[int]) -> Iterator[Kdns]:
    """kdns serving one server block `.:PORT` on 127.0.0.1 with `plugins` in it, on the
    three `own` ports (DNS, /ready, /metrics)."""
    port, ready, metrics = own
    corefile = tmp_path / f"Corefile-{port}"
    corefile.write_text(
        f".:{port} {{\n    bind 127.0.0.1\n    errors\n    ready 127.0.0.1:{ready}\n"
        f"    prometheus 127.0.0.1:{metrics}\n{plugins}\n}}\n"
    )
    log = tmp_path / f"kdns-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdns", "serve", "--corefile", str(corefile)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"kdns exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError, http.client.HTTPException):  # (see kdns_process)
                url = f"http://127.0.0.1:{ready}/ready"
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200:
                        break
            if time.monotonic() > deadline:
                raise AssertionError(f"kdns not ready:\n{log.read_text()}")
            time.sleep(0.05)
        yield Kdns(proc, port, metrics, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def dnsmasq(*options: str) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq on 127.0.0.1:`port`, answering from `options` only."""
    exe = require_tool("dnsmasq")
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
         *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)


def answers_soon(port: int, name: str) -> list[str]:
    """The answer section once the upstream dnsmasq has started (it takes a moment)."""
    for _ in range(50):
        result = dig(port, name, extra=["+recurse"])
        if result.answer:
            return result.answer
        time.sleep(0.1)
    pytest.fail(f"no answer for {name}")


def ttl_and_address(rows: list[str]) -> list[tuple[int, str]]:
    return [(int(row.split()[1]), row.split()[-1]) for row in rows]


def test_stale_answers_while_the_upstream_is_down(tmp_path: Path) -> None:
    upstream, *own = ports(4)
    plugins = (
        # Entries live 1 s (cap 1, floor 0), then 1 h more for serve_stale.
        "    cache {\n        success 9984 1 0\n        serve_stale 1h\n    }\n"
        f"    forward . 127.0.0.1:{upstream}"
    )
    with (
        dnsmasq(f"--port={upstream}", "--address=/stale.test/192.0.2.7", "--local-ttl=300") as up,
        kdns(tmp_path, plugins, own) as server,
    ):
        assert ttl_and_address(answers_soon(server.port, "www.stale.test")) == [(1, "192.0.2.7")]
        up.terminate()
        up.wait(5)
        time.sleep(1.5)  # the entry has expired
        stale = dig(server.port, "www.stale.test", extra=["+recurse"])
        assert stale.status == "NOERROR"
        assert ttl_and_address(stale.answer) == [(0, "192.0.2.7")]  # RFC 8767: TTL 0 here
        assert server.metric("coredns_cache_served_stale_total") >= 1
        # A name never cached gets no answer: the upstream is down.
        assert dig(server.port, "new.stale.test", extra=["+recurse"]).status == "SERVFAIL"


def test_policy_sequential_fails_over_from_a_dead_first_upstream(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives queries, never answers
        dead = HostPort("127.0.0.1", silent.getsockname()[1])
        good, *own = ports(4)  # while `silent` holds its port
        plugins = (
            f"    forward . {dead} 127.0.0.1:{good} {{\n        policy sequential\n"
            "        read_timeout 500ms\n    }"
        )
        with (
            dnsmasq(f"--port={good}", "--address=/seq.test/192.0.2.8"),
            kdns(tmp_path, plugins, own) as server,
        ):
            rows = answers_soon(server.port, "www.seq.test")
            assert [row.split()[-1] for row in rows] == ["192.0.2.8"]
            silent.settimeout(2)
            data, _ = silent.recvfrom(512)  # the dead one was asked first
            assert b"\x03www\x03seq\x04test\x00" in data.lower()
            # The failure started health checks of the dead upstream (`. IN NS`, 1 s each).
            deadline = time.monotonic() + 10
            while not server.metric("coredns_proxy_healthcheck_failures_total", to=str(dead)):
                assert time.monotonic() < deadline, "no failed health check counted"
                time.sleep(0.2)


def test_except_names_are_not_forwarded(tmp_path: Path) -> None:
    upstream, *own = ports(4)
    plugins = f"    forward . 127.0.0.1:{upstream} {{\n        except private.test\n    }}"
    with (
        dnsmasq(f"--port={upstream}", "--address=/test/192.0.2.9"),
        kdns(tmp_path, plugins, own) as server,
    ):
        assert [r.split()[-1] for r in answers_soon(server.port, "www.public.test")] == [
            "192.0.2.9"
        ]
        # Past forward there is no other plugin: SERVFAIL, as CoreDNS ("no next plugin").
        private = dig(server.port, "www.private.test", extra=["+recurse"])
        assert (private.status, private.answer) == ("SERVFAIL", [])


async def adig(port: int, name: str) -> str:
    """dig from the event loop, so the in-process upstream keeps answering meanwhile."""
    exe = require_tool("dig")
    proc = await asyncio.create_subprocess_exec(
        exe, "@127.0.0.1", "-p", str(port), name, "A", "+time=3", "+tries=1", "+nocookie",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode()


async def test_a_dns_over_tls_upstream(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    fake = FakeUpstream(tls=pki.server_context())
    fake.add("www.dot.test. 300 IN A 192.0.2.53")
    async with fake:
        good = (
            f"    forward . tls://127.0.0.1:{fake.addr.port} {{\n        tls {pki.ca}\n"
            f"        tls_servername {SERVER_NAME}\n    }}"
        )
        with kdns(tmp_path, good, ports(3)) as server:
            out = await adig(server.port, "www.dot.test")
            assert re.search(r"www\.dot\.test\.\s+300\s+IN\s+A\s+192\.0\.2\.53", out), out
            assert {q.proto for q in fake.queries} == {"tls"}
        # The certificate does not name other.test: nothing is sent, SERVFAIL.
        wrong = good.replace(SERVER_NAME, "other.test")
        asked = len(fake.queries)
        with kdns(tmp_path, wrong, ports(3)) as server:
            out = await adig(server.port, "www.dot.test")
            assert "status: SERVFAIL" in out, out
            assert len(fake.queries) == asked
            for _ in range(50):  # the errors plugin logs why
                if "is not trusted" in server.log.read_text():
                    break
                await asyncio.sleep(0.1)
            assert "other.test is not trusted" in server.log.read_text()
