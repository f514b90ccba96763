"""Web view benchmark: p50/p99 time to serve the summary, log, tree and commit pages of a
5,000-commit repository from the real daemon, and the same pages from cgit (Debian's
`cgit` package, run as CGI behind a small threaded Python HTTP server) side by side, same
machine, same run. Each request is a fresh keep-alive GET timed at the client, sequential;
commit pages walk through different commits so no page is served twice from a cache.

    /work/main/.venv/bin/python bench/web_bench.py [--commits 5000] [--requests 200]

Prints one table (milliseconds) and writes nothing else; cgit is skipped when
/usr/lib/cgit/cgit.cgi is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import CGIHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.daemon import ALICE, Client, Daemon, announcement, free_port, npub_of, state  # noqa: E402
from tests.gitutil import GIT_ENV, git, push  # noqa: E402

CGIT = Path("/usr/lib/cgit/cgit.cgi")


def build_repo(path: Path, commits: int) -> list[str]:
    """`commits` commits touching files in a few directories, through git fast-import."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(path))
    lines = []
    stamp = 1_700_000_000
    for i in range(commits):
        msg = f"change {i}: adjust module {i % 37}\n"
        body = (f"# module {i % 37}\nvalue = {i}\n" + "x = 1\n" * (i % 50)).encode()
        lines.append(f"commit refs/heads/main\nmark :{i + 1}\ncommitter Bench <b@example.invalid> {stamp + i} +0000\n"
                     f"data {len(msg)}\n{msg}")
        if i:
            lines.append(f"from :{i}\n")
        if i == 0:
            readme = b"# Bench repo\n\nA repository with many commits.\n"
            lines.append(f"M 644 inline README.md\ndata {len(readme)}\n{readme.decode()}\n")
        lines.append(f"M 644 inline pkg{i % 7}/mod{i % 37}.py\ndata {len(body)}\n{body.decode()}\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input="".join(lines).encode(), check=True,
                   env={**os.environ, **GIT_ENV})
    git("checkout", "-q", "main", cwd=path)
    return git("rev-list", "main", cwd=path).stdout.split()


def measure(port: int, paths: list[str]) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for path in paths:
        start = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        times.append((time.perf_counter() - start) * 1000)
        if resp.status != 200 or not body:
            raise RuntimeError(f"{path}: {resp.status}")
        if resp.getheader("connection", "").lower() == "close" or resp.version == 10:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def start_cgit(root: Path, repo: Path) -> tuple[ThreadingHTTPServer, int]:
    cgi_dir = root / "cgi-bin"
    cgi_dir.mkdir()
    (cgi_dir / "cgit.cgi").symlink_to(CGIT)
    rc = root / "cgitrc"
    rc.write_text(f"cache-size=0\nvirtual-root=/cgi-bin/cgit.cgi/\nrepo.url=demo\nrepo.path={repo}\n")
    os.environ["CGIT_CONFIG"] = str(rc)
    os.chdir(root)

    # CGIHTTPRequestHandler drops to `nobody` when run as root, who cannot read the temporary
    # directories; cgit runs as the bench's own user instead
    http.server.nobody_uid = os.getuid  # type: ignore[attr-defined]

    class Handler(CGIHTTPRequestHandler):
        cgi_directories = ["/cgi-bin"]

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


async def publish(daemon: Daemon, work: Path, tip: str) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(announcement(ALICE, daemon.domain, "bench")))[0]
        assert (await client.publish(state(ALICE, "bench", {"refs/heads/main": tip})))[0]
    finally:
        await client.close()
    result = push(work, f"{daemon.http_url}/{npub_of(ALICE)}/bench.git", "main")
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        commits = build_repo(root / "work", args.commits)
        daemon = Daemon(root / "data", {"GRASP_LOG_LEVEL": "warning", "GRASP_SYNC_ENABLED": "false",
                                        "GRASP_PEER_SYNC_ENABLED": "false"}).start()
        try:
            asyncio.run(publish(daemon, root / "work", commits[0]))
            n = args.requests
            picks = [commits[(i * 7919) % len(commits)] for i in range(n)]
            base = f"/{npub_of(ALICE)}/bench"
            ours = {
                "summary": [base] * n,
                "log": [f"{base}/log"] * n,
                "log ?ofs=2500": [f"{base}/log?ofs={len(commits) // 2}"] * n,
                "tree": [f"{base}/tree"] * n,
                "commit": [f"{base}/commit/{c}" for c in picks],
            }
            theirs = {
                "summary": ["/cgi-bin/cgit.cgi/demo/"] * n,
                "log": ["/cgi-bin/cgit.cgi/demo/log/"] * n,
                "log ?ofs=2500": [f"/cgi-bin/cgit.cgi/demo/log/?ofs={len(commits) // 2}"] * n,
                "tree": ["/cgi-bin/cgit.cgi/demo/tree/"] * n,
                "commit": [f"/cgi-bin/cgit.cgi/demo/commit/?id={c}" for c in picks],
            }
            for paths in ours.values():  # warm: first reads open the repo and fill the reach set
                measure(daemon.port, paths[:5])
            results = {page: measure(daemon.port, paths) for page, paths in ours.items()}
            cgit: dict[str, tuple[float, float]] = {}
            if CGIT.exists():
                repo = root / "data" / "repos" / npub_of(ALICE) / "bench.git"
                server, port = start_cgit(root, repo)
                try:
                    cgit = {page: measure(port, paths) for page, paths in theirs.items()}
                finally:
                    server.shutdown()
        finally:
            daemon.stop()
    print(f"{args.commits} commits, {args.requests} sequential requests per page, milliseconds")
    print(f"{'page':<16}{'ours p50':>10}{'ours p99':>10}{'cgit p50':>10}{'cgit p99':>10}")
    for page, (p50, p99) in results.items():
        other = cgit.get(page)
        extra = f"{other[0]:>10.1f}{other[1]:>10.1f}" if other else f"{'-':>10}{'-':>10}"
        print(f"{page:<16}{p50:>10.1f}{p99:>10.1f}{extra}")


if __name__ == "__main__":
    main()
