"""Batched UDP on Linux: many datagrams per system call with recvmmsg(2) and sendmmsg(2).

Python's socket module reads and writes one datagram per call, and each call also turns
the peer's address into a `(host, port)` tuple and back (inet_ntop, a tuple, argument
parsing, inet_pton). On a drained socket that was about a fifth of what a cached answer
cost (docs/benchmarking.md, "What made the difference", Batched UDP). Here one
`recvmmsg` fills up to `slots` fixed buffers, the handler sees each datagram as bytes, and
one `sendmmsg` sends the replies, each to the raw address it came from. The peer's address
is decoded only when something asks for it (`Peer.address`: the slow path, a log line);
a reply that completes later keeps it raw (`Peer.raw`) and leaves through an `Outbox`,
which also carries the forwarder's queries to its upstreams (one `sendmmsg` per loop turn);
their replies come back through an `Inbox` (one `recvmmsg` per socket and wake-up).

Replies are not copied: each outgoing message is two pieces, the query's own ID (read in
place from the receive buffer) and the reply bytes, pointed at where CPython keeps a bytes
object's data (`id(obj)` + a fixed offset, found and checked at import; no batching where
it cannot be). Every such object is passed to the call that sends it (`Batch.send`'s `keep`,
`Outbox.send`'s lists), which keeps it referenced until `sendmmsg` returns.

The structures are laid out by hand for LP64 Linux (x86-64, arm64: 8-byte pointers):

    struct iovec   { void *iov_base; size_t iov_len; }                        16 bytes
    struct msghdr  { void *name; socklen_t namelen; (pad) struct iovec *iov;
                     size_t iovlen; void *control; size_t controllen; int flags; }  56
    struct mmsghdr { struct msghdr hdr; unsigned int len; }                     64 bytes

A sent message has two iovecs: [ID from the receive slot (2 bytes, or 0), the reply].

`available()` says whether this applies; elsewhere the transport reads one datagram per
call as before. Buffers are bytearrays that live as long as the `Batch`, so the pointers
the kernel gets stay valid.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import sys
from typing import Any, Final

_IOVEC: Final = 16
_SEND_IOV: Final = 2 * _IOVEC  # per sent message: the ID, then the reply
_MMSGHDR: Final = 64
_NAME: Final = 32  # a slot for sockaddr_in (16) or sockaddr_in6 (28)
_MSG_DONTWAIT: Final = 0x40
_AGAIN: Final = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)

# Indexes into the 64-byte mmsghdr through 8-byte ('Q') and 4-byte ('I') views.
_Q_NAME, _I_NAMELEN, _Q_IOV, _Q_IOVLEN, _I_LEN = 0, 2, 2, 3, 14
_Q_PER_MSG, _I_PER_MSG = _MMSGHDR // 8, _MMSGHDR // 4
LENGTH_STRIDE, LENGTH_AT = _I_PER_MSG, _I_LEN
"""`Batch.recv_lengths[i * LENGTH_STRIDE + LENGTH_AT]`: the bytes in receive slot i."""
NAME_STRIDE: Final = _NAME
"""`Batch.send_names[8 * k] = Batch.names_at + i * NAME_STRIDE`: reply k goes to sender i."""


def _libc_calls() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):  # pragma: no cover - a libc without them (musl < 1.1)
        return None
    recvmmsg.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


def _bytes_data_offset() -> int | None:
    """Where a bytes object's data starts, from its id(); None unless verified here."""
    if sys.implementation.name != "cpython":  # pragma: no cover - id() is not an address
        return None
    samples = (b"kdns-probe", bytes(range(40)), b"\x00" * 300)
    found = {
        int(ctypes.cast(ctypes.c_char_p(sample), ctypes.c_void_p).value or 0) - id(sample)
        for sample in samples
    }
    if len(found) != 1:  # pragma: no cover - not CPython's layout
        return None
    offset = found.pop()
    if any(ctypes.string_at(id(sample) + offset, len(sample)) != sample for sample in samples):
        return None  # pragma: no cover
    return offset


_CALLS = _libc_calls()
BYTES_DATA = _bytes_data_offset() if _CALLS is not None else None
"""`id(b) + BYTES_DATA`: the address of bytes object b's data (CPython)."""


def available() -> bool:
    """recvmmsg/sendmmsg can be called (Linux, LP64, a libc that has them), and replies
    can be sent from where they are (CPython)."""
    return _CALLS is not None and BYTES_DATA is not None


def _address(buf: bytearray | mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def remove_reader(loop: Any, fd: int) -> None:
    """`loop.remove_reader(fd)`, whatever it returns: asyncio's says bool, uvloop's gives
    None, and compiled code (kdns/native.py) would check an annotated bool."""
    loop.remove_reader(fd)


# A socket address as `recvfrom` gives it: (host, port) for IPv4, (host, port, flowinfo,
# scope_id) for IPv6. (Spelled out, not `tuple[str, int]`: compiled code checks it.)
SockAddr = tuple[str, int] | tuple[str, int, int, int]


class Peer:
    """The sender of the datagram in one receive slot, decoded only when asked.

    Valid only while the handler runs for that datagram: the next batch reuses the slot.
    Whatever keeps the address longer (a pending answer, a Request) calls `address()` first.
    """

    __slots__ = ("_names", "_offset", "_v6")

    def __init__(self, names: bytearray, offset: int, v6: bool) -> None:
        self._names = names
        self._offset = offset
        self._v6 = v6

    def raw(self) -> bytes:
        """The sender's address as the kernel gave it (sockaddr_in or sockaddr_in6), for
        sending to it later with `Outbox`."""
        return bytes(self._names[self._offset : self._offset + (28 if self._v6 else 16)])

    def address(self) -> SockAddr:
        """As `socket.recvfrom` gives it: (host, port), plus flow info and scope for IPv6."""
        return decode_address(self.raw())


def decode_address(raw: bytes) -> SockAddr:
    """A raw sockaddr_in or sockaddr_in6 (by its length) as `socket.recvfrom` gives it."""
    port = raw[2] << 8 | raw[3]
    if len(raw) < 28:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    flow = int.from_bytes(raw[4:8], "big")
    scope = int.from_bytes(raw[24:28], sys.byteorder)
    return host, port, flow, scope


class Batch:
    """Receive buffers for `slots` datagrams of up to `size` bytes on one UDP socket, and
    the messages to send replies with. The transport's loop reads and writes the views
    directly (they are its hot path).

    Sending: reply k goes out as `send_iov[4k:4k+4]` = [ID address, ID length, reply
    address, reply length] to `send_names[8k]`. Between batches, message k's ID piece is
    receive slot k's first two octets and its name slot k's sender; a batch that changes
    either for some k (a dropped query shifts the replies after it) calls `restore()`."""

    def __init__(self, sock: socket.socket, *, slots: int = 64, size: int = 4096) -> None:
        assert _CALLS is not None, "mmsg.available() is false here"
        self._recvmmsg, self._sendmmsg = _CALLS
        self.fd = sock.fileno()
        self.slots = slots
        self.size = size
        v6 = sock.family == socket.AF_INET6
        namelen = 28 if v6 else 16
        self.recv_buf = bytearray(slots * size)
        self.recv_view = memoryview(self.recv_buf)
        self.names = bytearray(slots * _NAME)
        self.peers = [Peer(self.names, i * _NAME, v6) for i in range(slots)]
        self._recv_iov = bytearray(slots * _IOVEC)
        self._recv_msgs = bytearray(slots * _MMSGHDR)
        self._send_iov = bytearray(slots * _SEND_IOV)
        self._send_msgs = bytearray(slots * _MMSGHDR)
        base_recv, base_names = _address(self.recv_buf), _address(self.names)
        self.recv_at = base_recv
        self.names_at = base_names
        self._recv_msgs_at = _address(self._recv_msgs)
        self._send_msgs_at = _address(self._send_msgs)
        recv_iov_at, send_iov_at = _address(self._recv_iov), _address(self._send_iov)
        riov = memoryview(self._recv_iov).cast("Q")
        rq = memoryview(self._recv_msgs).cast("Q")
        ri = memoryview(self._recv_msgs).cast("I")
        siov = memoryview(self._send_iov).cast("Q")
        sq = memoryview(self._send_msgs).cast("Q")
        si = memoryview(self._send_msgs).cast("I")
        for i in range(slots):
            riov[2 * i], riov[2 * i + 1] = base_recv + i * size, size
            for q, i_view, iov_at, per, count in (
                (rq, ri, recv_iov_at, _IOVEC, 1),
                (sq, si, send_iov_at, _SEND_IOV, 2),
            ):
                q[i * _Q_PER_MSG + _Q_NAME] = base_names + i * _NAME
                i_view[i * _I_PER_MSG + _I_NAMELEN] = namelen
                q[i * _Q_PER_MSG + _Q_IOV] = iov_at + i * per
                q[i * _Q_PER_MSG + _Q_IOVLEN] = count
        riov.release()
        self.recv_lengths = ri  # [i * 16 + 14]: bytes in receive slot i
        self.send_iov = siov
        self.send_names = sq  # [8 * k]: where reply k goes (a receive slot's name)
        self.restore(0, slots)

    def restore(self, first: int, last: int) -> None:
        """Point messages first..last-1 back at their own receive slots (ID and sender)."""
        iov, names = self.send_iov, self.send_names
        for k in range(first, last):
            iov[4 * k] = self.recv_at + k * self.size
            iov[4 * k + 1] = 2
            names[8 * k] = self.names_at + k * _NAME

    def receive(self) -> int:
        """Fill up to `slots` receive slots; 0 when nothing is queued. Raises OSError for a
        socket error (an ICMP error queued on it, say): the caller logs and carries on."""
        n = int(self._recvmmsg(self.fd, self._recv_msgs_at, self.slots, _MSG_DONTWAIT, None))
        if n >= 0:
            return n
        err = ctypes.get_errno()
        if err in _AGAIN:
            return 0
        raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")

    def send(self, count: int, keep: list[bytes]) -> int:
        """Send replies 0..count-1 as laid out by the caller; returns how many went out. A
        reply the kernel refuses (a full buffer, an unreachable peer) is dropped, as UDP
        may; the rest still go. `keep`: the objects the messages point into. Being an
        argument keeps them alive until the call returns; a local the caller no longer reads
        would not (compiled code releases a local after its last use)."""
        sent = pos = 0
        sendmmsg, base = self._sendmmsg, self._send_msgs_at
        while pos < count:
            n = int(sendmmsg(self.fd, base + pos * _MMSGHDR, count - pos, _MSG_DONTWAIT))
            if n > 0:
                pos += n
                sent += n
                continue
            if ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK):
                break  # the send buffer is full: the rest would fail the same way
            pos += 1  # this reply failed (e.g. EPERM from a firewall): skip it
        return sent


class Outbox:
    """Datagrams sent together on one UDP socket with one sendmmsg(2): to its connected
    peer, or (`named`) each to a raw socket address as `Peer.raw` gives it.

    For datagrams that do not leave within a receive batch: queries to an upstream, and
    the replies that come back from it. On a virtual machine a datagram that wakes a
    reader sleeping on another CPU costs more than everything else in its send; one call
    per loop turn pays that once for the turn (docs/benchmarking.md, "What made the
    difference"). Each message is one iovec pointing at the bytes object itself (no
    copy), and so is its name; the caller keeps them referenced until `send` returns."""

    def __init__(self, fd: int, *, slots: int = 64, named: bool = False) -> None:
        assert _CALLS is not None, "mmsg.available() is false here"
        assert BYTES_DATA is not None, "mmsg.available() is false here"
        self._sendmmsg = _CALLS[1]
        self._data_at = BYTES_DATA
        self.fd = fd
        self.slots = slots
        self.named = named
        self._iov = bytearray(slots * _IOVEC)
        self._msgs = bytearray(slots * _MMSGHDR)
        self._msgs_at = _address(self._msgs)
        iov_at = _address(self._iov)
        q = memoryview(self._msgs).cast("Q")
        for i in range(slots):
            q[i * _Q_PER_MSG + _Q_IOV] = iov_at + i * _IOVEC
            q[i * _Q_PER_MSG + _Q_IOVLEN] = 1
        q.release()
        self._iov_q = memoryview(self._iov).cast("Q")
        self._msg_q = memoryview(self._msgs).cast("Q")
        self._msg_i = memoryview(self._msgs).cast("I")

    def send(self, messages: list[bytes], names: list[bytes] | None = None, start: int = 0) -> int:
        """Send messages[start:] (at most `slots` of them), message j to names[j] (required
        when `named`, ignored otherwise). Returns how many the kernel took from the front
        (> 0), or -errno when it took none: the first one failed, and the caller skips it."""
        iov, data_at = self._iov_q, self._data_at
        count = min(len(messages) - start, self.slots)
        if self.named:
            assert names is not None
            q, i_view = self._msg_q, self._msg_i
            for k in range(count):
                name = names[start + k]
                q[k * _Q_PER_MSG + _Q_NAME] = id(name) + data_at
                i_view[k * _I_PER_MSG + _I_NAMELEN] = len(name)
        for k in range(count):
            data = messages[start + k]
            iov[2 * k] = id(data) + data_at
            iov[2 * k + 1] = len(data)
        n = int(self._sendmmsg(self.fd, self._msgs_at, count, _MSG_DONTWAIT))
        if n > 0:
            return n
        return -(ctypes.get_errno() or errno.EIO)

    def send_all(self, messages: list[bytes], names: list[bytes] | None = None) -> list[int]:
        """Send every message (with as many `send` calls as it takes). Returns [] when all
        left, else one errno per message, 0 for those sent. A message the kernel refuses
        (EMSGSIZE, EPERM...) fails alone; a full send buffer fails it and the rest (they
        would fail the same way)."""
        count = len(messages)
        failed: list[int] = []
        pos = 0
        while pos < count:
            n = self.send(messages, names, pos)
            if n > 0:
                pos += n
                continue
            if not failed:
                failed = [0] * count
            last = count if -n in (errno.EAGAIN, errno.EWOULDBLOCK) else pos + 1
            failed[pos:last] = [-n] * (last - pos)
            pos = last
        return failed


class Inbox:
    """Datagrams read together from a connected UDP socket with one recvmmsg(2): the
    forwarder's upstream replies, instead of one recv(2) per reply and one more that finds
    the socket drained.

    One Inbox serves any number of sockets, one `receive` at a time (it returns copies).
    A slot holds the largest UDP payload, so nothing is ever cut short; the slots are an
    anonymous mapping, whose pages the process only pays for once a datagram fills them."""

    def __init__(self, *, slots: int = 32, size: int = 65536) -> None:
        assert _CALLS is not None, "mmsg.available() is false here"
        self._recvmmsg = _CALLS[0]
        self.slots = slots
        self.size = size
        self._buf = mmap.mmap(-1, slots * size)
        self._iov = bytearray(slots * _IOVEC)
        self._msgs = bytearray(slots * _MMSGHDR)
        self._msgs_at = _address(self._msgs)
        base, iov_at = _address(self._buf), _address(self._iov)
        iov = memoryview(self._iov).cast("Q")
        q = memoryview(self._msgs).cast("Q")
        for i in range(slots):
            iov[2 * i], iov[2 * i + 1] = base + i * size, size
            q[i * _Q_PER_MSG + _Q_IOV] = iov_at + i * _IOVEC  # (no name: connected)
            q[i * _Q_PER_MSG + _Q_IOVLEN] = 1
        iov.release()
        q.release()
        self._lengths = memoryview(self._msgs).cast("I")

    def receive(self, fd: int) -> list[bytes]:
        """Up to `slots` datagrams queued on `fd`, oldest first; [] when none is. Raises
        OSError for a socket error (an ICMP error queued on it: ECONNREFUSED...)."""
        n = int(self._recvmmsg(fd, self._msgs_at, self.slots, _MSG_DONTWAIT, None))
        if n < 0:
            err = ctypes.get_errno()
            if err in _AGAIN:
                return []
            raise OSError(err, os.strerror(err))
        buf, lengths, size = self._buf, self._lengths, self.size
        return [buf[i * size : i * size + lengths[i * _I_PER_MSG + _I_LEN]] for i in range(n)]
