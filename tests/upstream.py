"""A real git smart HTTP server on 127.0.0.1 for tests: `git http-backend` behind a tiny CGI bridge.

Tests of fetching and syncing need an "other GRASP server" that speaks real git, can be made to
fail or hang on demand, and counts what it was asked, so throttling can be checked from the
server's side rather than trusted from the client's.

Counters (all guarded by one lock, read them through the properties or `snapshot()`):

- `requests`: every HTTP request answered or accepted (GET info/refs and POST upload-pack alike).
- `fetches` / `fetch_starts`: the `GET .../info/refs` requests only. One `git fetch` / libgit2 fetch
  starts with exactly one such GET, then makes one or more POSTs, so this is the count of fetch
  sessions and `fetch_starts` holds their `time.monotonic()` start times (for "never more than N
  per 60 s" checks).
- `current` / `peak`: HTTP requests in flight now / at most at once. This is per HTTP request, not
  per fetch session: a session's requests are sequential, so overlapping sessions show up as
  overlapping requests while they are actually talking to the server.
- `request_starts`: `time.monotonic()` start time of every HTTP request.
- `hosts`: the Host header of every request (what a pinned fetch told the server it wanted).

`Upstream(bind=..., port=...)` listens on another loopback address or a fixed port (two servers
on one port, 127.0.0.1 and 127.0.0.2, stand for one name answering two ways); `tls=` serves
https (`make_cert` makes a self-signed certificate for a name). `Redirector` answers every
request with a redirect and counts them.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from tests.gitutil import git

_CHUNK = 64 * 1024


class _TlsServer(ThreadingHTTPServer):
    """Serves https when `tls` is set: the handshake runs in the request's own thread, with a
    time limit, so a client that stalls or gives up mid-handshake never blocks the server."""

    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request.settimeout(5)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                request.close()
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


class _Server(_TlsServer):
    upstream: Upstream


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self.server.upstream._handle(self)

    def do_POST(self) -> None:
        self.server.upstream._handle(self)


class Upstream:
    """Serve every bare repo under `root` at http://<host>:<port>/<name>.git.

    `host` is what `url_for` puts in URLs: use "127.0.0.1" for one upstream and "localhost" for
    another to get two different domains (domain = host:port; the ports differ anyway).
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", *, bind: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.root = root
        self.host = host
        self._bind = (bind, port)
        self._tls = tls
        self.hosts: list[str] = []
        self._lock = threading.Lock()
        self._requests = 0
        self._current = 0
        self._peak = 0
        self._bytes_sent = 0
        self.request_starts: list[float] = []
        self.fetch_starts: list[float] = []
        self.paths: list[str] = []
        self._fail_left = 0
        self._fail_status = 500
        self._unhang = threading.Event()
        self._unhang.set()
        self.drip = False
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Upstream:
        self.root.mkdir(parents=True, exist_ok=True)
        server = _Server(self._bind, _Handler)
        server.upstream = self
        server.tls = self._tls
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging handlers are released first so shutdown never waits on them."""
        self._stopping.set()
        self._unhang.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "upstream not started"
        return self._server.server_address[1]

    @property
    def domain(self) -> str:
        return f"{self.host}:{self.port}"

    def url_for(self, name: str) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{name}.git"

    # -- repositories ------------------------------------------------------------------------

    def make_repo(self, name: str, source_workdir: Path | None = None, *, allow_sha1_in_want: bool = True) -> Path:
        """Create (or replace) bare repo `name`, mirroring every ref of `source_workdir` if given.

        `allow_sha1_in_want=False` leaves git's defaults, i.e. a "plain" server that only lets
        clients want advertised tips.
        """
        bare = self.root / f"{name}.git"
        if bare.exists():
            shutil.rmtree(bare)
        if source_workdir is not None:
            git("clone", "-q", "--mirror", str(source_workdir), str(bare))
        else:
            git("init", "-q", "--bare", str(bare))
        self.set_sha1_in_want(name, allow_sha1_in_want)
        return bare

    def set_sha1_in_want(self, name: str, allow: bool) -> None:
        bare = self.root / f"{name}.git"
        for key in ("uploadpack.allowTipSHA1InWant", "uploadpack.allowReachableSHA1InWant"):
            if allow:
                git("config", key, "true", cwd=bare)
            else:
                git("config", "--unset-all", key, cwd=bare, check=False)

    # -- modes -------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` requests with `status` and no body."""
        with self._lock:
            self._fail_left = n
            self._fail_status = status

    @property
    def hang(self) -> bool:
        return not self._unhang.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        """While true, requests are accepted and read but never answered (until unset or stop)."""
        if value:
            self._unhang.clear()
        else:
            self._unhang.set()

    # `drip = True`: upload-pack POSTs are answered with a "NAK" and then an endless trickle of
    # side-band progress lines (refs are still advertised normally), i.e. a server that is alive
    # and talking but never finishes, so a socket idle timeout alone never fires.

    # -- counters ----------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def current(self) -> int:
        with self._lock:
            return self._current

    @property
    def peak(self) -> int:
        with self._lock:
            return self._peak

    @property
    def bytes_sent(self) -> int:
        """Response body bytes git http-backend produced (packs, mostly)."""
        with self._lock:
            return self._bytes_sent

    @property
    def fetches(self) -> int:
        with self._lock:
            return len(self.fetch_starts)

    def max_fetches_in_window(self, window_s: float = 60.0) -> int:
        """Most fetch sessions started within any `window_s` span."""
        with self._lock:
            starts = sorted(self.fetch_starts)
        best = 0
        lo = 0
        for hi, t in enumerate(starts):
            while t - starts[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def reset_counters(self) -> None:
        with self._lock:
            self._requests = 0
            self._peak = self._current
            self._bytes_sent = 0
            self.request_starts.clear()
            self.fetch_starts.clear()
            self.paths.clear()
            self.hosts.clear()

    # -- request handling --------------------------------------------------------------------

    def _handle(self, req: _Handler) -> None:
        now = time.monotonic()
        path = urlsplit(req.path).path
        req._over = False  # type: ignore[attr-defined]  # per request: one handler serves a whole connection
        with self._lock:
            self._requests += 1
            self._current += 1
            self._peak = max(self._peak, self._current)
            self.request_starts.append(now)
            self.paths.append(f"{req.command} {req.path}")
            self.hosts.append(req.headers.get("Host", ""))
            if req.command == "GET" and path.endswith("/info/refs"):
                self.fetch_starts.append(now)
            failing = self._fail_left > 0
            if failing:
                self._fail_left -= 1
            fail_status = self._fail_status
        try:
            if failing:
                self._drain_body(req)
                self._send_empty(req, fail_status)
            elif not self._unhang.is_set():
                self._hang(req)
            elif self.drip and req.command == "POST":
                self._drip(req)
            else:
                self._run_backend(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self._request_over(req)

    def _request_over(self, req: _Handler) -> None:
        """The request no longer counts as in flight. Called just before the last byte of an
        answer goes out (the client may start its next request the moment it has it, while
        this thread still waits for git to exit), and again, harmlessly, when the handler ends."""
        with self._lock:
            if not getattr(req, "_over", False):
                req._over = True  # type: ignore[attr-defined]
                self._current -= 1

    def _hang(self, req: _Handler) -> None:
        # Block without answering; wake up on stop() or when hang is switched off, then drop the
        # connection rather than answer late (the client has long given up or will get an error).
        while not self._stopping.is_set() and not self._unhang.wait(0.05):
            pass
        req.close_connection = True

    def _drip(self, req: _Handler) -> None:
        self._drain_body(req)
        req.send_response(200)
        req.send_header("Content-Type", "application/x-git-upload-pack-result")
        req.send_header("Transfer-Encoding", "chunked")
        req.end_headers()
        _write_chunk(req, _pkt(b"NAK\n"))
        while self.drip and not self._stopping.wait(0.1):
            _write_chunk(req, _pkt(b"\x02Counting objects: still thinking\r"))
        req.close_connection = True

    @staticmethod
    def _drain_body(req: _Handler) -> None:
        left = int(req.headers.get("Content-Length") or 0)
        while left > 0:
            chunk = req.rfile.read(min(left, _CHUNK))
            if not chunk:
                break
            left -= len(chunk)
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            _read_chunked(req, sink=None)

    @staticmethod
    def _send_empty(req: _Handler, status: int) -> None:
        req.send_response(status)
        req.send_header("Content-Length", "0")
        req.end_headers()

    def _cgi_env(self, req: _Handler) -> dict[str, str]:
        parts = urlsplit(req.path)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
            "REQUEST_METHOD": req.command,
            "QUERY_STRING": parts.query,
            "PATH_INFO": parts.path,
            "REMOTE_ADDR": req.client_address[0],
            "CONTENT_TYPE": req.headers.get("Content-Type", ""),
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if req.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = req.headers["Content-Length"]
        if req.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = req.headers["Git-Protocol"]
        if req.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = req.headers["Content-Encoding"]
        return env

    def _run_backend(self, req: _Handler) -> None:
        proc = subprocess.Popen(
            ["git", "http-backend"],
            env=self._cgi_env(req),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=self._feed_body, args=(req, proc.stdin), daemon=True)
        feeder.start()
        try:
            status, headers = _read_cgi_headers(proc.stdout)
            req.send_response(status)
            for key, value in headers:
                req.send_header(key, value)
            # The body length is unknown up front: stream it chunked.
            req.send_header("Transfer-Encoding", "chunked")
            req.end_headers()
            while chunk := proc.stdout.read1(_CHUNK):
                _write_chunk(req, chunk)
                with self._lock:
                    self._bytes_sent += len(chunk)
            self._request_over(req)
            _write_chunk(req, b"")
        finally:
            feeder.join(timeout=5)
            proc.stdout.close()
            if proc.wait(timeout=10) is None:
                proc.kill()

    @staticmethod
    def _feed_body(req: _Handler, stdin: Any) -> None:
        try:
            if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
                _read_chunked(req, sink=stdin)
            else:
                left = int(req.headers.get("Content-Length") or 0)
                while left > 0:
                    chunk = req.rfile.read(min(left, _CHUNK))
                    if not chunk:
                        break
                    stdin.write(chunk)
                    left -= len(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "fetches": len(self.fetch_starts),
                "current": self._current,
                "peak": self._peak,
            }


def _pkt(payload: bytes) -> bytes:
    return b"%04x%s" % (len(payload) + 4, payload)


def _write_chunk(req: _Handler, data: bytes) -> None:
    """One HTTP/1.1 chunk; empty data writes the terminating chunk."""
    req.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    req.wfile.flush()


def _read_chunked(req: _Handler, sink: Any) -> None:
    """Decode a chunked request body (libgit2 sends big upload-pack POSTs chunked)."""
    while True:
        size_line = req.rfile.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while req.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        data = req.rfile.read(size)
        req.rfile.readline()
        if sink is not None:
            sink.write(data)


def _read_cgi_headers(stdout: Any) -> tuple[int, list[tuple[str, str]]]:
    """Parse the CGI header block: `Status:` becomes the HTTP status, the rest pass through."""
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").partition(":")
        key, value = key.strip(), value.strip()
        if key.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((key, value))
    return status, headers


class _RedirectHandler(BaseHTTPRequestHandler):
    server: _RedirectServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.redirector._answer(self)

    def do_POST(self) -> None:
        self.server.redirector._answer(self)


class _RedirectServer(_TlsServer):
    redirector: Redirector


class Redirector:
    """Answer every request with `status` and `Location: <to><the request's path>`: a server
    that tries to bounce a fetch elsewhere (another port of the same host, the intranet)."""

    def __init__(self, to: str, status: int = 302, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 close: bool = False) -> None:
        self.to = to.rstrip("/")
        self.status = status
        self.close = close  # answer with `Connection: close` (else the connection stays open)
        self.host = host
        self._tls = tls
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _RedirectServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        server = _RedirectServer(("127.0.0.1", 0), _RedirectHandler)
        server.redirector = self
        server.tls = self._tls
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "redirector not started"
        return self._server.server_address[1]

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def url_for(self, name: str) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{name}.git"

    def _answer(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._requests += 1
        Upstream._drain_body(req)  # type: ignore[arg-type]
        req.send_response(self.status)
        req.send_header("Location", f"{self.to}{req.path}")
        req.send_header("Content-Length", "0")
        if self.close:
            req.send_header("Connection", "close")
        req.end_headers()


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for `name`, made with the openssl command."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context
