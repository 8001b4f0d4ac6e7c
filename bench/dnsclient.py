"""A tiny raw-socket DNS client for the benchmark's answer-equivalence check.

Owns building one query (optionally with an EDNS OPT record and the DO bit, RFC 6891 and
RFC 3225) and sending it over UDP or TCP (two-byte length framing, RFC 1035 §4.2.2), and
parsing the reply into plain values (rcode, flags, the question bytes as sent back, the
OPT record's DO bit, and each section's records as (name, type, ttl, rdata text)).
Independent of kdns and dnslib on purpose, so the check does not share code with the
server under test. Loopback only: callers pass 127.0.0.1 or ::1.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True, slots=True)
class RR:
    name: str  # lower-cased, with trailing dot
    rtype: str
    ttl: int
    rdata: str  # presentation text, names lower-cased


@dataclass(frozen=True, slots=True)
class Response:
    rcode: str
    aa: bool
    tc: bool
    question: bytes  # the question section exactly as echoed (0x20 check, RFC 4343 / D4)
    answer: tuple[RR, ...]
    authority: tuple[RR, ...]
    additional: tuple[RR, ...]
    edns_do: bool | None = None  # None: the reply has no OPT record; else its DO bit


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


EDNS_PAYLOAD = 1232
DO_BIT = 0x8000  # in the OPT record's TTL field: extended rcode, version, then DO (RFC 3225)


def build_query(
    name: str, qtype: str, *, qid: int, rd: bool = False, edns_do: bool | None = None
) -> bytes:
    """A query; `edns_do` None sends no OPT record, else an OPT with that DO bit."""
    flags = 0x0100 if rd else 0
    arcount = 0 if edns_do is None else 1
    header = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount)
    packet = header + encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)
    if edns_do is not None:
        ttl = DO_BIT if edns_do else 0
        packet += b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, ttl, 0)
    return packet


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Decode a possibly compressed name (RFC 1035 section 4.1.4); returns (name, next offset)."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounded: a pointer loop cannot spin forever
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = off + 2
            off = ((length & 0x3F) << 8) | msg[off + 1]
            continue
        if length == 0:
            off += 1
            break
        labels.append(msg[off + 1 : off + 1 + length].decode("ascii", "replace").lower())
        off += 1 + length
    else:
        raise ValueError("name compression loop")
    return ".".join(labels) + ".", (end if end >= 0 else off)


def _rdata_text(msg: bytes, rtype: int, off: int, rdlen: int) -> str:
    if rtype == 1:
        return str(IPv4Address(msg[off : off + 4]))
    if rtype == 28:
        return str(IPv6Address(msg[off : off + 16]))
    if rtype in (2, 5, 12):
        return _read_name(msg, off)[0]
    if rtype == 33:
        prio, weight, port = struct.unpack_from("!HHH", msg, off)
        return f"{prio} {weight} {port} {_read_name(msg, off + 6)[0]}"
    if rtype == 6:
        mname, o = _read_name(msg, off)
        rname, o = _read_name(msg, o)
        nums = struct.unpack_from("!IIIII", msg, o)
        return f"{mname} {rname} " + " ".join(str(n) for n in nums)
    return msg[off : off + rdlen].hex()


def parse(msg: bytes) -> Response:
    _qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
    off = 12
    qstart = off
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    question = msg[qstart:off]
    sections: list[list[RR]] = [[], [], []]
    edns_do: bool | None = None
    for idx, count in enumerate((an, ns, ar)):
        for _ in range(count):
            name, off = _read_name(msg, off)
            rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
            off += 10
            if rtype == 41:  # OPT is not a record (RFC 6891): keep only its DO bit
                edns_do = bool(ttl & DO_BIT)
            else:
                text = _rdata_text(msg, rtype, off, rdlen)
                sections[idx].append(RR(name, TYPE_NAMES.get(rtype, str(rtype)), ttl, text))
            off += rdlen
    return Response(
        rcode=RCODES.get(flags & 0xF, str(flags & 0xF)),
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        question=question,
        answer=tuple(sections[0]),
        authority=tuple(sections[1]),
        additional=tuple(sections[2]),
        edns_do=edns_do,
    )


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += more
    return data


def query(
    host: str,
    port: int,
    name: str,
    qtype: str,
    *,
    timeout: float = 1.0,
    rd: bool = False,
    tcp: bool = False,
    edns_do: bool | None = None,
) -> Response:
    """One query over UDP (or TCP); raises TimeoutError (socket.timeout) if no matching
    reply arrives, ConnectionError if a TCP peer closes early."""
    qid = int.from_bytes(os.urandom(2), "big")
    packet = build_query(name, qtype, qid=qid, rd=rd, edns_do=edns_do)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if tcp:
        with socket.socket(family, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect((host, port))
            conn.sendall(struct.pack("!H", len(packet)) + packet)
            (length,) = struct.unpack("!H", _recv_exactly(conn, 2))
            data = _recv_exactly(conn, length)
            if len(data) < 12 or data[:2] != packet[:2]:
                raise TimeoutError(f"no reply with id {qid} from {host}:{port} over TCP")
            return parse(data)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(packet)
        for _ in range(16):  # bounded: ignore stray datagrams with another id
            data = sock.recv(65535)
            if len(data) >= 12 and data[:2] == packet[:2]:
                return parse(data)
    raise TimeoutError(f"no reply with id {qid} from {host}:{port}")
