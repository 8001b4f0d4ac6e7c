"""Server launchers and process accounting for the benchmark (docs/benchmarking.md).

Owns: writing each reference server's config into a temp dir, starting it as a foreground
process in its own process group on 127.0.0.1:<high port> (optionally under `taskset`),
waiting until it answers, stopping it by PID, and reading CPU / RSS / PSS from /proc.
With `upstream=PORT` a launcher configures its server as a forwarder to 127.0.0.1:PORT
(kdns, dnsmasq, Unbound); `upstream_knot()` is that upstream: Knot serving the external
zone of the forwarding rows.

Must not bind anything but 127.0.0.1, never port 53, must not send queries anywhere but
127.0.0.1 (a forwarder forwards *every* name to the local upstream), and must not kill
processes it did not start (stop() signals only its own process group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import dnsclient
from bench.workload import EXT_ZONE, ZONE, Files

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BINARIES = {
    "nsd": "/usr/sbin/nsd",
    "knot": "/usr/sbin/knotd",
    "dnsmasq": "/usr/sbin/dnsmasq",
    "unbound": "/usr/sbin/unbound",
    "dnsperf": "/usr/bin/dnsperf",
}
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A high port free for both UDP and TCP on 127.0.0.1 right now (tiny race accepted)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        if port >= 1024:
            return port
    raise RuntimeError("no free port on 127.0.0.1")


# ---------------------------------------------------------------- /proc accounting


def children_of(pid: int) -> list[int]:
    """`pid` and all its descendants (threads are inside /proc/<pid>/stat already)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process in seconds: CPU in its own code and in the kernel on
    its behalf (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process."""
    return sum(cpu_times(pid))


def all_cpu() -> dict[int, float]:
    """CPU seconds of every process on the box, for foreign-CPU accounting."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            out[int(entry)] = cpu_seconds(int(entry))
    return out


def foreign_cpu(before: dict[int, float], after: dict[int, float], exclude: set[int]) -> float:
    """CPU seconds used between two snapshots by processes not in `exclude`."""
    total = 0.0
    for pid, t in after.items():
        if pid not in exclude:
            total += max(0.0, t - before.get(pid, 0.0))
    return total


def steal_seconds() -> float:
    """Hypervisor steal time of the whole box (8th value of the `cpu` line of /proc/stat).

    Noise that per-process accounting cannot see (docs/benchmarking.md#why-ratios).
    """
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(first[8]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def memory_kb(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in kB from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """One running server process group; `label` names it in tables (e.g. `nsd-2`)."""

    label: str
    kind: str
    port: int
    argv: list[str]
    workdir: Path
    cpus: str | None = None
    workers: int = 1
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        argv = (["taskset", "-c", self.cpus] if self.cpus else []) + self.argv
        out = (self.workdir / f"{self.label}.log").open("wb")
        log.info("starting %s on %s:%d: %s", self.label, HOST, self.port, " ".join(argv))
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            start_new_session=True,  # own process group: stop() signals exactly this tree
        )
        out.close()

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return children_of(self.proc.pid)

    def cpu(self) -> float:
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) seconds of the server's processes; for a UDP server the system
        time is mostly the kernel's per-datagram work."""
        times = [cpu_times(p) for p in self.pids()]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    def memory(self) -> tuple[int, int]:
        return memory_kb(self.pids())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.workdir / f"{self.label}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, *, name: str, timeout: float = 30.0, rd: bool = False) -> float:
        """Poll `name A` until an answer arrives; returns seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.label} exited early:\n{self.log_tail()}")
            try:
                reply = dnsclient.query(HOST, self.port, name, "A", timeout=0.2, rd=rd)
                if reply.rcode == "NOERROR" and reply.answer:
                    return time.monotonic() - self.started_at
            except (TimeoutError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM the process group without waiting (stop() then waits and escalates)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 5 s; only our own group."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None and not _group_alive(pgid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
            deadline = time.monotonic() + 2.0
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
        log.info("stopped %s (pid %d)", self.label, pgid)
        self.proc = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _authoritative_only(label: str, upstream: int | None) -> None:
    if upstream is not None:
        raise ValueError(f"{label} is an authoritative anchor; it does not forward")


def nsd(
    files: Files, workdir: Path, *, workers: int, cpus: str | None, upstream: int | None = None
) -> Server:
    """NSD with RRL off (else NXDOMAIN is rate limited) and minimal responses
    (docs/benchmarking.md#the-anchors)."""
    _authoritative_only("nsd", upstream)
    port = free_port()
    label = f"nsd-{workers}"
    state = workdir / label
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy(files.zone, state / f"{ZONE}.zone")
    conf = state / "nsd.conf"
    conf.write_text(
        "server:\n"
        f"  ip-address: {HOST}@{port}\n"
        f"  port: {port}\n"
        "  do-ip6: no\n"
        f"  server-count: {workers}\n"
        f"  reuseport: {'yes' if workers > 1 else 'no'}\n"
        '  username: ""\n'
        '  chroot: ""\n'
        f'  zonesdir: "{state}"\n'
        f'  pidfile: "{state}/nsd.pid"\n'
        f'  xfrdfile: "{state}/xfrd.state"\n'
        f'  zonelistfile: "{state}/zone.list"\n'
        '  database: ""\n'
        f'  logfile: "{state}/nsd.log"\n'
        "  verbosity: 0\n"
        "  rrl-ratelimit: 0\n"
        "  minimal-responses: yes\n"
        "remote-control:\n"
        "  control-enable: no\n"
        "zone:\n"
        f"  name: {ZONE}\n"
        f'  zonefile: "{ZONE}.zone"\n'
    )
    return Server(
        label,
        "nsd",
        port,
        [BINARIES["nsd"], "-d", "-c", str(conf)],
        workdir,
        cpus=cpus,
        workers=workers,
        notes=["minimal-responses: no SRV target A in additional"],
    )


def _knot_conf(state: Path, port: int, workers: int, zone: str, zone_file: Path) -> Path:
    conf = state / "knot.conf"
    conf.write_text(
        "server:\n"
        f'  rundir: "{state}"\n'
        f"  listen: {HOST}@{port}\n"
        f"  udp-workers: {workers}\n"
        "  tcp-workers: 1\n"
        "  background-workers: 1\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: warning\n"
        "database:\n"
        f'  storage: "{state}"\n'
        "template:\n"
        "  - id: default\n"
        f'    storage: "{state}"\n'
        "    zonefile-sync: -1\n"
        "    journal-content: none\n"
        "zone:\n"
        f"  - domain: {zone}\n"
        f'    file: "{zone_file}"\n'
    )
    return conf


def knot(
    files: Files, workdir: Path, *, workers: int, cpus: str | None, upstream: int | None = None
) -> Server:
    """knotd with `udp-workers` = workers and one background worker
    (docs/benchmarking.md#the-anchors)."""
    _authoritative_only("knot", upstream)
    port = free_port()
    label = f"knot-{workers}"
    state = workdir / label
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy(files.zone, state / f"{ZONE}.zone")
    conf = _knot_conf(state, port, workers, ZONE, state / f"{ZONE}.zone")
    return Server(
        label,
        "knot",
        port,
        [BINARIES["knot"], "-c", str(conf)],
        workdir,
        cpus=cpus,
        workers=workers,
        notes=["default 208 KiB socket buffers: may lose queries at -q 400"],
    )


def upstream_knot(files: Files, workdir: Path, *, cpus: str | None) -> Server:
    """The forwarding rows' upstream: one Knot UDP worker serving `*.ext.test. A`
    (docs/benchmarking.md#forwarding-rows)."""
    port = free_port()
    label = "upstream-knot"
    state = workdir / label
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy(files.ext_zone, state / f"{EXT_ZONE}.zone")
    conf = _knot_conf(state, port, 1, EXT_ZONE, state / f"{EXT_ZONE}.zone")
    return Server(label, "knot", port, [BINARIES["knot"], "-c", str(conf)], workdir, cpus=cpus)


@contextlib.contextmanager
def running_upstream(files: Files, workdir: Path) -> Iterator[Server]:
    """`upstream_knot` on CPU 0 (beside dnsperf), started and answering; stopped after.
    For the tools that run one forwarding row by hand (ab_forward.py, ceiling.py)."""
    upstream = upstream_knot(files, workdir, cpus="0")
    upstream.start()
    try:
        upstream.wait_ready(name=f"probe.{EXT_ZONE}.")
        yield upstream
    finally:
        upstream.stop()


def dnsperf_argv(port: int, queries: Path, *flags: str) -> list[str]:
    """dnsperf against 127.0.0.1:`port` with the query file `queries`."""
    return ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries), *flags]


def dnsmasq(
    files: Files, workdir: Path, *, workers: int, cpus: str | None, upstream: int | None = None
) -> Server:
    """dnsmasq (single-threaded; `workers` is ignored): authoritative for the cluster zone
    with addn-hosts + srv-host lines, or with `upstream` a caching forwarder to it."""
    del workers
    port = free_port()
    label = "dnsmasq"
    state = workdir / label
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "dnsmasq.conf"
    common = [
        f"port={port}",
        f"listen-address={HOST}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "no-dhcp-interface=",
        "pid-file=",
        "user=root",
    ]
    if upstream is None:
        lines = [
            *common,
            f"addn-hosts={files.hosts}",
            f"local=/{ZONE}/",
            "local-ttl=5",
            *files.srv_lines,
        ]
        notes = ["local=: negative answers carry no SOA and no AA bit"]
    else:
        lines = [
            *common,
            f"server={HOST}#{upstream}",  # every name goes to the local upstream
            "cache-size=10000",  # dnsmasq's maximum
            "dns-forward-max=1000",  # as kdns's --max-concurrent (default 150)
        ]
        notes = [f"forwarder to {HOST}:{upstream}, cache-size=10000"]
    conf.write_text("\n".join(lines) + "\n")
    return Server(
        label,
        "dnsmasq",
        port,
        [BINARIES["dnsmasq"], "-k", f"--conf-file={conf}", "--log-facility=-"],
        workdir,
        cpus=cpus,
        notes=notes,
    )


def unbound(
    files: Files, workdir: Path, *, workers: int, cpus: str | None, upstream: int | None = None
) -> Server:
    """Unbound as a caching forwarder: `workers` threads, every name forwarded to the local
    upstream (forward-zone ".", so it never recurses to the Internet), no DNSSEC
    validation, `test.` no longer a blocked local zone (docs/benchmarking.md#the-anchors)."""
    del files
    if upstream is None:
        raise ValueError("unbound runs only as a forwarder: pass upstream=PORT")
    port = free_port()
    label = f"unbound-{workers}"
    state = workdir / label
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"  interface: {HOST}\n"
        f"  port: {port}\n"
        f"  outgoing-interface: {HOST}\n"
        "  do-ip4: yes\n"
        "  do-ip6: no\n"
        "  do-udp: yes\n"
        "  do-tcp: yes\n"
        f"  num-threads: {workers}\n"
        f"  so-reuseport: {'yes' if workers > 1 else 'no'}\n"
        "  so-rcvbuf: 4m\n"
        "  so-sndbuf: 4m\n"
        "  do-daemonize: no\n"
        '  chroot: ""\n'
        '  username: ""\n'
        f'  directory: "{state}"\n'
        f'  pidfile: "{state}/unbound.pid"\n'
        "  use-syslog: no\n"
        '  logfile: ""\n'
        "  verbosity: 0\n"
        '  module-config: "iterator"\n'
        "  access-control: 127.0.0.0/8 allow\n"
        "  do-not-query-localhost: no\n"
        '  local-zone: "test." nodefault\n'
        "  qname-minimisation: no\n"
        "  prefetch: no\n"
        "  msg-cache-size: 64m\n"
        "  rrset-cache-size: 128m\n"
        "remote-control:\n"
        "  control-enable: no\n"
        "forward-zone:\n"
        '  name: "."\n'
        f"  forward-addr: {HOST}@{upstream}\n"
    )
    return Server(
        label,
        "unbound",
        port,
        [BINARIES["unbound"], "-d", "-c", str(conf)],
        workdir,
        cpus=cpus,
        workers=workers,
        notes=[f"forwarder to {HOST}:{upstream}, iterator only, msg cache 64 MB"],
    )


def kdns_argv(
    files: Files | None,
    port: int,
    *,
    workers: int,
    ready_port: int = 0,
    kubeconfig: Path | None = None,
    upstream: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The kdns command line; the one place to adjust when the CLI changes.

    The data source is `files.manifests`, or the API in `kubeconfig` when given. Without
    `upstream` other names are REFUSED; with it they go to 127.0.0.1:upstream, and the
    flags add `cache 30` in front of the forwarder (kdns/config/flags.py).
    """
    source = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    if files is not None and kubeconfig is None:
        source = ["--manifests", str(files.manifests)]
    argv = [
        sys.executable,
        "-m",
        "kdns",
        "serve",
        "--dns-addr",
        f"{HOST}:{port}",
        *source,
        "--upstream",
        "none" if upstream is None else f"{HOST}:{upstream}",
        "--health-addr",
        f"{HOST}:0",
        "--ready-addr",
        f"{HOST}:{ready_port}",
        "--metrics-addr",
        f"{HOST}:0",
        *extra,
    ]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def kdns(
    files: Files, workdir: Path, *, workers: int, cpus: str | None, upstream: int | None = None
) -> Server:
    port = free_port()
    label = f"kdns-{workers}"
    return Server(
        label,
        "kdns",
        port,
        # --lameduck 0: no 5 s of answering on after SIGTERM between the benchmark's rows
        kdns_argv(files, port, workers=workers, upstream=upstream, extra=("--lameduck", "0")),
        workdir,
        cpus=cpus,
        workers=workers,
        env=kdns_env(),
    )


def kdns_env() -> dict[str, str]:
    """Make `python -m kdns` importable from the checkout even without `pip install -e`."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


class Launcher(Protocol):
    def __call__(
        self,
        files: Files,
        workdir: Path,
        *,
        workers: int,
        cpus: str | None,
        upstream: int | None = None,
    ) -> Server: ...


LAUNCHERS: dict[str, Launcher] = {
    "kdns": kdns,
    "nsd": nsd,
    "knot": knot,
    "dnsmasq": dnsmasq,
    "unbound": unbound,
}
FORWARDERS = ("kdns", "dnsmasq", "unbound")  # the kinds that take upstream=PORT


def kdns_available() -> bool:
    """True if the kdns app imports and `python -m kdns serve --help` works."""
    probe = "import kdns.app, kdns.cli"  # serve --help alone passes before the app exists
    try:
        imports = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=REPO,
            env={**os.environ, **kdns_env()},
            capture_output=True,
            timeout=30,
            check=False,
        )
        if imports.returncode != 0:
            return False
        res = subprocess.run(
            [sys.executable, "-m", "kdns", "serve", "--help"],
            cwd=REPO,
            env={**os.environ, **kdns_env()},
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0
