"""kdns.net.mmsg on loopback: the Outbox (datagrams sent together with one sendmmsg(2)) and
the Inbox (read together with one recvmmsg(2))."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from kdns.net import mmsg

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="sendmmsg needs Linux and CPython")


def udp(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def sockaddr_in(host: str, port: int) -> bytes:
    """struct sockaddr_in as the kernel lays it out (family in host order)."""
    family = struct.pack("=H", socket.AF_INET)
    return family + struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, host) + bytes(8)


def sockaddr_in6(host: str, port: int) -> bytes:
    family = struct.pack("=H", socket.AF_INET6)
    addr = socket.inet_pton(socket.AF_INET6, host)
    return family + struct.pack("!H", port) + bytes(4) + addr + (0).to_bytes(4, sys.byteorder)


def test_a_connected_outbox_sends_every_message_in_order(socks: list[socket.socket]) -> None:
    receiver, sender = udp(), udp()
    socks += [receiver, sender]
    sender.connect(receiver.getsockname())
    messages = [b"first", b"second" * 50, b"\x00third"]
    assert mmsg.Outbox(sender.fileno()).send(messages) == 3
    assert [receiver.recv(4096) for _ in messages] == messages


def test_a_named_outbox_sends_each_message_to_its_own_address(
    socks: list[socket.socket],
) -> None:
    a, b, sender = udp(), udp(), udp()
    socks += [a, b, sender]
    names = [sockaddr_in("127.0.0.1", s.getsockname()[1]) for s in (a, b, a)]
    sent = mmsg.Outbox(sender.fileno(), named=True).send([b"to a", b"to b", b"a again"], names)
    assert sent == 3
    assert [a.recv(100), a.recv(100), b.recv(100)] == [b"to a", b"a again", b"to b"]


def test_ipv6_names_and_their_decoding(socks: list[socket.socket]) -> None:
    try:
        receiver, sender = udp(socket.AF_INET6), udp(socket.AF_INET6)
    except OSError:  # pragma: no cover - a sandbox without ::1
        pytest.skip("no IPv6 loopback")
    socks += [receiver, sender]
    port = receiver.getsockname()[1]
    raw = sockaddr_in6("::1", port)
    assert mmsg.decode_address(raw)[:2] == ("::1", port)
    assert mmsg.Outbox(sender.fileno(), named=True).send([b"six"], [raw]) == 1
    assert receiver.recvfrom(100) == (b"six", sender.getsockname())


def test_a_message_the_kernel_refuses_is_reported_and_the_rest_still_go(
    socks: list[socket.socket],
) -> None:
    receiver, sender = udp(), udp()
    socks += [receiver, sender]
    sender.connect(receiver.getsockname())
    outbox = mmsg.Outbox(sender.fileno())
    messages = [b"x" * 70000, b"after"]  # over the UDP limit: EMSGSIZE
    assert outbox.send(messages) == -errno.EMSGSIZE
    assert outbox.send(messages, start=1) == 1
    assert receiver.recv(100) == b"after"


def test_at_most_slots_messages_leave_per_call(socks: list[socket.socket]) -> None:
    receiver, sender = udp(), udp()
    socks += [receiver, sender]
    sender.connect(receiver.getsockname())
    outbox = mmsg.Outbox(sender.fileno(), slots=4)
    messages = [bytes([n]) for n in range(6)]
    assert outbox.send(messages) == 4
    assert outbox.send(messages, start=4) == 2
    assert [receiver.recv(10) for _ in messages] == messages


def test_decode_address_reads_ipv4_as_recvfrom_does() -> None:
    assert mmsg.decode_address(sockaddr_in("127.0.0.9", 5353)) == ("127.0.0.9", 5353)


def test_send_all_reports_the_messages_that_did_not_leave(socks: list[socket.socket]) -> None:
    receiver, sender = udp(), udp()
    socks += [receiver, sender]
    sender.connect(receiver.getsockname())
    outbox = mmsg.Outbox(sender.fileno(), slots=2)
    messages = [b"one", b"x" * 70000, b"three", b"four", b"five"]  # over the slots, too
    assert outbox.send_all(messages) == [0, errno.EMSGSIZE, 0, 0, 0]
    assert [receiver.recv(100) for _ in range(4)] == [b"one", b"three", b"four", b"five"]
    assert outbox.send_all([b"six"]) == []
    assert receiver.recv(100) == b"six"


def connected_pair(socks: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    a, b = udp(), udp()
    socks.extend((a, b))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    return a, b


def test_an_inbox_reads_queued_datagrams_in_order_whatever_their_size(
    socks: list[socket.socket],
) -> None:
    sender, receiver = connected_pair(socks)
    inbox = mmsg.Inbox(slots=4)
    assert inbox.receive(receiver.fileno()) == []  # nothing queued: no wait, no error
    sent = [b"", b"\x01", b"x" * 512, b"y" * 65_000, b"z" * 3]  # (the largest UDP payloads)
    for message in sent:
        sender.send(message)
    first = inbox.receive(receiver.fileno())
    assert first == sent[:4]  # at most `slots` per call
    assert inbox.receive(receiver.fileno()) == sent[4:]
    assert inbox.receive(receiver.fileno()) == []
    sender.send(b"again")  # the slots are reused; what was returned is a copy
    assert inbox.receive(receiver.fileno()) == [b"again"]
    assert first[:2] == [b"", b"\x01"]


def test_an_inbox_raises_a_socket_error_queued_by_icmp(socks: list[socket.socket]) -> None:
    sender, receiver = connected_pair(socks)
    sender.close()  # its port now answers with ICMP port unreachable
    receiver.send(b"anyone?")
    inbox = mmsg.Inbox(slots=2)
    time.sleep(0.05)  # (loopback reports it at once; a little slack)
    with pytest.raises(ConnectionRefusedError) as raised:  # (OSError picks the subclass)
        inbox.receive(receiver.fileno())
    assert raised.value.errno == errno.ECONNREFUSED
    assert raised.value.strerror == os.strerror(errno.ECONNREFUSED)
    assert inbox.receive(receiver.fileno()) == []  # reported once, as recv(2) does
