"""Start `kdns serve` as a real process on loopback ports and query it with dig."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the kernel's choice, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("KDNS_E2E") == "required":
            pytest.fail(f"{name} is required (KDNS_E2E=required) but not installed")
        pytest.skip(f"{name} not installed")
    return path


@dataclass
class Kdns:
    proc: subprocess.Popen[bytes]
    dns_port: int
    health_port: int
    ready_port: int
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> tuple[int, str]:
        return self.http(self.ready_port, "/ready")

    def terminate(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@contextlib.contextmanager
def run_kdns(
    args: Sequence[str],
    *,
    tmp_path: Path,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 20,
) -> Iterator[Kdns]:
    """Run `python -m kdns serve ARGS` on free loopback ports; stop it afterwards."""
    dns, health, ready, metrics = free_port(), free_port(), free_port(), free_port()
    log_path = tmp_path / f"kdns-{dns}.log"
    cmd = [
        sys.executable, "-m", "kdns", "serve",
        "--dns-addr", f"127.0.0.1:{dns}",
        "--health-addr", f"127.0.0.1:{health}",
        "--ready-addr", f"127.0.0.1:{ready}",
        "--metrics-addr", f"127.0.0.1:{metrics}",
        *args,
    ]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    full_env.update(env or {})
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT
        )
    k = Kdns(proc, dns, health, ready, metrics, log_path)
    try:
        deadline = time.monotonic() + timeout
        while wait_ready:
            if proc.poll() is not None:
                raise AssertionError(f"kdns exited with {proc.returncode}:\n{k.log()}")
            # Not listening yet: refused, or (rarely) a connection to our own source port
            # that reads back our own request as a status line (a TCP self-connect).
            with contextlib.suppress(OSError, http.client.HTTPException):
                if k.ready()[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"kdns not ready after {timeout} s:\n{k.log()}")
            time.sleep(0.05)
        yield k
    finally:
        k.terminate()


@dataclass
class DigResult:
    status: str
    flags: set[str]
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    raw: str = ""
    msg_size: int = 0


_SECTION = re.compile(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:")


def _normalise(line: str) -> str:
    """'name. 5 IN A 1.2.3.4' with single spaces and a lower-case owner (D4 allows either)."""
    parts = line.split()
    parts[0] = parts[0].lower()
    return " ".join(parts)


def dig(
    port: int, name: str, qtype: str = "A", *, tcp: bool = False, extra: Sequence[str] = ()
) -> DigResult:
    """Query kdns with the real dig and parse the reply."""
    exe = require_tool("dig")
    cmd = [exe, "@127.0.0.1", "-p", str(port), name, qtype, "+norecurse", "+time=2", "+tries=1",
           "+nocookie", *extra]  # fmt: skip
    if tcp:
        cmd.append("+tcp")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout
    status_m = re.search(r"status: (\w+)", out)
    flags_m = re.search(r";; flags: ([a-z ]+);", out)
    size_m = re.search(r";; MSG SIZE\s+rcvd: (\d+)", out)
    result = DigResult(
        status=status_m.group(1) if status_m else "NO-REPLY",
        flags=set(flags_m.group(1).split()) if flags_m else set(),
        raw=out,
        msg_size=int(size_m.group(1)) if size_m else 0,
    )
    section: list[str] | None = None
    for line in out.splitlines():
        m = _SECTION.match(line)
        if m:
            section = {"ANSWER": result.answer, "AUTHORITY": result.authority,
                       "ADDITIONAL": result.additional}[m.group(1)]  # fmt: skip
            continue
        if not line.strip():
            section = None
            continue
        if section is not None and not line.startswith(";"):
            section.append(_normalise(line))
    return result
