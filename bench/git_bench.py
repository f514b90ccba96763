"""Git smart HTTP benchmark: GitHttp (uvicorn + httptools + uvloop) against plain
`git http-backend` behind a minimal asyncio CGI server, same machine, same run.

Workloads: a repo with a ~50 MB pack of random (incompressible) blobs, and a repo with
5,000 small commits. For each: push into an empty repo, then clone (bare). Prints seconds per
server (median of --reps runs) and the ratio GitHttp / http-backend (< 1 means we are faster).

Then the big repo is published to the real daemon and cloned --clones (4) times in parallel
while a websocket client measures REQ round-trips on the same port.

    /work/venv/bin/python bench/git_bench.py [--reps 3] [--mb 50] [--commits 5000] [--clones 4]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
import uvicorn
from nostr_sdk import Keys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import Settings  # noqa: E402
from relay.git.smart_http import GitHttp, parse_git_path, respond_text  # noqa: E402
from storage.repos import RepoStore  # noqa: E402

GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}


def run(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> None:
    subprocess.run(args, cwd=cwd, env=GIT_ENV, input=stdin, check=True, capture_output=True)


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# --- workloads -----------------------------------------------------------------------
def make_big(path: Path, megabytes: int) -> None:
    """One commit holding `megabytes` 1 MiB files of random bytes: the pack cannot shrink."""
    run("git", "init", "-q", "-b", "main", str(path))
    for i in range(megabytes):
        (path / f"blob{i:03}.bin").write_bytes(os.urandom(1024 * 1024))
    run("git", "add", ".", cwd=path)
    run("git", "commit", "-q", "-m", "random blobs", cwd=path)


def make_many(path: Path, commits: int) -> None:
    """`commits` commits each changing one small file, written by git fast-import (fast)."""
    run("git", "init", "-q", "-b", "main", str(path))
    stream = bytearray()
    for i in range(commits):
        content = f"line {i}\n".encode() * 20
        msg = f"commit {i}\n".encode()
        stream += b"commit refs/heads/main\n"
        stream += b"committer b <b@b> %d +0000\n" % (1700000000 + i)
        stream += b"data %d\n%s" % (len(msg), msg)
        stream += b"M 100644 inline file%d.txt\ndata %d\n%s\n" % (i % 50, len(content), content)
    run("git", "fast-import", "--quiet", cwd=path, stdin=bytes(stream))
    run("git", "checkout", "-q", "main", cwd=path)


# --- server 1: GitHttp under uvicorn -------------------------------------------------
class GitHttpServer:
    def __init__(self, root: Path) -> None:
        settings = Settings(data_dir=root, max_push_bytes=8 * 1024**3)
        self.store = RepoStore(settings.repos_dir, settings.git_binary)
        git = GitHttp(self.store, settings)

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] != "http":
                return
            parsed = parse_git_path(scope["raw_path"].decode("latin-1"))
            if parsed is None or not parsed[2]:
                await respond_text(send, 404, "not here\n")
                return
            await git.handle(scope, receive, send, *parsed)

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", http="httptools",
                                loop="uvloop", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.npub = Keys.generate().public_key().to_bech32()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()

    def new_repo(self, name: str) -> str:
        self.store.ensure(self.npub, name)
        return f"http://127.0.0.1:{self.port}/{self.npub}/{name}.git"


# --- server 2: git http-backend behind a tiny asyncio CGI server ----------------------
class CgiServer:
    """Just enough HTTP/1.1 + CGI/1.1 for git: one request per connection, chunked request
    bodies de-chunked into the CGI's stdin, the CGI's output streamed back as it comes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = RepoStore(root, "git")
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.npub = Keys.generate().public_key().to_bech32()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, sock=self.sock, limit=1 << 20))
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=20)

    def new_repo(self, name: str) -> str:
        path = self.store.ensure(self.npub, name)
        run("git", "-C", str(path), "config", "http.receivepack", "true")
        return f"http://127.0.0.1:{self.port}/{self.npub}/{name}.git"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._request(reader, writer)
        finally:
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        path, _, query = target.partition("?")
        env = {**GIT_ENV, "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": headers.get("content-type", ""), "REMOTE_ADDR": "127.0.0.1",
               "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1"}
        for name in ("content-encoding", "git-protocol"):
            if name in headers:
                env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
        if "content-length" in headers:
            env["CONTENT_LENGTH"] = headers["content-length"]
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        assert proc.stdin and proc.stdout
        feeder = asyncio.create_task(self._feed(reader, headers, proc.stdin))
        status = "200 OK"
        out = []
        for line in await _cgi_headers(proc.stdout):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                out.append(f"{name}: {value.strip()}\r\n")
        writer.write(f"HTTP/1.1 {status}\r\n{''.join(out)}Connection: close\r\n\r\n".encode("latin-1"))
        while chunk := await proc.stdout.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        await feeder
        await proc.wait()

    @staticmethod
    async def _feed(reader: asyncio.StreamReader, headers: dict[str, str],
                    stdin: asyncio.StreamWriter) -> None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                stdin.write(await reader.readexactly(size))
                await stdin.drain()
                await reader.readexactly(2)
        else:
            left = int(headers.get("content-length", "0"))
            while left > 0:
                chunk = await reader.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
                stdin.write(chunk)
                await stdin.drain()
        stdin.close()


async def _cgi_headers(stdout: asyncio.StreamReader) -> list[str]:
    lines = []
    while True:
        line = (await stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            return lines
        lines.append(line)


# --- measuring -----------------------------------------------------------------------
def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_workload(label: str, work: Path, servers: dict[str, object], reps: int,
                   scratch: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for op in ("push", "clone"):
        times: dict[str, list[float]] = {name: [] for name in servers}
        for rep in range(reps):
            for name, server in servers.items():  # alternate servers to share any drift
                repo_name = f"{label}-{rep}"
                if op == "push":
                    url = server.new_repo(repo_name)  # type: ignore[attr-defined]
                    times[name].append(timed(lambda: run("git", "push", "-q", url, "main", cwd=work)))
                else:
                    url = f"http://127.0.0.1:{server.port}/{server.npub}/{repo_name}.git"  # type: ignore[attr-defined]
                    dest = scratch / f"{name}-{label}-{rep}"
                    times[name].append(timed(lambda: run("git", "clone", "-q", "--bare", url, str(dest))))
                    shutil.rmtree(dest)
        ours, theirs = statistics.median(times["githttp"]), statistics.median(times["http-backend"])
        rows.append((label, op, ours, theirs))
    return rows


def push_rate(servers: dict[str, object], root: Path, pushers: int, per_pusher: int) -> dict[str, float]:
    """Pushes per second with `pushers` clients pushing a one-commit repo into fresh repos
    at once, each `per_pusher` times: what the server costs per push (two HTTP requests, two
    git processes), not the pack."""
    small = root / "work-small"
    if not small.exists():
        run("git", "init", "-q", "-b", "main", str(small))
        (small / "a.txt").write_text("a\n")
        run("git", "add", ".", cwd=small)
        run("git", "commit", "-q", "-m", "a", cwd=small)
    rates: dict[str, float] = {}
    for name, server in servers.items():
        urls = [[server.new_repo(f"rate-{p}-{i}") for i in range(per_pusher)]  # type: ignore[attr-defined]
                for p in range(pushers)]

        def pusher(mine: list[str]) -> None:
            for url in mine:
                run("git", "push", "-q", url, "main", cwd=small)

        threads = [threading.Thread(target=pusher, args=(mine,)) for mine in urls]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rates[name] = pushers * per_pusher / (time.perf_counter() - started)
    return rates


def parallel_clones_with_ws_latency(work: Path, scratch: Path, clones: int = 4,
                                    probe_interval_s: float = 0.02) -> None:
    """`clones` bare clones of the big repo in parallel from the real daemon (the `grasp-relay`
    console script), while a websocket client in its own process sends REQs on the same port
    every `probe_interval_s` and times each REQ -> EOSE: git traffic must not starve the Nostr
    side. The repo is published the GRASP way first: announcement + state, then `git push`."""
    from bench.sync_bench import CLIENT_LIMITS, LatencyProbe, percentiles, publish_all
    from tests.daemon import ALICE, Daemon, announcement, issue, npub_of, pubkey_of, state

    daemon = Daemon(scratch / "daemon-data", {**CLIENT_LIMITS, "GRASP_LOG_LEVEL": "warning"}).start()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                              check=True).stdout.strip()
        asyncio.run(publish_all(daemon.ws_url, [announcement(ALICE, daemon.domain, "big")],
                                [state(ALICE, "big", {"refs/heads/main": head})]))
        url = f"{daemon.http_url}/{npub_of(ALICE)}/big.git"
        push_s = timed(lambda: run("git", "push", "-q", url, "main", cwd=work))
        # issues anchor only on a served repository: after the push
        asyncio.run(publish_all(daemon.ws_url, [issue(ALICE, pubkey_of(ALICE), "big", f"i{k}") for k in range(20)]))
        idle_probe = LatencyProbe(daemon.ws_url, interval_s=probe_interval_s).start()
        time.sleep(2.0)
        idle = percentiles(idle_probe.stop())
        probe = LatencyProbe(daemon.ws_url, interval_s=probe_interval_s).start()
        started = time.perf_counter()
        procs = [(subprocess.Popen(["git", "clone", "-q", "--bare", url, str(scratch / f"par-{i}")], env=GIT_ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), time.perf_counter())
                 for i in range(clones)]
        took = []
        for proc, t0 in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"clone failed: {err.decode(errors='replace')}")
            took.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
        busy = percentiles(probe.stop(), started, started + wall)
    finally:
        rss_mb = _status_mb(daemon.proc.pid, "VmHWM") if daemon.proc else 0.0
        daemon.stop()
    print(f"\nparallel clones via grasp-relay (push {push_s:.2f} s, relay VmHWM {rss_mb:.0f} MB):")
    print(f"  {clones} clones: wall {wall:.2f} s, each " + ", ".join(f"{t:.2f}" for t in sorted(took)) + " s")
    print(f"  REQ round-trip idle:         n={idle['n']:<5} p50 {idle['p50']:.2f} ms  p99 {idle['p99']:.2f} ms"
          f"  max {idle['max']:.2f} ms")
    print(f"  REQ round-trip during clones: n={busy['n']:<5} p50 {busy['p50']:.2f} ms  p99 {busy['p99']:.2f} ms"
          f"  max {busy['max']:.2f} ms")


def _status_mb(pid: int, key: str) -> float:
    from bench.sync_bench import proc_status_kb

    return proc_status_kb(pid, key) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--clones", type=int, default=4, help="parallel clones from grasp-relay (0: skip)")
    parser.add_argument("--pushers", type=int, default=4, help="parallel pushers for the push rate (0: skip)")
    parser.add_argument("--pushes", type=int, default=40, help="pushes per pusher for the push rate")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="git-bench-") as tmp:
        root = Path(tmp)
        print(f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}, "
              f"{os.cpu_count()} CPUs, median of {args.reps}")
        make_big(root / "work-big", args.mb)
        make_many(root / "work-many", args.commits)
        ours, theirs = GitHttpServer(root / "ours"), CgiServer(root / "theirs")
        ours.start()
        theirs.start()
        scratch = root / "scratch"
        scratch.mkdir()
        servers = {"githttp": ours, "http-backend": theirs}
        try:
            rows = bench_workload(f"{args.mb}MB-random", root / "work-big", servers, args.reps, scratch)
            rows += bench_workload(f"{args.commits}-commits", root / "work-many", servers, args.reps, scratch)
            rates = push_rate(servers, root, args.pushers, args.pushes) if args.pushers else {}
        finally:
            ours.stop()
            theirs.stop()
        print(f"{'workload':<18}{'op':<7}{'GitHttp s':>11}{'http-backend s':>16}{'ratio':>8}")
        for label, op, a, b in rows:
            print(f"{label:<18}{op:<7}{a:>11.3f}{b:>16.3f}{a / b:>8.2f}")
        if rates:
            ours_rate, theirs_rate = rates["githttp"], rates["http-backend"]
            print(f"\npush rate, {args.pushers} parallel pushers x {args.pushes}: GitHttp {ours_rate:.1f}/s, "
                  f"http-backend {theirs_rate:.1f}/s, ratio {ours_rate / theirs_rate:.2f}")
        if args.clones:
            parallel_clones_with_ws_latency(root / "work-big", scratch, args.clones)


if __name__ == "__main__":
    main()
