"""The per-fetch forwarder on 127.0.0.1: a listener on an ephemeral port, one thread per
accepted connection, each conversation a loop of request checked (`http1`), passed on to a
checked address (`upstream.dial`) and answered, a redirect replaced by a 502. Its bounds on
connections, requests and waits are here; `close()` cuts everything at once.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import structlog

from purgatory.fetch.pinning.http1 import (
    Head,
    ProtocolError,
    Request,
    absolute_target,
    parse_request,
    request_framing,
    response_framing,
    response_status,
    rewrite_request,
    rewrite_response,
    says_close,
)
from purgatory.fetch.pinning.reader import Reader
from purgatory.fetch.pinning.upstream import Target, dial

log = structlog.get_logger(__name__)

REQUEST_HEAD_LIMIT = 16 * 1024  # libgit2's request heads are a few hundred bytes
RESPONSE_HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_S = 10.0
MAX_CONCURRENT = 8  # libgit2 uses one connection at a time
MAX_CONNECTIONS = 256
MAX_REQUESTS = 256  # per connection; a stateless negotiation is one POST per round
MAX_INTERIM = 4  # 1xx responses skipped before the real one
MAX_NOTES = 16
ACCEPT_POLL_S = 0.1



def respond(sock: socket.socket, status: int, reason: str, text: str) -> None:
    """A short final answer from the forwarder itself; the connection closes after it."""
    body = text.encode("utf-8", "replace")[:1000]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    try:
        sock.sendall(head.encode("ascii") + body)
    except OSError:
        pass


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
                closing = framing.kind == "close" or says_close(head)
                client.sendall(rewrite_response(head, closing))
                upstream.copy_body(framing, client, self._deadline)
                return not closing
            # 1xx: nothing libgit2 asked for (Expect is answered here); wait for the real one
        return self._refuse_response(client, "too many interim responses")

    def _refuse_response(self, client: socket.socket, why: str) -> bool:
        self._note(why)
        answer_last(client, 502, "Bad Gateway", why)
        return False
