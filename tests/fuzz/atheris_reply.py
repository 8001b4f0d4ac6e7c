"""Coverage-guided fuzzing of the whole bytes -> reply path with atheris (`make fuzz`).

Each input is handed to `decode_query` (which may raise only `QueryError`) and to a real
`DnsServer` (the chain the flags build) over a small cluster (a ClusterIP Service with
named ports, a 100-address headless Service, an ExternalName), over UDP and TCP, twice
each (the second UDP call may be a fast-path hit, which must give the same bytes as the
slow path). A
finding is any exception, a handler panic (an exception the handler caught and turned into
SERVFAIL), or a reply that breaks a protocol rule:

* QR=1 input or input shorter than a header: never answered (no reflection loops);
* a reply has QR=1 and the query's ID and opcode, and parses (walked independently);
* a UDP reply fits 512 bytes without EDNS and the advertised size capped at 1232 with it
  (RFC 1035 §4.2.1, RFC 6891 §6.2.5); a TCP reply fits 65535 (RFC 7766 §8);
* the question, when echoed, is the query's question byte for byte (0x20 case, D4);
* after the input, three valid queries still get the bytes a fresh handler gives them
  (nothing an input does may poison the reply cache).

Run: `make fuzz` (FUZZ_SECONDS, default 300) or
`.venv/bin/python tests/fuzz/atheris_reply.py -max_total_time=600 [-jobs=N] [CORPUS_DIR]`.
An empty (or no) corpus directory is seeded with the hostile corpus
(tests/data/hostile/packets.txt) and a few valid queries. Results: tests/fuzz/README.md.
"""

from __future__ import annotations

import importlib
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

atheris: Any = importlib.import_module("atheris")  # no type stubs; imported untyped

with atheris.instrument_imports(include=["kdns"]):
    from kdns.build import standalone
    from kdns.cluster.index import Index
    from kdns.config.flags import config_from_settings
    from kdns.config.settings import PodMode, Settings
    from kdns.dns.wire import QueryError, decode_query
    from kdns.observe.stats import Stats
    from kdns.serve.server import DnsServer

import dnslib  # noqa: E402  (after the instrumented imports: not fuzzed)

from kdns.cluster.model import ClusterObject  # noqa: E402
from tests.builders import ep, eps, replace_events, svc  # noqa: E402

HOSTILE = ROOT / "tests" / "data" / "hostile" / "packets.txt"
ZONE = "cluster.local"


def make_handler() -> tuple[DnsServer, Stats]:
    index = Index()
    addresses = [f"10.1.{i // 200}.{i % 200 + 1}" for i in range(100)]
    objects: list[ClusterObject] = [
        svc("svc1", ips=["10.0.0.1", "fd00::1"], ports=["http/tcp/80", "dns/udp/53"]),
        svc("big", headless=True, ports=["http/tcp/80"]),
        eps("big-1", "big", endpoints=[ep(a) for a in addresses], ports=["http/tcp/80"]),
        svc("ext", external="example.com"),
    ]
    for event in replace_events(objects):
        index.apply(event)
    stats = Stats()
    config = config_from_settings(Settings(zone=ZONE, pods=PodMode.INSECURE, upstreams=()))
    return standalone(config, index=index, view=index, stats=stats), stats


HANDLER, STATS = make_handler()

# Valid queries asked after every input: a hostile input must not change their answers
# (e.g. by leaving a wrong reply in the fast path's cache). Expected: a fresh handler's.
PROBES = [
    bytes(dnslib.DNSRecord.question("svc1.testns.svc.cluster.local", "A").pack()),
    bytes(dnslib.DNSRecord.question("big.testns.svc.cluster.local", "A").pack()),
    bytes(dnslib.DNSRecord.question("_http._tcp.svc1.testns.svc.cluster.local", "SRV").pack()),
]
_fresh, _ = make_handler()
EXPECTED = [_fresh.handle(p, tcp=False, family="1") for p in PROBES]


def udp_limit(data: bytes) -> int:
    """The most a UDP reply to `data` may hold (RFC 1035 §4.2.1, RFC 6891 §6.2.5)."""
    try:
        query = decode_query(data)
    except QueryError:
        return 512  # error replies carry no OPT: the plain limit applies
    if query.edns is None:
        return 512
    return min(max(512, query.edns.payload), 1232)


def question_end(message: bytes) -> int:
    """Offset just after the first question (an uncompressed name, type and class)."""
    pos = 12
    while message[pos]:
        assert message[pos] < 0x40, "a pointer or reserved label type in an echoed question"
        pos += 1 + message[pos]
    return pos + 5


def _name_end(message: bytes, pos: int) -> int:
    """Offset after the name at `pos`; pointers must go backwards (RFC 1035 §4.1.4)."""
    end, total, limit = -1, 1, pos
    while True:
        length = message[pos]
        if length >= 0xC0:
            target = ((length & 0x3F) << 8) | message[pos + 1]
            assert target < limit, "a reply pointer that loops or points forward"
            end = pos + 2 if end < 0 else end
            pos = limit = target
            continue
        assert length < 0x40, "a reserved label type in a reply"
        if length == 0:
            return pos + 1 if end < 0 else end
        total += 1 + length
        assert total <= 255, "a reply name longer than 255 octets"
        pos += 1 + length


def walk(message: bytes) -> None:
    """Check a reply's structure independently of kdns's parser (dnslib rejects labels
    that are not UTF-8, which queries may legitimately carry)."""
    qd, an, ns, ar = struct.unpack_from("!4H", message, 4)
    pos = 12
    for _ in range(qd):
        pos = _name_end(message, pos) + 4
    for _ in range(an + ns + ar):
        pos = _name_end(message, pos)
        (rdlen,) = struct.unpack_from("!H", message, pos + 8)
        pos += 10 + rdlen
    assert pos == len(message), "reply sections do not add up to its length"


def check_reply(data: bytes, out: bytes | None, *, tcp: bool) -> None:
    if len(data) < 12 or data[2] & 0x80:
        assert out is None, "answered a response or a headerless packet"
        return
    if out is None:
        return
    assert len(out) >= 12, "reply shorter than a header"
    assert out[2] & 0x80, "reply without QR"
    assert out[:2] == data[:2], "reply ID differs from the query's"
    assert (out[2] >> 3) & 0xF == (data[2] >> 3) & 0xF, "reply opcode differs"
    assert len(out) <= (65535 if tcp else udp_limit(data)), f"reply of {len(out)} bytes"
    if struct.unpack_from("!H", out, 4)[0]:
        end = question_end(out)
        assert out[12:end] == data[12:end], "the echoed question is not the query's"
    walk(out)


def one_input(data: bytes) -> None:
    try:
        decode_query(data)
    except QueryError:
        pass
    panics = STATS.panics
    for tcp in (False, True):
        first = HANDLER.handle(data, tcp=tcp, family="1")
        assert first is None or isinstance(first, bytes), "an awaitable without an upstream"
        check_reply(data, first, tcp=tcp)
        again = HANDLER.handle(data, tcp=tcp, family="1")
        assert again == first, "a repeated query (fast path) got different bytes"
    assert STATS.panics == panics, "the handler panicked (see the log line above)"
    for probe, expected in zip(PROBES, EXPECTED, strict=True):
        got = HANDLER.handle(probe, tcp=False, family="1")
        assert got == expected, f"input changed the answer to a valid query: {got!r}"


def seed_corpus(directory: Path) -> None:
    for n, line in enumerate(HOSTILE.read_text().splitlines()):
        if not line.strip() or line.startswith("#"):
            continue
        hexdata = line.split(maxsplit=2)[2]
        (directory / f"hostile-{n}").write_bytes(b"" if hexdata == "-" else bytes.fromhex(hexdata))
    for n, (name, qtype) in enumerate(
        [
            ("svc1.testns.svc.cluster.local", "A"),
            ("big.testns.svc.cluster.local", "A"),
            ("_http._tcp.svc1.testns.svc.cluster.local", "SRV"),
            ("ext.testns.svc.cluster.local", "CNAME"),
            ("1.0.0.10.in-addr.arpa", "PTR"),
            ("10-244-1-5.testns.pod.cluster.local", "A"),
        ]
    ):
        q = dnslib.DNSRecord.question(name, qtype)
        (directory / f"valid-{n}").write_bytes(q.pack())
        q.add_ar(dnslib.EDNS0(udp_len=4096))
        (directory / f"valid-edns-{n}").write_bytes(q.pack())


def main() -> None:
    argv = list(sys.argv)
    dirs = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        dirs = [Path(tempfile.mkdtemp(prefix="kdns-fuzz-corpus-"))]
        argv.append(str(dirs[0]))
    if dirs[0].is_dir() and not any(dirs[0].iterdir()):
        seed_corpus(dirs[0])
        print(f"seeded corpus {dirs[0]}", flush=True)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
