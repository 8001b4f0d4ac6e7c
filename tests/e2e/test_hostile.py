"""End to end, docs/operations.md#hardening: a real `kdns serve` under hostile traffic.

One kdns process serves the e2e fixture cluster plus a generated headless Service with 100
ready addresses. The tests then check, with raw sockets (dnslib builds and parses):

* 20,000 malformed and hostile UDP packets interleaved with valid queries: kdns stays up,
  answers every valid query correctly throughout, never answers a packet with QR=1 (no
  reflection loops; RFC 1035 §4.1.1 QR, decisions documented in kdns/dns/wire.py), never
  panics, and every reply it does send is a response that fits the client's limit;
* opcode NOTIFY gets NOTIMP or FORMERR (RFC 1035 §4.1.1; kdns does not serve secondaries);
* the 100-address answer: over UDP without EDNS truncated (TC) in at most 512 bytes (RFC
  1035 §4.2.1), with EDNS advertising 4096 at most 1232 bytes (RFC 6891 §6.2.5 and kdns's
  1232 cap), and whole over TCP (RFC 7766);
* 200 idle TCP connections and a client dribbling one byte at a time do not stop a fresh
  TCP client from being answered (RFC 7766 §6.2.3/§10).
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dnslib
import pytest

from tests.e2e.kdns_process import ROOT, Kdns, run_kdns

pytestmark = pytest.mark.e2e

CLUSTER = ROOT / "tests" / "data" / "e2e-cluster" / "cluster.yaml"
HOSTILE = ROOT / "tests" / "data" / "hostile" / "packets.txt"
FINDINGS = ROOT / "tests" / "data" / "hostile" / "fuzz-findings.txt"
BIG = "big.testns.svc.cluster.local."
WEB = "web.testns.svc.cluster.local."
BIG_ADDRESSES = {f"10.250.{i // 250}.{i % 250 + 1}" for i in range(100)}
HOSTILE_PACKETS = 20_000
CHUNK = 100  # hostile packets between two valid queries


def big_headless_yaml() -> str:
    endpoints = "".join(
        f"- addresses: [{a}]\n  conditions: {{ready: true}}\n" for a in sorted(BIG_ADDRESSES)
    )
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: big, namespace: testns}}
spec:
  clusterIP: None
  ports:
  - {{name: http, port: 80, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: big-1
  namespace: testns
  labels: {{kubernetes.io/service-name: big}}
addressType: IPv4
ports:
- {{name: http, port: 80, protocol: TCP}}
endpoints:
{endpoints}"""


@pytest.fixture(scope="module")
def kdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdns]:
    tmp: Path = tmp_path_factory.mktemp("kdns-hostile")
    manifests = tmp / "manifests"
    manifests.mkdir()
    (manifests / "cluster.yaml").write_text(CLUSTER.read_text())
    (manifests / "big.yaml").write_text(big_headless_yaml())
    with run_kdns(["--manifests", str(manifests), "--upstream", "none"], tmp_path=tmp) as k:
        yield k
        assert k.proc.poll() is None, f"kdns died:\n{k.log()}"
        assert "Traceback" not in k.log()


# ---- helpers -------------------------------------------------------------------------------


def query(name: str, qtype: str = "A", *, edns: int | None = None, qid: int = 0) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns is not None:
        q.add_ar(dnslib.EDNS0(udp_len=edns))
    return bytes(q.pack())


def udp_socket(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    return s


def udp_ask(sock: socket.socket, data: bytes, *, timeout: float = 2.0) -> bytes:
    """Send `data` and return the reply with its ID (other datagrams are skipped)."""
    sock.settimeout(timeout)
    sock.send(data)
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        reply = sock.recv(65535)
        if reply[:2] == data[:2]:
            return reply
    raise AssertionError("no reply with the query's ID")


def tcp_ask(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(data)) + data)
        return read_framed(s)


def read_framed(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        out = b""
        for _ in range(n):  # at most one recv per byte
            if len(out) == n:
                break
            chunk = s.recv(n - len(out))
            if not chunk:
                raise AssertionError("connection closed mid-message")
            out += chunk
        return out

    (length,) = struct.unpack("!H", exactly(2))
    return exactly(length)


def a_records(reply: bytes) -> set[str]:
    parsed = dnslib.DNSRecord.parse(reply)
    return {str(rr.rdata) for rr in parsed.rr if rr.rtype == dnslib.QTYPE.A}


def panics(k: Kdns) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{k.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^coredns_panics_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert m is not None, "coredns_panics_total missing from /metrics"
    return float(m.group(1))


# ---- hostile packets -------------------------------------------------------------------------


def read_corpus(path: Path) -> list[tuple[str, str, bytes]]:
    """(name, expected outcome, packet) per line of a corpus file (packets.txt format)."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, expect, hexdata = line.split(maxsplit=2)
            out.append((name, expect, b"" if hexdata == "-" else bytes.fromhex(hexdata)))
    return out


def corpus() -> list[bytes]:
    return [data for _, _, data in read_corpus(HOSTILE) + read_corpus(FINDINGS)]


def crafted() -> list[bytes]:
    """Hand-made hostile shapes (RFC 1035 §4.1, RFC 6891 §6.1) beyond the corpus."""
    head = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0)
    web = query(WEB, qid=0x4242)
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"  # 4096, version 0
    return [
        head + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself in the question
        head + b"\x3f" + b"a" * 63 + b"\xc0\x0c\x00\x01\x00\x01",  # pointer back into itself
        head + b"\x01a" * 127 + b"\x00\x00\x01\x00\x01",  # 255 octets: the longest name
        head + b"\x01a" * 128 + b"\x00\x00\x01\x00\x01",  # 257 octets: too long
        head + b"\x01a" * 2000,  # no end to the name
        web[:-2],  # question cut short
        web + b"\x00" * 600,  # trailing garbage
        web[:11] + b"\x01" + web[12:] + opt.replace(b"\x10\x00", b"\x00\x00", 1),  # payload 0
        web[:11] + b"\x01" + web[12:] + opt.replace(b"\x10\x00", b"\xff\xff", 1),  # 65535
        web[:11] + b"\x02" + web[12:] + opt + opt,  # repeated OPT
        web[:2] + b"\x20\x00" + web[4:],  # NOTIFY
        web[:2] + b"\x28\x00" + web[4:],  # UPDATE
        web[:2] + b"\x01\x00\x00\x02" + web[6:] + web[12:],  # two questions
        query(WEB, "TYPE65280", qid=0x4243),  # unknown (private-use) type
        query(WEB, "ANY", qid=0x4244),
        web[:-2] + b"\x00\x03",  # class CH
        web[:-2] + b"\x12\x34",  # unknown class
        web[:2] + b"\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff" + web[12:],  # counts that lie
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    if rng.random() < 0.3:
        del buf[rng.randrange(len(buf) + 1) :]
    return bytes(buf)


def hostile_packets(n: int, seed: int = 6) -> list[bytes]:
    rng = random.Random(seed)
    fixed = corpus() + crafted()
    valid = [
        query(WEB, qid=1),
        query(BIG, edns=4096, qid=2),
        query("_http._tcp." + WEB, "SRV", qid=3),
        query("20.0.96.10.in-addr.arpa.", "PTR", qid=4),
    ]
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            data = fixed[(i // 5) % len(fixed)]
        elif kind == 1:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 600)))
        elif kind == 2:  # a valid query turned into a response: must never be answered
            base = bytearray(rng.choice(valid))
            base[2] |= 0x80
            data = bytes(base)
        else:
            data = mutate(rng, rng.choice(valid))
        out.append(data)
    return out


# ---- tests ---------------------------------------------------------------------------------


def test_hostile_flood_kdns_stays_up_and_answers(kdns: Kdns) -> None:
    packets = hostile_packets(HOSTILE_PACKETS)
    responses = [p for p in packets if len(p) >= 3 and p[2] & 0x80]
    others = [p for p in packets if not (len(p) >= 3 and p[2] & 0x80)]
    assert len(responses) >= HOSTILE_PACKETS // 5
    with (
        udp_socket(kdns.dns_port) as good,
        udp_socket(kdns.dns_port) as bad,
        udp_socket(kdns.dns_port) as qr,
    ):
        bad.setblocking(False)
        qr.setblocking(False)
        replies_to_bad = 0
        valid_answered = 0
        for round_no, start in enumerate(range(0, max(len(others), len(responses)), CHUNK)):
            for data in others[start : start + CHUNK]:
                bad.send(data)
            for data in responses[start : start + CHUNK]:
                qr.send(data)
            # A valid query after each chunk: answered, and correctly (web: 10.96.0.20).
            qid = 0x8000 | round_no
            reply = udp_ask(good, query(WEB, qid=qid))
            parsed = dnslib.DNSRecord.parse(reply)
            assert parsed.header.qr == 1
            assert parsed.header.rcode == 0
            assert a_records(reply) == {"10.96.0.20"}
            valid_answered += 1
            for _ in range(10 * CHUNK):  # what came back for the hostile chunk so far
                try:
                    out = bad.recv(65535)
                except BlockingIOError:
                    break
                replies_to_bad += 1
                assert out[2] & 0x80, "a reply without QR"
                assert len(out) <= 1232
        time.sleep(0.5)  # let any straggler arrive before checking the QR=1 socket
        with contextlib.suppress(BlockingIOError):
            stray = qr.recv(65535)
            pytest.fail(f"kdns answered a packet with QR=1: {stray.hex()}")
    assert valid_answered == len(range(0, max(len(others), len(responses)), CHUNK))
    assert replies_to_bad > 0  # the hostile packets were processed, not lost on the way
    assert kdns.proc.poll() is None
    assert panics(kdns) == 0


@pytest.mark.parametrize(
    ("name", "expect", "data"), read_corpus(FINDINGS), ids=[c[0] for c in read_corpus(FINDINGS)]
)
def test_fuzz_findings_replayed(kdns: Kdns, name: str, expect: str, data: bytes) -> None:
    with udp_socket(kdns.dns_port) as s:
        reply = udp_ask(s, data)
        assert struct.unpack_from("!H", reply, 2)[0] & 0xF == dnslib.RCODE.reverse[expect]
        # The same question with class IN, asked twice (the second may come from the
        # fast path's cache): still answered from the cluster data.
        as_in = data[:-2] + b"\x00\x01"
        for _ in range(2):
            assert dnslib.DNSRecord.parse(udp_ask(s, as_in)).header.rcode == 0, name
            assert a_records(udp_ask(s, as_in)) == {"10.96.0.20"}, name


def test_notify_gets_notimp_or_formerr(kdns: Kdns) -> None:
    data = bytearray(query(WEB, "SOA", qid=0x1111))
    data[2] = (data[2] & 0x87) | (4 << 3)  # opcode 4 = NOTIFY (RFC 1996)
    with udp_socket(kdns.dns_port) as s:
        reply = udp_ask(s, bytes(data))
    flags = struct.unpack_from("!H", reply, 2)[0]
    assert flags & 0x8000
    assert flags & 0xF in (dnslib.RCODE.NOTIMP, dnslib.RCODE.FORMERR)


def test_big_answer_without_edns_is_truncated_to_512(kdns: Kdns) -> None:
    with udp_socket(kdns.dns_port) as s:
        reply = udp_ask(s, query(BIG, qid=0x2222))
    parsed = dnslib.DNSRecord.parse(reply)
    assert parsed.header.tc == 1
    assert len(reply) <= 512
    assert a_records(reply) <= BIG_ADDRESSES


def test_big_answer_with_edns_4096_is_capped_at_1232(kdns: Kdns) -> None:
    with udp_socket(kdns.dns_port) as s:
        reply = udp_ask(s, query(BIG, edns=4096, qid=0x3333))
    parsed = dnslib.DNSRecord.parse(reply)
    assert len(reply) <= 1232
    assert parsed.header.tc == 1  # 100 A records need about 1.6 kB
    assert a_records(reply) <= BIG_ADDRESSES
    assert any(rr.rtype == dnslib.QTYPE.OPT for rr in parsed.ar)  # RFC 6891 §7


def test_big_answer_over_tcp_is_whole(kdns: Kdns) -> None:
    reply = tcp_ask(kdns.dns_port, query(BIG, qid=0x4444))
    parsed = dnslib.DNSRecord.parse(reply)
    assert parsed.header.tc == 0
    assert a_records(reply) == BIG_ADDRESSES


def test_idle_connections_and_a_dribbler_do_not_block_a_fresh_client(kdns: Kdns) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(200):
            stack.enter_context(socket.create_connection(("127.0.0.1", kdns.dns_port), 5))
        dribbler = stack.enter_context(socket.create_connection(("127.0.0.1", kdns.dns_port), 5))
        slow = query(WEB, qid=0x5555)
        slow_framed = struct.pack("!H", len(slow)) + slow
        for i in range(5):  # one byte, then a fresh client, five times over
            dribbler.sendall(slow_framed[i : i + 1])
            reply = tcp_ask(kdns.dns_port, query(WEB, qid=0x6000 + i))
            assert a_records(reply) == {"10.96.0.20"}
        # The dribbler is still served once its message is whole (within message_seconds).
        dribbler.sendall(slow_framed[5:])
        dribbler.settimeout(5)
        assert a_records(read_framed(dribbler)) == {"10.96.0.20"}
    assert kdns.proc.poll() is None
