"""Micro-benchmark of forwarding unique names: microseconds of kdns per query, no kernel noise.

Run: `.venv/bin/python bench/micro_forward.py [--number 20000] [--profile]`.
One process, one event loop: kdns's handler (the flags' chain: errors, cache, kubernetes,
loop, forward) forwards every query, each a name never asked before, to an upstream in the
same process that answers at once from a readable callback. Queries go in batches of 64,
as the UDP transport hands them over; a batch is timed until its last reply. The figure
includes the upstream's own Python (about 3 us a query, `--upstream-only` shows it) and the
loopback syscalls, and none of the CPU contention of a real run (bench/run_bench.py).
The collector runs with kdns's own thresholds (kdns.app.GC_YOUNG_THRESHOLD and _MIDDLE_).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.micro_handler import build_index, query
from kdns.app import GC_MIDDLE_THRESHOLD, GC_YOUNG_THRESHOLD
from kdns.build import standalone
from kdns.config.flags import config_from_settings
from kdns.config.settings import HostPort, PodMode, Settings
from kdns.observe.stats import Stats

BATCH = 64
ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"  # A 192.0.2.1 TTL 60


class Upstream:
    """Answers each query at once: QR, AA, RA set, one A record naming the question."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.answered = 0
        self.target = 0  # `done` is set once `answered` reaches it
        self.done = asyncio.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            end = data.find(0, 12) + 5
            reply = data[:2] + b"\x85\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:end] + ANSWER
            self.sock.sendto(reply, addr)
            self.answered += 1
            if self.answered >= self.target:
                self.done.set()


async def run(number: int, profile: bool, upstream_only: bool) -> None:
    loop = asyncio.get_running_loop()
    up = Upstream()
    up.start(loop)
    settings = Settings(pods=PodMode.INSECURE, upstreams=(HostPort("127.0.0.1", up.port),))
    index = build_index(100)
    server = standalone(config_from_settings(settings), index=index, view=index, stats=Stats())
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.connect(("127.0.0.1", up.port))
    names = [query(f"u{n}x.example.org") for n in range(number + 2 * BATCH)]

    async def batch(start: int) -> None:
        if upstream_only:
            up.target = start + BATCH
            up.done.clear()
            for data in names[start : start + BATCH]:
                client.send(data)
            await up.done.wait()
            while True:
                try:
                    client.recv(4096)
                except BlockingIOError:
                    return
        pending = [
            server.handle(data, False, "1", ("127.0.0.1", 5300))
            for data in names[start : start + BATCH]
        ]
        for result in pending:
            assert not isinstance(result, bytes | None)
            assert isinstance(await result, bytes)

    client.setblocking(False)
    await batch(0)  # warm up
    await batch(BATCH)
    start = 2 * BATCH
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    began = time.process_time()
    while start < number + 2 * BATCH - BATCH + 1:
        await batch(start)
        start += BATCH
    spent = time.process_time() - began
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    done = start - 2 * BATCH
    what = "upstream alone" if upstream_only else "forwarded"
    print(f"{what}: {done} unique names, {spent / done * 1e6:.1f} us CPU per query")
    for plugin in (p for b in server.blocks for p in b.plugins):
        closing = plugin.close()
        if closing is not None:
            await closing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--upstream-only", action="store_true")
    args = parser.parse_args()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, gc.get_threshold()[2])
    uvloop.run(run(args.number, args.profile, args.upstream_only))


if __name__ == "__main__":
    main()
