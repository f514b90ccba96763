"""`grasp_git_bytes_total` counts the bytes of pushes and fetches, checked through the real
daemon: a push body of known size (commands plus a pack made by `git pack-objects`) and a
fetch request of known size are sent over HTTP as git sends them, and the counters must
equal the bytes sent and the bytes answered; a real `git clone` adds to the fetch ones."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests.daemon import ALICE, Client, Daemon, announcement, metric, npub_of, state
from tests.gitutil import git, make_repo, rev

ZERO = "0" * 40


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def post(url: str, body: bytes, service: str) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"application/x-{service}-request",
        "Accept": f"application/x-{service}-result",
    })
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return resp.read()


def git_bytes(daemon: Daemon, service: str, direction: str) -> float:
    return metric(daemon.get("/metrics")[2].decode(), "grasp_git_bytes_total", service=service,
                  direction=direction)


async def test_push_and_fetch_bytes_are_counted_exactly(daemon: Daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=3)
    (work / "blob.bin").write_bytes(bytes(range(256)) * 400)
    git("add", "blob.bin", cwd=work)
    git("commit", "-q", "-m", "blob", cwd=work)
    tip = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(announcement(ALICE, daemon.domain, "bytes")))[0]
        assert (await client.publish(state(ALICE, "bytes", {"refs/heads/main": tip})))[0]
    finally:
        await client.close()
    url = f"{daemon.http_url}/{npub_of(ALICE)}/bytes.git"
    assert git_bytes(daemon, "receive-pack", "in") == 0

    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work, input=f"{tip}\n".encode(),
                          capture_output=True, check=True).stdout
    commands = pkt(f"{ZERO} {tip} refs/heads/main\0report-status side-band-64k agent=test/1\n".encode())
    body = commands + b"0000" + pack
    answer = post(f"{url}/git-receive-pack", body, "git-receive-pack")
    assert b"ok refs/heads/main" in answer, answer
    assert git_bytes(daemon, "receive-pack", "in") == len(body)
    assert git_bytes(daemon, "receive-pack", "out") == len(answer)

    want = pkt(f"want {tip} side-band-64k ofs-delta agent=test/1\n".encode()) + b"0000" + pkt(b"done\n")
    fetched = post(f"{url}/git-upload-pack", want, "git-upload-pack")
    assert b"PACK" in fetched
    assert git_bytes(daemon, "upload-pack", "in") == len(want)
    assert git_bytes(daemon, "upload-pack", "out") == len(fetched)

    git("clone", "--quiet", url, str(tmp_path / "clone"))
    assert rev(tmp_path / "clone") == tip
    assert git_bytes(daemon, "upload-pack", "out") > len(fetched) + len(pack) * 0.9
    assert git_bytes(daemon, "upload-pack", "in") > len(want)
