"""UDP amplification: reply bytes / query bytes for every name kdns serves, per query type.

Starts `kdns serve --manifests` on 127.0.0.1 (one process per fixture: the e2e fixture
cluster and a generated large headless Service), derives every name the fixture defines
from its YAML (Services, headless hostnames, named-port SRV names, reverse names of every
address, the apex, a missing name) and asks each with several query types, without EDNS
and with EDNS advertising 4096 (kdns caps UDP replies at 1232, RFC 6891 §6.2.5), then
prints the largest and the median factor per query type and EDNS variant.

    .venv/bin/python bench/amplification.py [--headless 1000] [--json out.json]

The bound to expect: without EDNS a reply is at most 512 bytes (RFC 1035 §4.2.1), with
EDNS at most 1232, so the worst factor is 1232 / (smallest query that reaches the largest
reply); everything bigger is TC=1 and must be retried over TCP, which cannot be spoofed.
Everything binds and sends to 127.0.0.1 only; processes started are stopped by group.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import socket
import statistics
import struct
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.servers import HOST, Server, free_port, kdns_argv, kdns_env  # noqa: E402

log = logging.getLogger("amplification")

ZONE = "cluster.local."
E2E = REPO / "tests" / "data" / "e2e-cluster"
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33,
          "ANY": 255}  # fmt: skip


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


def build_query(name: str, qtype: int, *, qid: int, edns: int | None) -> bytes:
    head = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 1 if edns is not None else 0)
    body = encode_name(name) + struct.pack("!HH", qtype, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0) if edns is not None else b""
    return head + body + opt


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer + "."


def names_of(manifests: Path) -> list[str]:
    """Every owner name the manifests define (plus the apex and a missing name)."""
    names = {ZONE, "missing.default.svc." + ZONE}
    docs: list[dict[str, Any]] = []
    for path in sorted(manifests.rglob("*.y*ml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    ports: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in docs:
        meta = d.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        if d.get("kind") == "Service":
            base = f"{name}.{ns}.svc.{ZONE}"
            names.add(base)
            spec = d.get("spec") or {}
            for p in spec.get("ports") or []:
                if p.get("name"):
                    proto = str(p.get("protocol", "TCP")).lower()
                    names.add(f"_{p['name']}._{proto}.{base}")
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                if ip and ip != "None":
                    names.add(reverse_name(ip))
            ports[(ns, name)] = spec.get("ports") or []
        elif d.get("kind") == "EndpointSlice":
            svc = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
            for ep in d.get("endpoints") or []:
                for a in ep.get("addresses") or []:
                    names.add(reverse_name(a))
                if ep.get("hostname"):
                    names.add(f"{ep['hostname']}.{svc}.{ns}.svc.{ZONE}")
    return sorted(names)


def headless_yaml(count: int) -> str:
    """A headless Service with `count` ready IPv4 and `count` IPv6 endpoints, each with a
    hostname (so A, AAAA and SRV answers are all as large as they get)."""
    v4 = "".join(
        f"- addresses: [10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}]\n"
        f"  hostname: h{i}\n  conditions: {{ready: true}}\n"
        for i in range(count)
    )
    v6 = "".join(
        f"- addresses: ['fd00:100::{i:x}']\n  hostname: h{i}\n  conditions: {{ready: true}}\n"
        for i in range(count)
    )
    head = """\
apiVersion: v1
kind: Namespace
metadata: {name: big}
---
apiVersion: v1
kind: Service
metadata: {name: wide, namespace: big}
spec:
  clusterIP: None
  ports:
  - {name: http, port: 80, protocol: TCP}
"""
    slices = ""
    for family, endpoints in (("IPv4", v4), ("IPv6", v6)):
        slices += f"""\
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: wide-{family.lower()}
  namespace: big
  labels: {{kubernetes.io/service-name: wide}}
addressType: {family}
ports:
- {{name: http, port: 80, protocol: TCP}}
endpoints:
{endpoints}"""
    return head + slices


@dataclass
class Sample:
    qtype: str
    edns: str
    query: int
    reply: int
    tc: bool

    @property
    def factor(self) -> float:
        return self.reply / self.query


def ask(sock: socket.socket, data: bytes) -> bytes | None:
    sock.send(data)
    for _ in range(16):  # bounded: skip stray datagrams
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return None
        if reply[:2] == data[:2]:
            return reply
    return None


def measure(port: int, names: list[str]) -> Iterator[Sample]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect((HOST, port))
        qid = 0
        for name in names:
            for qtype, code in QTYPES.items():
                for edns in (None, 4096):
                    qid = (qid + 1) & 0xFFFF
                    data = build_query(name, code, qid=qid, edns=edns)
                    reply = ask(sock, data)
                    if reply is None:
                        log.warning("no reply to %s %s", name, qtype)
                        continue
                    tc = bool(reply[2] & 0x02)
                    yield Sample(
                        qtype, "none" if edns is None else "4096", len(data), len(reply), tc
                    )


def run_fixture(label: str, manifests: Path, workdir: Path) -> list[Sample]:
    port = free_port()
    server = Server(
        f"kdns-{label}",
        "kdns",
        port,
        kdns_argv(None, port, workers=1, extra=("--manifests", str(manifests))),
        workdir,
        env=kdns_env(),
    )
    names = names_of(manifests)
    server.start()
    try:
        probe = next(n for n in names if n.endswith(".svc." + ZONE) and not n.startswith("_"))
        server.wait_ready(name=probe, timeout=60)
        return list(measure(port, names))
    finally:
        server.stop()


def report(label: str, samples: list[Sample]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.qtype, s.edns)].append(s)
    rows = []
    print(f"\n{label}: {len(samples)} UDP queries")
    print(f"{'qtype':6} {'edns':5} {'n':>5} {'max':>6} {'median':>7} {'max bytes':>9} {'TC':>4}")
    for (qtype, edns), group in sorted(groups.items()):
        factors = [s.factor for s in group]
        row = {
            "fixture": label,
            "qtype": qtype,
            "edns": edns,
            "n": len(group),
            "max_factor": round(max(factors), 2),
            "median_factor": round(statistics.median(factors), 2),
            "max_reply_bytes": max(s.reply for s in group),
            "truncated": sum(s.tc for s in group),
        }
        rows.append(row)
        print(
            f"{qtype:6} {edns:5} {row['n']:>5} {row['max_factor']:>6} "
            f"{row['median_factor']:>7} {row['max_reply_bytes']:>9} {row['truncated']:>4}"
        )
    worst = max(samples, key=lambda s: s.factor)
    print(
        f"worst: {worst.qtype} edns={worst.edns}: {worst.reply}/{worst.query} bytes "
        f"= {worst.factor:.2f}"
    )
    limits = {"none": 512, "4096": 1232}
    over = [s for s in samples if s.reply > limits[s.edns]]
    print(f"replies over the client's limit: {len(over)}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--headless", type=int, default=1000, help="endpoints per family")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    rows: list[dict[str, Any]] = []
    over = 0
    with tempfile.TemporaryDirectory(prefix="kdns-amp-") as tmp:
        work = Path(tmp)
        big = work / "headless"
        big.mkdir()
        (big / "wide.yaml").write_text(headless_yaml(args.headless))
        for label, manifests in (("e2e-cluster", E2E), (f"headless-{args.headless}", big)):
            samples = run_fixture(label, manifests, work)
            rows += report(label, samples)
            limits = {"none": 512, "4096": 1232}
            over += sum(s.reply > limits[s.edns] for s in samples)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if over else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
