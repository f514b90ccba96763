"""Relay-initiated fetches go only where they were checked: no redirect is followed, and the
connection goes to a checked address, never to whatever the name resolves to later.

Everything runs on real sockets: real `git http-backend` servers (tests/upstream.py), a
redirecting server, and libgit2 itself. Some tests pin down the libgit2 1.9 behaviour the
design in purgatory/fetch/pinning/ rests on, so a libgit2 upgrade that changes it shows up here."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pygit2
import pytest

from purgatory.fetch.objects import fetch_oids
from purgatory.fetch.pinning import Forwarder, Target, client_tls
from tests.daemon import wait_for
from tests.gitutil import make_repo, rev
from tests.upstream import Redirector, Upstream, make_cert, server_tls

TIMEOUT_S = 10.0


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "work", commits=2)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    with Upstream(tmp_path / "served") as up:
        yield up


def _plain_fetch(url: str, dest: Path, oid: str, *, follow_redirects: str | None = None,
                 proxy: str | None = None) -> str:
    """libgit2 on its own (no forwarder): what a fetch would do without pinning."""
    pygit2.settings.server_connect_timeout = 5000
    pygit2.settings.server_timeout = 5000
    repo = pygit2.init_repository(str(dest), bare=True)
    if follow_redirects is not None:
        repo.config["http.followRedirects"] = follow_redirects
    try:
        repo.remotes.create_anonymous(url).fetch([f"+{oid}:refs/q/{oid}"], proxy=proxy)
    except pygit2.GitError as exc:
        return str(exc)
    return "ok"


def _pin_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fetch-pin:")]


async def _no_pin_threads_within(seconds: float) -> None:
    await wait_for(lambda: not _pin_threads(), "no fetch-pin thread left", timeout=seconds)


class _Listener:
    """A bare TCP listener that counts the connections it gets and what they sent first."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.first_bytes: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(1)
                try:
                    self.first_bytes.append(conn.recv(4096))
                except OSError:
                    pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# -- libgit2's own behaviour (why the forwarder exists) ------------------------------------

def test_libgit2_follows_a_same_host_redirect_even_with_follow_redirects_false(
        tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """`http.followRedirects=false` compares host names only: 127.0.0.1:A -> 127.0.0.1:B is
    followed, so the config key alone cannot keep a fetch where it was checked."""
    upstream.make_repo("r", work)
    with Redirector(f"http://127.0.0.1:{upstream.port}") as bounce:
        assert _plain_fetch(bounce.url_for("r"), tmp_path / "q.git", rev(work), follow_redirects="false") == "ok"
        assert upstream.requests >= 2
        upstream.reset_counters()
        elsewhere = Redirector(f"http://localhost:{upstream.port}")
        with elsewhere:
            result = _plain_fetch(elsewhere.url_for("r"), tmp_path / "q2.git", rev(work), follow_redirects="false")
        assert "cannot redirect from '127.0.0.1' to 'localhost'" in result
        assert upstream.requests == 0


def test_libgit2_sends_plain_http_past_its_proxy(tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """With a proxy given, libgit2 1.9 writes an absolute-form request for http URLs but sends
    it straight to the server: the proxy never sees a byte (https does use it, via CONNECT)."""
    upstream.make_repo("r", work)
    with _Listener() as proxy:
        for form in (f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.port}/", f"127.0.0.1:{proxy.port}"):
            upstream.reset_counters()
            assert _plain_fetch(upstream.url_for("r"), tmp_path / f"q{len(form)}.git", rev(work), proxy=form) == "ok"
            assert upstream.paths[0].startswith(f"GET http://127.0.0.1:{upstream.port}/r.git/info/refs")
        assert proxy.accepted == 0
        result = _plain_fetch(f"https://127.0.0.1:{upstream.port}/r.git", tmp_path / "qs.git", rev(work),
                              proxy=f"http://127.0.0.1:{proxy.port}/")
        assert result != "ok"
        assert proxy.accepted == 1 and proxy.first_bytes[0].startswith(f"CONNECT 127.0.0.1:{upstream.port} ".encode())


# -- 2. redirects --------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_redirect_is_never_followed(tmp_path: Path, work: Path, upstream: Upstream, status: int,
                                            host: str) -> None:
    """A server that answers 3xx pointing at a second real git server (same host other port,
    or another name): the fetch fails and the second server sees no request at all."""
    upstream.make_repo("r", work)
    with Redirector(f"http://{host}:{upstream.port}", status) as bounce:
        outcome = await fetch_oids(bounce.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

        assert not outcome.ok and outcome.kind == "http"
        assert f"redirect refused: {status} to http://{host}:{upstream.port}/r.git/info/refs" in outcome.detail
        assert bounce.requests == 1
    assert upstream.requests == 0
    assert pygit2.Repository(str(tmp_path / "q.git")).config["http.followRedirects"] == "false"  # libgit2's own guard


async def test_an_https_redirect_to_another_port_of_the_same_host_is_refused(
        tmp_path: Path, work: Path, tls_name: str, tls_context: object) -> None:
    """Over https too: the forwarder speaks TLS to the server, so it reads the 302 itself."""
    with Upstream(tmp_path / "served", host=tls_name, tls=tls_context) as target:  # type: ignore[arg-type]
        target.make_repo("r", work)
        with Redirector(f"https://{tls_name}:{target.port}", host=tls_name, tls=tls_context) as bounce:  # type: ignore[arg-type]
            outcome = await fetch_oids(bounce.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

            assert not outcome.ok and outcome.kind == "http"
            assert f"redirect refused: 302 to https://{tls_name}:{target.port}/r.git/info/refs" in outcome.detail
            assert bounce.requests == 1
        assert target.requests == 0


# -- 3. pinning ----------------------------------------------------------------------------

def _same_port_on_two_loopback_addresses(tmp_path: Path) -> tuple[Upstream, Upstream]:
    """`elsewhere` on 127.0.0.1:P (what "localhost" resolves to now) and `checked` on
    127.0.0.2:P (what the check saw): one name, one port, two servers."""
    for _ in range(20):  # bounded: the port may be taken on 127.0.0.2
        elsewhere = Upstream(tmp_path / "elsewhere", host="localhost").start()
        try:
            checked = Upstream(tmp_path / "checked", host="localhost", bind="127.0.0.2", port=elsewhere.port).start()
        except OSError:
            elsewhere.stop()
            continue
        return elsewhere, checked
    pytest.skip("cannot bind 127.0.0.2 on the same port as 127.0.0.1")


async def test_the_fetch_goes_to_the_checked_address_not_where_the_name_points_now(tmp_path: Path, work: Path) -> None:
    """DNS rebinding, played on loopback: the check saw 127.0.0.2, the name now gives
    127.0.0.1. libgit2 alone goes to 127.0.0.1; the pinned fetch reaches 127.0.0.2 only,
    asking for the URL's host."""
    elsewhere, checked = _same_port_on_two_loopback_addresses(tmp_path)
    try:
        for up in (elsewhere, checked):
            up.make_repo("r", work)
        url = f"http://localhost:{checked.port}/r.git"

        assert _plain_fetch(url, tmp_path / "plain.git", rev(work)) == "ok"
        assert elsewhere.fetches == 1 and checked.requests == 0  # where an unpinned fetch goes
        elsewhere.reset_counters()

        outcome = await fetch_oids(url, tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("127.0.0.2",))

        assert outcome.ok, outcome
        assert checked.fetches == 1 and elsewhere.requests == 0
        assert set(checked.hosts) == {f"localhost:{checked.port}"}
    finally:
        elsewhere.stop()
        checked.stop()


async def test_a_name_that_does_not_resolve_is_reached_through_its_pinned_address(
        tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """The forwarder dials the checked address, never the name: `pinned.invalid` cannot resolve."""
    upstream.make_repo("r", work)
    url = f"http://pinned.invalid:{upstream.port}/r.git"

    outcome = await fetch_oids(url, tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

    assert outcome.ok, outcome
    assert upstream.fetches == 1 and set(upstream.hosts) == {f"pinned.invalid:{upstream.port}"}
    assert upstream.paths[0] == "GET /r.git/info/refs?service=git-upload-pack"  # origin-form upstream


@pytest.fixture(scope="module")
def tls_name() -> str:
    return "pinned.invalid"


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory, tls_name: str) -> object:
    """A server certificate for `pinned.invalid`, trusted by the forwarder from now on in this
    process (its TLS context is process-wide and only grows; the name cannot resolve)."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    cert, key = make_cert(tmp_path_factory.mktemp("tls"), tls_name)
    client_tls().load_verify_locations(cafile=str(cert))
    return server_tls(cert, key)


async def test_https_reaches_the_pinned_address_with_tls_checked_against_the_name(
        tmp_path: Path, work: Path, tls_name: str, tls_context: object) -> None:
    """The forwarder does TLS to the checked address, the certificate checked against the
    URL's name (which does not resolve at all)."""
    with Upstream(tmp_path / "served", host=tls_name, tls=tls_context) as up:  # type: ignore[arg-type]
        up.make_repo("r", work)
        dest = tmp_path / "q.git"

        outcome = await fetch_oids(up.url_for("r"), dest, {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

        assert outcome.ok, outcome
        assert rev(work) in pygit2.Repository(str(dest))
        assert up.fetches == 1 and set(up.hosts) == {f"{tls_name}:{up.port}"}


async def test_an_https_upstream_with_a_certificate_for_another_name_fails_as_tls_at_once(
        tmp_path: Path, work: Path, tls_context: object) -> None:
    """The case that hangs libgit2's own https-through-a-proxy code (see purgatory/fetch/pinning/):
    here it is a prompt, classified failure, and the server never gets a request."""
    with Upstream(tmp_path / "served", host="other.invalid", tls=tls_context) as up:  # type: ignore[arg-type]
        up.make_repo("r", work)
        started = time.monotonic()

        outcome = await fetch_oids(up.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

        assert not outcome.ok and outcome.kind == "tls", outcome
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
        assert time.monotonic() - started < 5 and up.requests == 0


async def test_proxy_variables_and_git_config_do_not_divert_a_fetch(
        tmp_path: Path, work: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """libgit2 is given no proxy (GIT_PROXY_NONE), so neither the environment nor the
    quarantine's config can send the bytes anywhere but the forwarder."""
    upstream.make_repo("r", work)
    dest = tmp_path / "q.git"
    with _Listener() as proxy:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        pygit2.init_repository(str(dest), bare=True).config["http.proxy"] = f"http://127.0.0.1:{proxy.port}"

        outcome = await fetch_oids(upstream.url_for("r"), dest, {rev(work)}, TIMEOUT_S, ("127.0.0.1",))

        assert outcome.ok, outcome
        assert proxy.accepted == 0 and upstream.fetches == 1


async def test_no_checked_address_fails_cleanly_without_a_connection(tmp_path: Path, work: Path,
                                                                      upstream: Upstream) -> None:
    """allow_private with a name that did not resolve: nothing to pin to, so no fetch."""
    upstream.make_repo("r", work)

    outcome = await fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ())

    assert not outcome.ok and outcome.kind == "dns" and outcome.network_failure
    assert upstream.requests == 0


async def test_checked_addresses_are_tried_in_turn_ipv4_first(tmp_path: Path, work: Path, upstream: Upstream) -> None:
    upstream.make_repo("r", work)
    url = f"http://pinned.invalid:{upstream.port}/r.git"

    outcome = await fetch_oids(url, tmp_path / "q.git", {rev(work)}, TIMEOUT_S, ("::1", "127.0.0.2", "127.0.0.1"))

    assert outcome.ok, outcome  # ::1 and 127.0.0.2 have no server on that port
    assert Target.from_url(url, ("::1", "127.0.0.2")).addresses == ("127.0.0.2", "::1")


async def test_a_scheme_other_than_http_is_refused_by_the_fetch_itself(tmp_path: Path, work: Path) -> None:
    """Even a caller that skipped the outbound check cannot hand libgit2 a local path."""
    source = make_repo(tmp_path / "local", commits=1)
    for url in (f"file://{source}", str(source), f"ssh://127.0.0.1:{1}/x.git"):
        outcome = await fetch_oids(url, tmp_path / "q.git", {rev(source)}, TIMEOUT_S, ("127.0.0.1",))
        assert not outcome.ok and outcome.detail.startswith("blocked:"), (url, outcome)
    assert not (tmp_path / "q.git").exists()


# -- the forwarder on its own ----------------------------------------------------------------

def _exchange(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send `data` to the forwarder and read until it closes (bounded by `timeout_s`)."""
    end = time.monotonic() + timeout_s
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        while time.monotonic() < end:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _forwarder(url: str, addresses: tuple[str, ...], **kw: float) -> Forwarder:
    return Forwarder(Target.from_url(url, addresses), deadline=time.monotonic() + 30, idle_timeout_s=5, **kw).start()


def test_the_forwarder_refuses_targets_that_were_not_checked() -> None:
    with _Listener() as other, _Listener() as checked:
        fwd = _forwarder(f"http://pinned.invalid:{checked.port}/r.git", ("127.0.0.1",))
        try:
            for request in (
                f"GET http://127.0.0.1:{other.port}/x HTTP/1.1\r\n\r\n",
                f"GET http://pinned.invalid:{other.port}/x HTTP/1.1\r\n\r\n",
                f"GET http://other.invalid:{checked.port}/x HTTP/1.1\r\n\r\n",
                f"GET https://pinned.invalid:{checked.port}/x HTTP/1.1\r\n\r\n",  # another scheme
                f"CONNECT pinned.invalid:{checked.port} HTTP/1.1\r\n\r\n",  # no tunnels, even to the target
                f"CONNECT 127.0.0.1:{other.port} HTTP/1.1\r\n\r\n",
                "GET * HTTP/1.1\r\n\r\n",
            ):
                answer = _exchange(fwd.port, request.encode())
                assert answer.startswith(b"HTTP/1.1 403 "), (request, answer)
            assert other.accepted == 0 and checked.accepted == 0
            assert len(fwd.notes) == 7 and all(n.startswith("refused ") for n in fwd.notes)
        finally:
            fwd.close()
        assert fwd.join(5)


def _read_response(sock: socket.socket) -> bytes:
    """One chunked response from the test upstream, read to its last chunk (bounded)."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n") and len(data) < 1_000_000:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_every_request_on_a_kept_alive_connection_is_checked(upstream: Upstream, work: Path) -> None:
    """The first request is passed on (Host rewritten, origin-form); the connection stays open;
    a second for the checked target is passed on too, a third naming another port is refused
    and never reaches it."""
    upstream.make_repo("r", work)
    with _Listener() as other:
        fwd = _forwarder(f"http://pinned.invalid:{upstream.port}/r.git", ("127.0.0.1",))
        try:
            with socket.create_connection(("127.0.0.1", fwd.port), timeout=5) as sock:
                sock.sendall(b"GET /r.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                first = _read_response(sock)
                sock.sendall(f"GET http://pinned.invalid:{upstream.port}/r.git/info/refs?service=git-upload-pack "
                             f"HTTP/1.1\r\n\r\n".encode())
                second = _read_response(sock)
                sock.sendall(f"GET http://127.0.0.1:{other.port}/ HTTP/1.1\r\n\r\n".encode())
                third = _read_response(sock)
        finally:
            fwd.close()
        assert first.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in first.split(b"\r\n\r\n")[0]
        assert second.startswith(b"HTTP/1.1 200 ")
        assert third.startswith(b"HTTP/1.1 403 ")
        assert other.accepted == 0
        assert upstream.paths == ["GET /r.git/info/refs?service=git-upload-pack"] * 2
        assert upstream.hosts == [f"pinned.invalid:{upstream.port}"] * 2
        assert fwd.join(5)


def test_request_heads_are_bounded_in_size_and_time() -> None:
    with _Listener() as checked:
        fwd = _forwarder(f"http://pinned.invalid:{checked.port}/", ("127.0.0.1",), head_timeout_s=0.3)
        try:
            huge = b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 20000 + b"\r\n\r\n"
            assert _exchange(fwd.port, huge).startswith(b"HTTP/1.1 400 ")
            started = time.monotonic()
            assert _exchange(fwd.port, b"GET / HTTP/1.1\r\n").startswith(b"HTTP/1.1 400 ")  # never finished
            assert time.monotonic() - started < 3
            assert _exchange(fwd.port, b"\x16\x03\x01 not http\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        finally:
            fwd.close()
        assert checked.accepted == 0
        assert fwd.join(5)


def test_connections_at_once_are_bounded() -> None:
    from purgatory.fetch.pinning import MAX_CONCURRENT

    with _Listener() as checked:
        fwd = _forwarder(f"http://pinned.invalid:{checked.port}/", ("127.0.0.1",))
        idle = [socket.create_connection(("127.0.0.1", fwd.port), timeout=5) for _ in range(MAX_CONCURRENT)]
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(_pin_threads()) < MAX_CONCURRENT + 1:
                time.sleep(0.02)  # every idle connection has its handler
            assert _exchange(fwd.port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in idle:
                sock.close()
            fwd.close()
        assert fwd.join(5)


def test_a_dial_failure_is_answered_and_remembered() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        fwd = _forwarder(f"http://pinned.invalid:{port}/", ("127.0.0.1", "not-an-address"))
        try:
            answer = _exchange(fwd.port, b"GET /x HTTP/1.1\r\n\r\n")
        finally:
            fwd.close()
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert fwd.dial_error is not None and "Connection refused" in fwd.dial_error
    assert "not-an-address" in fwd.dial_error  # a name is never resolved, it just fails
    assert fwd.join(5)


# -- lifetimes: nothing outlives its fetch --------------------------------------------------

async def test_a_timed_out_fetch_leaves_no_forwarder_behind(tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """A server that keeps dripping progress: the fetch gives up at its deadline, the forwarder
    is cut, the server sees the connection go, and no forwarder thread is left."""
    upstream.make_repo("r", work)
    upstream.drip = True

    outcome = await asyncio.wait_for(
        fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, 1.0, ("127.0.0.1",)), 20)

    assert not outcome.ok and outcome.kind == "timeout"
    await _no_pin_threads_within(5)
    # the server notices on its next write (every 0.1 s)
    await wait_for(lambda: upstream.current == 0, "the upstream's request over", timeout=5)


async def test_an_abandoned_fetch_is_cut_at_once(tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """The caller stops waiting (cancellation): the forwarder still closes everything."""
    upstream.make_repo("r", work)
    before = _sockets()
    upstream.hang = True
    task = asyncio.create_task(fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, 30.0, ("127.0.0.1",)))
    await wait_for(lambda: upstream.current, "the fetch at the upstream", timeout=4, every=0.02)
    assert upstream.current == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _no_pin_threads_within(5)
    upstream.hang = False  # the hanging handler lets its connection go
    # the worker thread and the server notice the cut shortly
    await wait_for(lambda: before is None or (_sockets() or 0) <= before, "no socket left open", timeout=5)


def _sockets() -> int | None:
    """Open sockets of this process (None where /proc is not there to tell)."""
    import os

    if not os.path.isdir("/proc/self/fd"):
        return None
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


async def test_fetches_leave_no_threads_or_sockets(tmp_path: Path, work: Path, upstream: Upstream) -> None:
    """Pack files stay open until pygit2's objects are collected; sockets must not."""
    upstream.make_repo("r", work)
    assert (await fetch_oids(upstream.url_for("r"), tmp_path / "warm.git", {rev(work)}, TIMEOUT_S)).ok
    await _no_pin_threads_within(5)
    before = _sockets()
    for i in range(5):
        assert (await fetch_oids(upstream.url_for("r"), tmp_path / f"q{i}.git", {rev(work)}, TIMEOUT_S)).ok

    await _no_pin_threads_within(5)
    if before is not None:
        # the upstream's handlers close theirs shortly
        await wait_for(lambda: (_sockets() or 0) <= before, "no socket left open", timeout=5)


# -- the real SyncContext ----------------------------------------------------------------------

class _Metrics:
    def __init__(self) -> None:
        self.fetches: list[tuple[str, str]] = []

    def sync_fetch(self, domain: str, outcome: str, seconds: float) -> None:
        self.fetches.append((domain, outcome))


def _store_context(tmp_path: Path, allow_private: bool) -> tuple[object, _Metrics]:
    """StoreSyncContext over stand-ins for the store, locator and quarantines: only what
    `fetch` touches."""
    from types import SimpleNamespace

    from config.settings import Settings
    from purgatory.sync.store_context import StoreSyncContext

    async def ensure_quarantine(identifier: str, served: list[Path]) -> Path:
        return tmp_path / "quarantine" / f"{identifier}.git"

    async def held(identifier: str) -> list[object]:
        return []

    async def drop_quarantine(identifier: str) -> None:
        return None

    async def on_git_data(identifier: str) -> None:
        return None

    store = SimpleNamespace(held=held)
    locator = SimpleNamespace(served_paths=lambda identifier: [])
    quarantines = SimpleNamespace(ensure=ensure_quarantine, drop=drop_quarantine)
    metrics = _Metrics()
    settings = Settings(outbound_allow_private=allow_private, fetch_timeout_s=TIMEOUT_S)
    ctx = StoreSyncContext(settings, store, locator, quarantines, on_git_data, metrics)  # type: ignore[arg-type]
    return ctx, metrics


async def test_the_sync_context_fetches_from_the_address_its_check_approved(
        tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check (here answering as a rebinding name would: 127.0.0.2) and the fetch share the
    addresses: the fetch goes to 127.0.0.2, not to where "localhost" points when libgit2 asks."""
    from purgatory.fetch.outbound import OutboundCheck
    from purgatory.sync import store_context

    elsewhere, checked = _same_port_on_two_loopback_addresses(tmp_path)
    try:
        for up in (elsewhere, checked):
            up.make_repo("r", work)
        seen: list[str] = []

        async def check(url: str, allow_private: bool) -> OutboundCheck:
            seen.append(url)
            return OutboundCheck(None, ("127.0.0.2",))

        monkeypatch.setattr(store_context, "check_clone_url", check)
        ctx, metrics = _store_context(tmp_path, allow_private=True)
        url = f"http://localhost:{checked.port}/r.git"

        outcome = await ctx.fetch("r", url, frozenset({rev(work)}))  # type: ignore[attr-defined]

        assert outcome.ok, outcome
        assert seen == [url] and metrics.fetches == [(f"localhost:{checked.port}", "ok")]
        assert checked.fetches == 1 and elsewhere.requests == 0
    finally:
        elsewhere.stop()
        checked.stop()


@pytest.mark.parametrize("url", ["file:///etc", "ssh://127.0.0.1/x.git", "git@127.0.0.1:x.git", "git://127.0.0.1/x"])
async def test_the_sync_context_counts_a_refused_scheme_as_blocked(tmp_path: Path, url: str) -> None:
    ctx, metrics = _store_context(tmp_path, allow_private=True)

    outcome = await ctx.fetch("r", url, frozenset({"a" * 40}))  # type: ignore[attr-defined]

    assert not outcome.ok and outcome.detail.startswith("blocked: ")
    assert [kind for _, kind in metrics.fetches] == ["blocked"]
    assert not (tmp_path / "quarantine").exists()
