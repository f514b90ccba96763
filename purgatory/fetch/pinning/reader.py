"""Bounded reads from one socket: heads and lines up to a marker, then bodies copied to
another socket in large blocks, framed as `http1.Framing` says. Python work is per read or
per chunk, never per byte; every read waits at most the idle time and none starts after the
fetch's deadline.
"""

from __future__ import annotations

import re
import socket
import time

from purgatory.fetch.pinning.http1 import Framing, ProtocolError

SOCKET_READ = 256 * 1024  # one recv of the forwarder (not a git body unit)
LINE_LIMIT = 4 * 1024  # chunk-size and trailer lines
MAX_TRAILERS = 64
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class Reader:
    """Buffered, bounded reads from one socket: heads and lines up to a marker, then bodies
    copied to another socket in large blocks. Every read waits at most `idle_s` and none
    starts after the deadline given."""

    def __init__(self, sock: socket.socket, idle_s: float) -> None:
        self.sock = sock
        self._idle_s = idle_s
        self._buffer = bytearray()
        self._block = bytearray(SOCKET_READ)

    def _wait(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out: deadline passed")
        self.sock.settimeout(min(left, self._idle_s))

    def read_until(self, marker: bytes, limit: int, deadline: float, eof_ok: bool = False) -> bytes:
        """Bytes up to and including `marker`; b"" when `eof_ok` and the peer closed before
        sending anything more."""
        start = 0
        while (end := self._buffer.find(marker, start)) < 0:
            if len(self._buffer) >= limit:
                raise ProtocolError(f"head or line longer than {limit} bytes")
            start = max(0, len(self._buffer) - len(marker) + 1)
            self._wait(deadline)
            chunk = self.sock.recv(min(SOCKET_READ, limit - len(self._buffer) + len(marker)))
            if not chunk:
                if eof_ok and not self._buffer:
                    return b""
                raise ProtocolError("connection closed in the middle of a head")
            self._buffer += chunk
        taken = bytes(self._buffer[:end + len(marker)])
        del self._buffer[:end + len(marker)]
        return taken

    def copy(self, n: int, dst: socket.socket, deadline: float) -> None:
        """Exactly `n` bytes to `dst`."""
        if self._buffer:
            take = min(n, len(self._buffer))
            dst.sendall(self._buffer[:take])
            del self._buffer[:take]
            n -= take
        view = memoryview(self._block)
        while n > 0:
            self._wait(deadline)
            got = self.sock.recv_into(view, min(n, SOCKET_READ))
            if not got:
                raise ProtocolError("connection closed in the middle of a body")
            dst.sendall(view[:got])
            n -= got

    def copy_to_eof(self, dst: socket.socket, deadline: float) -> None:
        """Everything until the peer closes (bounded by the deadline, as every read is)."""
        if self._buffer:
            dst.sendall(self._buffer)
            self._buffer.clear()
        view = memoryview(self._block)
        while True:
            self._wait(deadline)
            got = self.sock.recv_into(view)
            if not got:
                return
            dst.sendall(view[:got])

    def copy_chunked(self, dst: socket.socket, deadline: float) -> None:
        """A chunked body, verbatim: each size line is read, each chunk copied as a block.
        (No count bounds the chunks; the deadline does, every read checks it.)"""
        while True:
            line = self.read_until(b"\r\n", LINE_LIMIT, deadline)
            size = line[:-2].split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size):
                raise ProtocolError("bad chunk size")
            dst.sendall(line)
            if int(size, 16) == 0:
                break
            self.copy(int(size, 16) + 2, dst, deadline)
        for _ in range(MAX_TRAILERS + 1):
            trailer = self.read_until(b"\r\n", LINE_LIMIT, deadline)
            dst.sendall(trailer)
            if trailer == b"\r\n":
                return
        raise ProtocolError("too many trailer lines")

    def copy_body(self, framing: Framing, dst: socket.socket, deadline: float) -> None:
        if framing.kind == "length":
            self.copy(framing.length, dst, deadline)
        elif framing.kind == "chunked":
            self.copy_chunked(dst, deadline)
        elif framing.kind == "close":
            self.copy_to_eof(dst, deadline)
