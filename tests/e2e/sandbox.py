"""A pod-like sandbox: a private network namespace (loopback only, port 53 free) and a
private mount namespace (its own /etc/resolv.conf), as root with `unshare`. Commands run
inside with `nsenter`, so dig, curl, getent and kdns itself see what a pod would.

Nothing leaves the sandbox: it has no interface but its own loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def sandbox_available() -> str | None:
    """Why a sandbox cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (unshare --net --mount)"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class Sandbox:
    """`with Sandbox(tmp_path, resolv_conf="nameserver 127.0.0.2\\n") as box:`"""

    def __init__(
        self,
        tmp_path: Path,
        *,
        resolv_conf: str,
        addresses: Sequence[str] = (),
        commands: Sequence[str] = (),
    ):
        self.tmp_path = tmp_path
        self.resolv = tmp_path / "resolv.conf"
        self.resolv.write_text(resolv_conf)
        self.addresses = addresses  # extra loopback addresses, e.g. "127.0.0.2/8" is implied
        self.commands = commands  # shell commands run inside once the addresses are up
        self.holder: subprocess.Popen[bytes] | None = None
        self.children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Sandbox:
        why = sandbox_available()
        if why is not None:
            if os.environ.get("KDNS_E2E") == "required":
                pytest.fail(f"pod sandbox: {why}")
            pytest.skip(f"pod sandbox: {why}")
        script = (
            "set -e; ip link set lo up; "
            + "".join(
                f"ip addr add {a} dev lo{' nodad' if ':' in a else ''}; " for a in self.addresses
            )
            + "".join(f"{c}; " for c in self.commands)
            + f"mount --bind {self.resolv} /etc/resolv.conf; echo ready; exec sleep 3600"
        )
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--", "bash", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline().decode().strip()
        if line != "ready":
            raise AssertionError(f"sandbox did not start: {line}")
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        if self.holder is not None:
            if self.holder.poll() is None:
                self.holder.kill()
                self.holder.wait(5)
            if self.holder.stdout is not None:
                self.holder.stdout.close()

    def _enter(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "--"]

    def run(self, cmd: Sequence[str], *, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._enter(), *cmd], capture_output=True, text=True, timeout=timeout
        )

    def start(self, cmd: Sequence[str], *, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*self._enter(), *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd()
            )
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], *, timeout: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def http(self, url: str) -> tuple[int, str]:
        out = self.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "3", url])
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body

    def wait_http(self, url: str, status: int = 200, *, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.http(url)[0] != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer {status} in {timeout} s")
            time.sleep(0.1)


@contextlib.contextmanager
def dnsmasq(box: Sandbox, address: str, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq as an authoritative-only upstream on `address`:53 inside the sandbox."""
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    proc = box.start(
        [
            exe,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=53",
            f"--listen-address={address}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            *options,
        ],
        log=box.tmp_path / f"dnsmasq-{address}.log",
    )
    try:
        deadline = time.monotonic() + 10
        while "status: " not in box.run(["dig", f"@{address}", "+time=1", "+tries=1", "x."]).stdout:
            assert proc.poll() is None, (box.tmp_path / f"dnsmasq-{address}.log").read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.1)
        yield proc
    finally:
        box.stop(proc)
