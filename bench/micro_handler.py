"""Micro-benchmark of `DnsServer.handle()`: ns per query for hits and slow-path misses.

Run: `.venv/bin/python bench/micro_handler.py [--services 1000] [--number 200000]`.
No sockets: it calls the handler directly with hand-built query bytes.
"""

from __future__ import annotations

import argparse
import struct
import sys
import timeit
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdns.build import standalone
from kdns.cluster.index import Index
from kdns.cluster.model import Kind, Replace, Service, ServicePort
from kdns.config.flags import config_from_settings
from kdns.config.settings import PodMode, Settings
from kdns.observe.stats import Stats
from kdns.serve.fastpath import ReplyCache


def query(name: str, qtype: int = 1, *, edns: bool = False) -> bytes:
    wire = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" if edns else b""
    head = struct.pack("!6H", 0xBEEF, 0x0100, 1, 0, 0, 1 if edns else 0)
    return head + wire + struct.pack("!HH", qtype, 1) + opt


def build_index(services: int) -> Index:
    index = Index()
    objs = tuple(
        Service(
            "default",
            f"svc-{i}",
            cluster_ips=(IPv4Address(0x0A600000 + i + 1),),
            ports=(ServicePort("http", "tcp", 80),),
        )
        for i in range(services)
    )
    for kind in Kind:
        index.apply(Replace(kind, objs if kind is Kind.SERVICE else ()))
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    index = build_index(args.services)
    config = config_from_settings(Settings(pods=PodMode.INSECURE, upstreams=()))
    hot = standalone(config, index=index, view=index, stats=Stats())
    cold = standalone(
        config, index=index, view=index, stats=Stats(), cache=ReplyCache(max_entries=0)
    )
    cases = {
        "hit A": query("svc-7.default.svc.cluster.local"),
        "hit A mixed case": query("SVC-7.Default.svc.cluster.local"),
        "hit A + bare EDNS": query("svc-7.default.svc.cluster.local", edns=True),
        "hit SRV": query("_http._tcp.svc-7.default.svc.cluster.local", 33),
        "hit NXDOMAIN": query("missing-1.default.svc.cluster.local"),
    }
    misses = {
        "miss A (slow path)": query("svc-7.default.svc.cluster.local"),
        "miss SRV (slow path)": query("_http._tcp.svc-7.default.svc.cluster.local", 33),
        "miss NXDOMAIN (slow path)": query("missing-1.default.svc.cluster.local"),
    }
    print(f"{args.services} services, Python {sys.version.split()[0]}")
    warm = cases["hit A"]
    for _ in range(args.number):  # warm up (CPU frequency, caches) before the first timing
        hot.handle(warm, tcp=False, family="1")
    for label, handler, table, number in (
        ("hot", hot, cases, args.number),
        ("cold", cold, misses, max(args.number // 20, 1000)),
    ):
        handle = handler.handle
        for name, data in table.items():
            assert isinstance(handle(data, tcp=False, family="1"), bytes)
            best = min(
                timeit.repeat(
                    lambda: handle(data, tcp=False, family="1"),  # noqa: B023
                    number=number,
                    repeat=5,
                )
            )
            print(f"{label:5} {name:28} {best / number * 1e9:8.0f} ns/query")


if __name__ == "__main__":
    main()
