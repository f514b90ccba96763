"""HTTP/1.1 as the pinned forwarder reads it: request and response heads parsed and rewritten,
and how each message body is framed. Pure (bytes in, values out), so every refusal the
forwarder makes on a head is decided here, without a socket.

What is passed on must read the same to every parser: bare CR or LF, nameless header lines,
both Content-Length and Transfer-Encoding, and transfer codings other than chunked on a
request are refused rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_REQUEST_HOP_BY_HOP = frozenset({b"host", b"connection", b"keep-alive", b"proxy-connection",
                                 b"proxy-authorization", b"te", b"upgrade", b"expect"})
_RESPONSE_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection"})
_DIGITS = re.compile(r"[0-9]{1,19}")


class ProtocolError(Exception):
    """A head or body framing the forwarder will not pass on (too large, too slow, cut
    short, malformed or ambiguous)."""


# -- heads -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """An HTTP/1.x head: the start line and the header lines, as sent."""

    start: bytes
    lines: tuple[bytes, ...]

    @classmethod
    def parse(cls, raw: bytes) -> Head:
        """`raw` ends with the blank line. Bare CR or LF and header lines without a name are
        refused: what the forwarder passes on must read the same to every parser."""
        start, *lines = raw[:-4].split(b"\r\n")
        for line in (start, *lines):
            if b"\r" in line or b"\n" in line:
                raise ProtocolError("bare CR or LF in head")
        for line in lines:
            name, sep, _ = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ProtocolError("malformed header line")
        return cls(start, tuple(lines))

    def values(self, name: bytes) -> list[str]:
        return [line.partition(b":")[2].strip().decode("latin-1") for line in self.lines
                if line.partition(b":")[0].lower() == name]

    def without(self, names: frozenset[bytes]) -> list[bytes]:
        return [line for line in self.lines if line.partition(b":")[0].lower() not in names]

    def tokens(self, name: bytes) -> set[str]:
        return {token.strip().lower() for value in self.values(name) for token in value.split(",")}


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    head: Head


def parse_request(raw: bytes) -> Request:
    head = Head.parse(raw)
    try:
        method, target, version = head.start.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("malformed request line") from exc
    if not version.startswith("HTTP/1.") or not method.isalpha():
        raise ProtocolError("not an HTTP/1.x request")
    return Request(method, target, head)


def response_status(head: Head) -> int | None:
    parts = head.start.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        return None
    return int(parts[1])


def absolute_target(value: str) -> tuple[str, str, int, str] | None:
    """scheme, host, port and origin-form path of an absolute-form http(s) target, or None."""
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not host:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], path


def rewrite_request(request: Request, path: str, authority: str) -> bytes:
    """The head to send upstream: origin-form target and the clone URL's Host."""
    lines = [f"{request.method} {path} HTTP/1.1".encode("ascii"), b"Host: " + authority.encode("ascii"),
             *request.head.without(_REQUEST_HOP_BY_HOP)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def rewrite_response(head: Head, closing: bool) -> bytes:
    """The response head for libgit2, saying `Connection: close` when this is the last."""
    lines = [head.start, *head.without(_RESPONSE_HOP_BY_HOP), *([b"Connection: close"] if closing else [])]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# -- bodies ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Framing:
    """How a message body ends (RFC 9112 section 6)."""

    kind: Literal["none", "length", "chunked", "close"]
    length: int = 0


def _content_length(values: list[str]) -> int:
    if len(set(values)) != 1 or not _DIGITS.fullmatch(values[0]):
        raise ProtocolError("bad Content-Length")
    return int(values[0])


def request_framing(head: Head) -> Framing:
    codings, lengths = head.values(b"transfer-encoding"), head.values(b"content-length")
    if codings and lengths:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if codings:
        if [c.strip().lower() for c in codings] != ["chunked"]:
            raise ProtocolError("unsupported Transfer-Encoding")
        return Framing("chunked")
    return Framing("length", _content_length(lengths)) if lengths else Framing("none")


def response_framing(status: int, head: Head, method: str) -> Framing:
    if method == "HEAD" or status in (204, 304):
        return Framing("none")
    codings, lengths = head.values(b"transfer-encoding"), head.values(b"content-length")
    if codings and lengths:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if codings:
        last = codings[-1].split(",")[-1].strip().lower()
        return Framing("chunked") if last == "chunked" else Framing("close")
    return Framing("length", _content_length(lengths)) if lengths else Framing("close")


def says_close(head: Head) -> bool:
    if "close" in head.tokens(b"connection"):
        return True
    return head.start.startswith(b"HTTP/1.0") and "keep-alive" not in head.tokens(b"connection")
