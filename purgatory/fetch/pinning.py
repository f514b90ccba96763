"""Pinned fetches: libgit2 reaches only the addresses the outbound check approved, and a
server cannot redirect a fetch anywhere else.

Why: `outbound.check_clone_url` resolves the clone URL's host and checks the addresses, but
libgit2 would resolve the name once more itself (a DNS answer that changes in between, "DNS
rebinding", sends the fetch to 127.0.0.1 or the intranet), and it follows HTTP redirects. So
every fetch gets its own small forwarder on 127.0.0.1 (an ephemeral port, its own threads,
cut when the fetch ends or is abandoned). libgit2 is told the forwarder *is* the server
(`http://127.0.0.1:P/<path>`, no proxy); the forwarder dials only the checked addresses
(IPv4 first, in turn), speaks TLS itself for https URLs, and passes requests and responses
on one by one, reading every head: a request for another host or port is refused (403), a
3xx response is replaced by a 502, and nothing it does not understand is passed on.

libgit2 1.9.7 facts this is built on (read in src/libgit2/transports/{http,httpclient}.c,
remote.c, streams/{socket,openssl}.c and src/util/net.c; checked by tests/test_pinning.py):

- **Plain http never goes through a proxy.** With a proxy given (`GIT_PROXY_SPECIFIED`),
  libgit2 writes the absolute-form request line `GET http://host:port/path HTTP/1.1` but opens
  the socket straight to host:port, resolving the name itself: only https uses the proxy
  (`use_connect_proxy()` is true for https alone; `server_connect()` dials the server unless
  a proxy stream exists). That is why an earlier prototype saw its proxy ignored. It is not
  the proxy URL's form (`http://127.0.0.1:P`, with or without a trailing slash, or without a
  scheme, all parse), not no_proxy/NO_PROXY (read only for `GIT_PROXY_AUTO`, pygit2's
  `proxy=True`), and there is no loopback bypass. pygit2 1.21 maps `proxy=None` to
  `GIT_PROXY_NONE`, `True` to `GIT_PROXY_AUTO`, and only an exact `str` to `GIT_PROXY_SPECIFIED`.
- **https through a proxy is unsafe to use.** libgit2 does send `CONNECT host:port` and runs
  TLS through the tunnel, but when the server's certificate is rejected,
  `http_client_connect()` frees the proxy stream before closing the TLS stream layered on it;
  the TLS close then writes its alert through the freed stream (a use-after-free, still there
  on libgit2's main branch) and the fetch thread was seen blocked in poll() for good. An
  expired or mismatched certificate upstream must not hang a worker thread, so libgit2 is
  given no proxy at all and the forwarder does TLS (Python's `ssl`, default trust store,
  host name checked; `client_tls()`).
- **Redirects:** `http.followRedirects` (false / initial / true; unset means initial) decides;
  libgit2's per-fetch `git_fetch_options.follow_redirects` would too, but pygit2's
  `Remote.fetch` does not expose it. Even `false` refuses only a redirect to a different host
  *name*: `git_net_url_apply_redirect` compares the host strings and nothing else, so a
  Location on the same host with another port, a path-only Location, and http to https are
  still followed. Since libgit2 takes the forwarder for the server, `127.0.0.1` is the host
  name it compares, so the forwarder refusing every 3xx is what makes "no redirect" true.

Each request is parsed before it is passed on (origin-form, or absolute-form naming the
checked host and port), so a later request on a kept-alive connection is checked like the
first; the upstream connection only ever goes to the checked address it was dialled to.
Bodies are framed as HTTP/1.1 says (Content-Length, chunked, or until the server closes) and
copied verbatim; ambiguous framing (both headers, other transfer codings) is refused.

Bounds: request heads 16 KiB within 10 s (later requests on a connection: the idle time),
response heads 64 KiB, chunk-size lines 4 KiB; 8 connections at once and 256 in all per
fetch, 256 requests per connection; every socket read waits at most the idle timeout and
nothing is read after the fetch's deadline. Bytes move in 256 KiB reads (TLS: a record, 16
KiB, per read), with Python work per chunk or read, never per byte. Another local process
could connect to the forwarder during the fetch, but it would only reach the server the
fetch may reach anyway.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger(__name__)

SOCKET_READ = 256 * 1024  # one recv of the forwarder (not a git body unit)
REQUEST_HEAD_LIMIT = 16 * 1024  # libgit2's request heads are a few hundred bytes
RESPONSE_HEAD_LIMIT = 64 * 1024
LINE_LIMIT = 4 * 1024  # chunk-size and trailer lines
HEAD_TIMEOUT_S = 10.0
MAX_CONCURRENT = 8  # libgit2 uses one connection at a time
MAX_CONNECTIONS = 256
MAX_REQUESTS = 256  # per connection; a stateless negotiation is one POST per round
MAX_INTERIM = 4  # 1xx responses skipped before the real one
MAX_TRAILERS = 64
MAX_NOTES = 16
ACCEPT_POLL_S = 0.1
DEFAULT_PORTS = {"http": 80, "https": 443}
_REQUEST_HOP_BY_HOP = frozenset({b"host", b"connection", b"keep-alive", b"proxy-connection",
                                 b"proxy-authorization", b"te", b"upgrade", b"expect"})
_RESPONSE_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection"})
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,19}")


class ProtocolError(Exception):
    """A head or body framing the forwarder will not pass on (too large, too slow, cut
    short, malformed or ambiguous)."""


@lru_cache(maxsize=1)
def client_tls() -> ssl.SSLContext:
    """How the forwarder checks https servers: the default trust store (SSL_CERT_FILE and
    SSL_CERT_DIR are honoured) and the URL's host name. One context per process; tests add
    their own authority to it with `load_verify_locations`."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class Target:
    """Where one fetch may go: the clone URL's scheme, host and port as checked, the Host
    header it implies, and the checked addresses, IPv4 first."""

    scheme: str
    host: str  # as urlsplit gives it: lower case, IPv6 without brackets
    port: int
    authority: str  # host[:port] as written, without userinfo: the Host header
    path: str  # path and query, what libgit2 appends its service paths to
    addresses: tuple[str, ...]

    @classmethod
    def from_url(cls, url: str, addresses: Sequence[str]) -> Target:
        """Raises ValueError for anything but an http(s) URL with an ASCII host."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url[:200]}")
        authority = parts.netloc.rpartition("@")[2]
        if not authority.isascii():
            raise ValueError("non-ASCII host name; use its punycode form")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        ordered = tuple(sorted(dict.fromkeys(addresses), key=lambda address: ":" in address))
        return cls(parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], authority, path, ordered)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_name(self) -> str | None:
        return self.host if self.scheme == "https" else None


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


def _says_close(head: Head) -> bool:
    if "close" in head.tokens(b"connection"):
        return True
    return head.start.startswith(b"HTTP/1.0") and "keep-alive" not in head.tokens(b"connection")


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


# -- sockets ---------------------------------------------------------------------------------

def respond(sock: socket.socket, status: int, reason: str, text: str) -> None:
    """A short final answer from the forwarder itself; the connection closes after it."""
    body = text.encode("utf-8", "replace")[:1000]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    try:
        sock.sendall(head.encode("ascii") + body)
    except OSError:
        pass


def dial(address: str, port: int, timeout_s: float, tls_name: str | None) -> socket.socket:
    """Connect to a numeric address (a host name fails instead of being resolved), then
    speak TLS to `tls_name` when given, its certificate checked against that name."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout_s)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_name is None:
            return sock
        return client_tls().wrap_socket(sock, server_hostname=tls_name)
    except BaseException:
        sock.close()
        raise


def _shutdown(sock: socket.socket | None) -> None:
    """Shut the TCP connection down (waking a thread blocked on it). For a TLS socket this
    goes to the descriptor, not through `SSLSocket.shutdown`, which would also drop its TLS
    state under the thread still using it."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def answer_last(sock: socket.socket, status: int, reason: str, text: str) -> None:
    """The forwarder's own final answer, then the start of an orderly end: what the client
    already sent is read (briefly, bounded), since closing a socket with unread data resets
    the connection and the client could lose the answer. The caller closes the socket."""
    respond(sock, status, reason, text)
    end = time.monotonic() + 0.2
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        while drained < REQUEST_HEAD_LIMIT and (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(REQUEST_HEAD_LIMIT)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass


class _Connection:
    """One accepted connection and the upstream socket dialled for it. Only its own thread
    reads, writes and closes them; `shutdown` (from `Forwarder.close`) just wakes it."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self._lock = threading.Lock()
        self._shut = False

    def attach(self, upstream: socket.socket) -> bool:
        with self._lock:
            if self._shut:
                upstream.close()
                return False
            self.upstream = upstream
            return True

    def shutdown(self) -> None:
        with self._lock:
            self._shut = True
            _shutdown(self.client)
            _shutdown(self.upstream)

    def close(self) -> None:
        self.shutdown()
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class Forwarder:
    """The per-fetch forwarder: give libgit2 `url`, `close()` when the fetch ends."""

    def __init__(self, target: Target, deadline: float, idle_timeout_s: float,
                 head_timeout_s: float = HEAD_TIMEOUT_S) -> None:
        self.target = target
        self._deadline = deadline  # monotonic; nothing is accepted or read after it
        self._idle_s = idle_timeout_s
        self._head_s = head_timeout_s
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._notes: list[str] = []
        self._dial_error: str | None = None
        self._listener: socket.socket | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=MAX_CONCURRENT)
        self._listener.settimeout(ACCEPT_POLL_S)
        self._spawn(self._accept_loop, "accept")
        return self

    def close(self) -> None:
        """Stop accepting and cut every connection; the threads end on their own, promptly
        (nothing waits for them here, so the event loop may call this)."""
        self._closed.set()
        with self._lock:
            connections = list(self._connections)
        _shutdown(self._listener)
        for conn in connections:
            conn.shutdown()

    def join(self, timeout_s: float) -> bool:
        """Wait (bounded) for every thread of this forwarder to end; True when they have."""
        end = time.monotonic() + timeout_s
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            alive[0].join(left)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._listener is not None, "forwarder not started"
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        """The URL to hand libgit2 (with no proxy): the forwarder standing in for the server."""
        return f"http://127.0.0.1:{self.port}{self.target.path}"

    # -- what happened, for the fetch outcome --------------------------------------------

    @property
    def dial_error(self) -> str | None:
        """Why the checked addresses could not be reached, when they could not."""
        with self._lock:
            return self._dial_error

    @property
    def notes(self) -> tuple[str, ...]:
        """Refused requests and responses, in order (at most MAX_NOTES)."""
        with self._lock:
            return tuple(self._notes)

    def _note(self, text: str) -> None:
        log.info("fetch.pinning", target=self.target.where, note=text)
        with self._lock:
            if len(self._notes) < MAX_NOTES:
                self._notes.append(text)

    # -- threads ---------------------------------------------------------------------------

    def _spawn(self, func: Callable[..., None], role: str, *args: object) -> None:
        thread = threading.Thread(target=func, args=args, daemon=True, name=f"fetch-pin:{self.target.where}:{role}")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._closed.is_set() and time.monotonic() < self._deadline:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return  # shut down by close()
                if not self._admit(client):
                    return
        finally:
            listener.close()

    def _admit(self, client: socket.socket) -> bool:
        """Take one connection on; False when no more will be (the listener then closes)."""
        with self._lock:
            self._accepted += 1
            last = self._accepted >= MAX_CONNECTIONS
            busy = len(self._connections) >= MAX_CONCURRENT or self._closed.is_set()
            conn = None if busy else _Connection(client)
            if conn is not None:
                self._connections.add(conn)
        if conn is None:
            answer_last(client, 503, "Service Unavailable", "too many connections for this fetch")
            client.close()
        else:
            self._spawn(self._serve, "conn", conn)
        if last:
            self._note(f"connection limit ({MAX_CONNECTIONS}) reached")
        return not last

    def _serve(self, conn: _Connection) -> None:
        try:
            self._converse(conn)
        except OSError:
            pass  # resets and broken pipes are how connections end when a fetch stops reading
        except ProtocolError as exc:
            log.debug("fetch.pinning_connection_ended", target=self.target.where, reason=str(exc)[:200])
        finally:
            conn.close()
            with self._lock:
                self._connections.discard(conn)

    # -- one connection --------------------------------------------------------------------

    def _converse(self, conn: _Connection) -> None:
        """Requests from libgit2, one at a time, each checked, passed on and answered."""
        client = Reader(conn.client, self._idle_s)
        upstream: Reader | None = None
        for index in range(MAX_REQUESTS):
            wait_s = self._head_s if index == 0 else self._idle_s
            try:
                raw = client.read_until(b"\r\n\r\n", REQUEST_HEAD_LIMIT,
                                        min(time.monotonic() + wait_s, self._deadline), eof_ok=True)
                if not raw:
                    return  # libgit2 is done with this connection (or never used it)
                request = parse_request(raw)
                framing = request_framing(request.head)
            except TimeoutError:
                if index > 0:
                    return  # an idle kept-alive connection
                self._note("bad request: head not complete in time")
                answer_last(conn.client, 400, "Bad Request", "request head not complete in time")
                return
            except ProtocolError as exc:
                self._note(f"bad request: {exc}")
                answer_last(conn.client, 400, "Bad Request", str(exc))
                return
            path, refusal = self._route(request)
            if refusal is not None:
                self._note(refusal)
                answer_last(conn.client, 403, "Forbidden", refusal)
                return
            if upstream is None:
                upstream = self._connect(conn)
                if upstream is None:
                    return
            if "100-continue" in request.head.tokens(b"expect"):
                conn.client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # the server is not asked
            upstream.sock.sendall(rewrite_request(request, path, self.target.authority))
            client.copy_body(framing, upstream.sock, self._deadline)
            if not self._relay_response(request, upstream, conn.client):
                return

    def _route(self, request: Request) -> tuple[str, str | None]:
        """The origin-form path to request upstream, or why the request is refused."""
        target = self.target
        if request.target.startswith("/") and request.method != "CONNECT":
            return request.target, None  # libgit2 took the forwarder for the server
        named = absolute_target(request.target) if request.method != "CONNECT" else None
        if named is not None and named[:3] == (target.scheme, target.host, target.port):
            return named[3], None
        return "", f"refused {request.method} {request.target[:200]}: this fetch may reach only {target.where}"

    def _connect(self, conn: _Connection) -> Reader | None:
        """The upstream connection, to the first checked address that answers, in order."""
        failures: list[str] = []
        addresses = self.target.addresses
        for index, address in enumerate(addresses):
            left = min(self._deadline - time.monotonic(), self._idle_s)
            if left <= 0:
                failures.append("timed out: fetch deadline passed")
                break
            left /= len(addresses) - index  # a silent first address must leave time for the rest
            try:
                sock = dial(address, self.target.port, left, self.target.tls_name)
            except ssl.SSLError as exc:
                failures.append(f"{address}: TLS handshake failed: {exc}")
                continue
            except OSError as exc:
                failures.append(f"{address}: {exc.strerror or exc}")
                continue
            return Reader(sock, self._idle_s) if conn.attach(sock) else None
        error = f"cannot connect to {self.target.where} at {'; '.join(failures) or 'no checked address'}"
        with self._lock:
            self._dial_error = error
        self._note(error)
        answer_last(conn.client, 502, "Bad Gateway", error)
        return None

    def _relay_response(self, request: Request, upstream: Reader, client: socket.socket) -> bool:
        """Pass the response on unless it is a redirect; True when both connections may
        carry another request."""
        for _ in range(MAX_INTERIM + 1):
            try:
                head = Head.parse(upstream.read_until(b"\r\n\r\n", RESPONSE_HEAD_LIMIT, self._deadline))
                status = response_status(head)
                if status is None or status == 101:
                    raise ProtocolError("unusable response from the server")
                framing = response_framing(status, head, request.method)
            except ProtocolError as exc:
                return self._refuse_response(client, f"bad response: {exc}")
            if 300 <= status < 400:
                location = (head.values(b"location") or ["(no location)"])[0][:200]
                return self._refuse_response(client, f"redirect refused: {status} to {location}")
            if status >= 200:
                closing = framing.kind == "close" or _says_close(head)
                client.sendall(rewrite_response(head, closing))
                upstream.copy_body(framing, client, self._deadline)
                return not closing
            # 1xx: nothing libgit2 asked for (Expect is answered here); wait for the real one
        return self._refuse_response(client, "too many interim responses")

    def _refuse_response(self, client: socket.socket, why: str) -> bool:
        self._note(why)
        answer_last(client, 502, "Bad Gateway", why)
        return False
