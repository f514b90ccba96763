"""Git smart HTTP end to end: the real git CLI against GitHttp served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from nostr_sdk import Keys

from config.settings import Settings
from relay.git import push_auth
from relay.git.pktline import FLUSH, RefUpdate, encode
from relay.git.smart_http import GitHttp, RepoRef, parse_git_path, respond_text
from storage.repos import RepoStore

MAX_PUSH = 256 * 1024
MAX_GZIP = 256 * 1024


@dataclass
class Policy:
    """What the test server's authorize callback answers; tests set it per case."""

    candidates: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    allow_all: bool = True
    pushed: list[tuple[RepoRef, list[RefUpdate]]] = field(default_factory=list)


@dataclass
class Server:
    url: str
    host: str
    port: int
    store: RepoStore
    policy: Policy
    npub: str


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("githttp")
    settings = Settings(data_dir=root, max_push_bytes=MAX_PUSH, max_gzip_bytes=MAX_GZIP,
                        git_body_idle_timeout_s=1.0)
    store = RepoStore(settings.repos_dir, settings.git_binary)
    policy = Policy()

    async def plan(repo: RepoRef, updates: list[RefUpdate]) -> push_auth.PushPlan:
        if policy.allow_all:
            return await unchecked(repo, updates)
        pending = store.pending_refs(repo.pubkey, repo.identifier)
        return push_auth.decide(store.all_refs(repo.path), updates, policy.candidates, {}, pending)

    async def on_pushed(repo: RepoRef, plan: push_auth.PushPlan) -> None:
        policy.pushed.append((repo, list(plan.commands)))

    git = GitHttp(store, settings, plan=plan, on_pushed=on_pushed)
    unchecked = GitHttp(store, settings).plan

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        parsed = parse_git_path(scope["raw_path"].decode("latin-1"))
        if parsed is None or not parsed[2]:
            await respond_text(send, 404, "not here\n")
            return
        await git.handle(scope, receive, send, *parsed)

    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", http="httptools")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started, "uvicorn did not start"
    npub = Keys.generate().public_key().to_bech32()
    try:
        yield Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, store, policy, npub)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t", "LC_ALL": "C"}


def git(env: dict[str, str], *args: str, cwd: Path | None = None, check: bool = True,
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc


def make_work(env: dict[str, str], path: Path, commits: int = 3, blob: bytes = b"") -> list[str]:
    """A working repo on branch main; returns commit ids oldest first."""
    git(env, "init", "-q", "-b", "main", str(path))
    ids = []
    for i in range(commits):
        (path / f"f{i}.txt").write_bytes(f"file {i}\n".encode() * 50 + (blob if i == 0 else b""))
        git(env, "add", ".", cwd=path)
        git(env, "commit", "-q", "-m", f"c{i}", cwd=path)
        ids.append(git(env, "rev-parse", "HEAD", cwd=path).stdout.strip())
    return ids


def new_repo(server: Server, name: str) -> tuple[str, Path]:
    path = server.store.ensure(server.npub, name)
    return f"{server.url}/{server.npub}/{name}.git", path


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def assert_cors(headers: dict[str, str]) -> None:
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "Git-Protocol" in headers["access-control-allow-headers"]


# --- pushes --------------------------------------------------------------------------
def test_authorised_push_lands_and_clones_back(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    url, path = new_repo(server, "alpha")
    ids = make_work(env, tmp_path / "w")
    server.policy.allow_all = False
    server.policy.candidates = [("e" * 64, {"refs/heads/main": ids[-1]})]
    server.policy.pushed.clear()
    git(env, "push", "-q", url, "main", cwd=tmp_path / "w")
    assert server.store.refs(path) == {"refs/heads/main": ids[-1]}
    repo, updates = server.policy.pushed[-1]
    assert repo.identifier == "alpha" and [u.ref for u in updates] == ["refs/heads/main"]
    git(env, "clone", "-q", url, str(tmp_path / "c"))
    assert git(env, "rev-parse", "HEAD", cwd=tmp_path / "c").stdout.strip() == ids[-1]


def test_refused_push_shows_reason_and_changes_nothing(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    url, path = new_repo(server, "beta")
    ids = make_work(env, tmp_path / "w")
    server.policy.allow_all = False
    server.policy.candidates = [("abcdef12" + "0" * 56, {"refs/heads/main": ids[0]})]
    proc = git(env, "push", url, "main", "main:refs/heads/side", cwd=tmp_path / "w", check=False)
    assert proc.returncode != 0
    assert "[remote rejected] main -> main" in proc.stderr
    assert f"state event abcdef12 lists refs/heads/main at {ids[0]}, push has {ids[-1]}" in proc.stderr
    assert "state event abcdef12 does not list refs/heads/side" in proc.stderr
    assert server.store.refs(path) == {}
    assert server.store.missing(path, [ids[-1]]) == {ids[-1]}  # receive-pack never ran


def test_refused_without_any_state(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    url, _ = new_repo(server, "gamma")
    make_work(env, tmp_path / "w", commits=1)
    server.policy.allow_all = False
    server.policy.candidates = []
    proc = git(env, "push", url, "main", cwd=tmp_path / "w", check=False)
    assert proc.returncode != 0
    assert push_auth.NO_STATE in proc.stderr


def test_nostr_ref_push_and_other_namespace(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    url, path = new_repo(server, "delta")
    ids = make_work(env, tmp_path / "w", commits=2)
    server.policy.allow_all = False
    server.policy.candidates = []
    pr = "1" * 64
    git(env, "push", "-q", url, f"main:refs/nostr/{pr}", cwd=tmp_path / "w")
    # anyone may push a PR ref: it waits in the pending area, not in the served repo
    assert server.store.get_ref(path, f"refs/nostr/{pr}") is None
    pending = server.store.pending_path(server.npub, "delta")
    assert server.store.get_ref(pending, f"refs/nostr/{pr}") == ids[-1]
    assert server.store.missing(path, [ids[-1]]) == {ids[-1]}
    proc = git(env, "push", url, "main:refs/other/x", cwd=tmp_path / "w", check=False)
    assert proc.returncode != 0 and push_auth.OTHER_NAMESPACE in proc.stderr


def test_oversized_push_is_cut_and_server_keeps_serving(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    url, path = new_repo(server, "big")
    make_work(env, tmp_path / "w", commits=1, blob=os.urandom(2 * 1024 * 1024))
    server.policy.allow_all = True
    proc = git(env, "push", url, "main", cwd=tmp_path / "w", check=False)
    assert proc.returncode != 0
    assert "413" in proc.stderr
    assert server.store.refs(path) == {}
    assert not list((path / "objects" / "pack").glob("tmp_*"))
    # declared too large up front
    status, headers, body = request(server, "POST", f"/{server.npub}/big.git/git-receive-pack",
                                    body=b"0" * (MAX_PUSH + 10),
                                    headers={"Content-Type": "application/x-git-receive-pack-request"})
    assert status == 413 and b"limit" in body
    assert_cors(headers)
    # still serving
    small_url, _ = new_repo(server, "small")
    make_work(env, tmp_path / "w2", commits=1)
    git(env, "push", "-q", small_url, "main", cwd=tmp_path / "w2")


# --- fetches -------------------------------------------------------------------------
@pytest.fixture()
def served(server: Server, env: dict[str, str], tmp_path: Path) -> tuple[str, list[str]]:
    name = f"served{time.monotonic_ns()}"
    url, _ = new_repo(server, name)
    ids = make_work(env, tmp_path / "src", commits=4)
    server.policy.allow_all = True
    git(env, "push", "-q", url, "main", cwd=tmp_path / "src")
    return url, ids


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_and_fetch_non_tip_by_id(served: tuple[str, list[str]], env: dict[str, str],
                                       tmp_path: Path, version: str) -> None:
    url, ids = served
    git(env, "-c", f"protocol.version={version}", "clone", "-q", url, str(tmp_path / "c"))
    assert git(env, "rev-parse", "HEAD", cwd=tmp_path / "c").stdout.strip() == ids[-1]
    git(env, "init", "-q", "--bare", str(tmp_path / "f"))
    git(env, "-c", f"protocol.version={version}", "fetch", "-q", url, ids[1], cwd=tmp_path / "f")
    assert git(env, "cat-file", "-t", ids[1], cwd=tmp_path / "f").stdout.strip() == "commit"
    assert git(env, "cat-file", "-t", ids[2], cwd=tmp_path / "f", check=False).returncode != 0


def test_partial_clone_leaves_blobs_out(served: tuple[str, list[str]], env: dict[str, str], tmp_path: Path) -> None:
    url, _ = served
    git(env, "clone", "-q", "--no-checkout", "--filter=blob:none", url, str(tmp_path / "p"))
    missing = git(env, "rev-list", "--objects", "--all", "--missing=print", cwd=tmp_path / "p").stdout
    assert any(line.startswith("?") for line in missing.splitlines())


def test_gzip_request_body_and_gzip_cap(served: tuple[str, list[str]], server: Server) -> None:
    url, ids = served
    path = url[len(server.url):] + "/git-upload-pack"
    req = encode(f"want {ids[-1]} ofs-delta\n") + FLUSH + encode("done\n")
    hdr = {"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"}
    status, headers, body = request(server, "POST", path, gzip.compress(req), hdr)
    assert status == 200 and b"PACK" in body
    assert headers["content-type"] == "application/x-git-upload-pack-result"
    bomb = gzip.compress(req + b"\0" * (MAX_GZIP * 4))
    status, headers, body = request(server, "POST", path, bomb, hdr)
    assert status == 413 and b"gzip" in body
    assert_cors(headers)
    status, _, body = request(server, "POST", path, b"not gzip at all", hdr)
    assert status == 400


def test_info_refs_get_and_head(served: tuple[str, list[str]], server: Server) -> None:
    url, ids = served
    path = url[len(server.url):] + "/info/refs?service=git-upload-pack"
    status, headers, body = request(server, "GET", path)
    assert status == 200 and body.startswith(b"001e# service=git-upload-pack\n0000")
    assert ids[-1].encode() in body
    assert headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert "no-cache" in headers["cache-control"]
    status, headers, body = request(server, "HEAD", path)
    assert status == 200 and body == b""
    assert headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert_cors(headers)
    status, _, body = request(server, "GET", path, headers={"Git-Protocol": "version=2"})
    assert status == 200 and body.startswith(b"000eversion 2\n")


# --- errors --------------------------------------------------------------------------
def test_unknown_repo_is_404(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    status, headers, body = request(server, "GET", f"/{server.npub}/nope.git/info/refs?service=git-upload-pack")
    assert status == 404 and b"not found" in body
    assert_cors(headers)
    proc = git(env, "clone", f"{server.url}/{server.npub}/nope.git", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr


@pytest.mark.parametrize("ident", ["%2e%2e", "%2e", "a%2fb", "a%00b", "a%5cb", "%ff"])
def test_bad_identifiers_are_400(server: Server, ident: str) -> None:
    status, headers, body = request(server, "GET", f"/{server.npub}/{ident}.git/info/refs?service=git-upload-pack")
    assert status == 400, body
    assert b"bad repository path" in body
    assert_cors(headers)


def test_bad_npub_is_400_and_options_204(server: Server) -> None:
    status, headers, _ = request(server, "GET", "/npub1notreally/x.git/info/refs?service=git-upload-pack")
    assert status == 400
    assert_cors(headers)
    status, headers, _ = request(server, "OPTIONS", f"/{server.npub}/x.git/info/refs")
    assert status == 204
    assert_cors(headers)


def test_dumb_http_and_wrong_method(served: tuple[str, list[str]], server: Server) -> None:
    url, _ = served
    base = url[len(server.url):]
    assert request(server, "GET", base + "/info/refs")[0] == 403
    assert request(server, "GET", base + "/HEAD")[0] == 404
    status, headers, _ = request(server, "GET", base + "/git-upload-pack")
    assert status == 405 and headers["allow"] == "POST"


def test_stalled_push_body_is_abandoned(server: Server) -> None:
    _, path = new_repo(server, "stall")
    head = (f"POST /{server.npub}/stall.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 5000\r\n\r\n")
    with socket.create_connection((server.host, server.port), timeout=15) as sock:
        sock.sendall(head.encode() + encode(f"{'0' * 40} {'a' * 40} refs/heads/main\0report-status\n"))
        answer = b""
        while b"stalled" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"stalled" in answer
    assert server.store.refs(path) == {}
