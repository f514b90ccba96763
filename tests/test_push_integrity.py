"""Push integrity through the running daemon, tried as an attacker with no keys would: raw
HTTP bodies the git CLI never sends (duplicate refs, wrong old ids, no-op commands), slow
bodies, unclaimed PR refs fetched by id over protocol v2, and a git that does something
nobody authorised. Real git, real packs, real SQLite."""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

from relay.git.pktline import FLUSH, encode
from tests.daemon import ALICE, Client, metric, npub_of, wait_for
from tests.gitutil import GIT_ENV, commit, git, make_repo, push, remote_refs, rev
from tests.test_git_flows import announce_and_state, repo_url

Z = "0" * 40


def pack_of(work: Path, tip: str, exclude: str | None = None) -> bytes:
    """A real pack with the objects reachable from `tip` and not from `exclude`."""
    revs = f"{tip}\n" + (f"^{exclude}\n" if exclude else "")
    proc = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work, input=revs.encode(),
                          capture_output=True, check=True, env={**os.environ, **GIT_ENV})
    return proc.stdout


def commands(*cmds: tuple[str, str, str], caps: str = "report-status side-band-64k") -> bytes:
    out = b""
    for i, (old, new, ref) in enumerate(cmds):
        out += encode(f"{old} {new} {ref}\0{caps}\n" if i == 0 else f"{old} {new} {ref}\n")
    return out + FLUSH


def raw_post(daemon, path: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/x-git-receive-pack-request"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def fetchable_by_id(url: str, oid: str, tmp: Path) -> bool:
    """Can anyone fetch this object by id over protocol v2 (which serves any object a repo has)?"""
    target = tmp / f"probe-{oid[:8]}-{time.monotonic_ns()}"
    git("init", "-q", "--bare", str(target))
    proc = git("-c", "protocol.version=2", "fetch", "-q", url, oid, cwd=target, check=False)
    shutil.rmtree(target, ignore_errors=True)
    return proc.returncode == 0


async def served_repo(client: Client, daemon, tmp_path: Path, identifier: str) -> tuple[Path, str, str]:
    """A repo whose owner published a state and pushed it: (work dir, url, tip)."""
    work = make_repo(tmp_path / f"work-{identifier}", commits=2)
    tip = rev(work)
    await announce_and_state(client, daemon, ALICE, identifier, {"refs/heads/main": tip})
    url = repo_url(daemon, ALICE, identifier)
    assert push(work, url, "main").returncode == 0
    assert remote_refs(url)["refs/heads/main"] == tip
    return work, url, tip


async def test_duplicate_ref_and_wrong_old_cannot_move_main(daemon, tmp_path: Path) -> None:
    """`tip->evil main` then `wrong->tip main` looked like "no change" to the old authoriser;
    git applied the first and refused the second, leaving main at the attacker's commit."""
    client = await Client.connect(daemon.ws_url)
    try:
        work, url, tip = await served_repo(client, daemon, tmp_path, "dup")
        evil = commit(work, "evil.txt")
        pack = pack_of(work, evil, tip)
        path = f"/{npub_of(ALICE)}/dup.git/git-receive-pack"
        status, answer = raw_post(daemon, path, commands((tip, evil, "refs/heads/main"),
                                                         ("1" * 40, tip, "refs/heads/main")) + pack)
        assert status == 200 and b"named twice" in answer
        # create a tag, then "delete" it with a wrong old id
        status, answer = raw_post(daemon, path, commands((Z, evil, "refs/tags/x"), ("2" * 40, Z, "refs/tags/x")) + pack)
        assert status == 200 and b"named twice" in answer
        # a wrong old id alone is refused by us, before git, with where the ref really is
        status, answer = raw_post(daemon, path, commands(("3" * 40, evil, "refs/heads/main")) + pack)
        assert status == 200 and f"is at {tip} here".encode() in answer
        assert remote_refs(url) == {"HEAD": tip, "refs/heads/main": tip}
        assert not fetchable_by_id(url, evil, tmp_path)
    finally:
        await client.close()


async def test_invalid_utf8_ref_name_is_400(daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        await served_repo(client, daemon, tmp_path, "utf")
        body = encode(b"%s %s refs/heads/\xff\xfe\0report-status\n" % (Z.encode(), b"a" * 40)) + FLUSH
        status, answer = raw_post(daemon, f"/{npub_of(ALICE)}/utf.git/git-receive-pack", body)
        assert status == 400 and b"not valid UTF-8" in answer
        assert daemon.get("/health")[0] == 200
        assert "Traceback" not in daemon.log_text()
    finally:
        await client.close()


async def test_noop_command_does_not_exempt_a_pr_ref_push_from_its_limits(start_daemon, tmp_path: Path) -> None:
    """`tip tip main` made a refs/nostr push "mixed", so neither the hourly limit nor the
    size cap applied. A no-op counts as nothing: the push changes no branch, it is open."""
    daemon = start_daemon(nostr_ref_pushes_per_ip_per_hour="2", nostr_ref_push_max_bytes="65536")
    client = await Client.connect(daemon.ws_url)
    try:
        work, url, tip = await served_repo(client, daemon, tmp_path, "noop")
        (work / "big.bin").write_bytes(os.urandom(200_000))
        big = commit(work, "big-marker.txt")
        path = f"/{npub_of(ALICE)}/noop.git/git-receive-pack"
        status, answer = raw_post(daemon, path, commands((tip, tip, "refs/heads/main"),
                                                         (Z, big, f"refs/nostr/{'a' * 64}")) + pack_of(work, big, tip))
        assert status == 413 and b"refs/nostr push exceeds the limit of 65536 bytes" in answer
        git("reset", "-q", "--hard", tip, cwd=work)
        small = commit(work, "small.txt")
        small_pack = pack_of(work, small, tip)
        status, answer = raw_post(daemon, path, commands((tip, tip, "refs/heads/main"),
                                                         (Z, small, f"refs/nostr/{'b' * 64}")) + small_pack)
        assert status == 200 and b"rate-limited" not in answer
        status, answer = raw_post(daemon, path, commands((tip, tip, "refs/heads/main"),
                                                         (Z, small, f"refs/nostr/{'c' * 64}")) + small_pack)
        assert status == 200 and b"rate-limited: more than 2 refs/nostr pushes per hour" in answer
        assert remote_refs(url) == {"HEAD": tip, "refs/heads/main": tip}
        assert not fetchable_by_id(url, small, tmp_path)  # waits in the pending area, unserved
    finally:
        await client.close()


def _drip(daemon, path: str, head: bytes, stop: float) -> socket.socket:
    """Open a push whose body announces 10 MB and starts with `head`, then sends nothing more
    for now: the caller drips a byte at a time on the returned socket."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=stop)
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-receive-pack-request\r\n"
               f"Content-Length: {10 * 1024 * 1024}\r\n\r\n").encode()
    sock.sendall(request + head)
    return sock


async def test_dripping_pushes_do_not_hold_the_owners_push(daemon, tmp_path: Path) -> None:
    """A refused push and an open refs/nostr push, both dripping a byte at a time, are still
    sending when the owner's real push to the same repo has landed: nobody waited for them."""
    client = await Client.connect(daemon.ws_url)
    try:
        work, url, tip = await served_repo(client, daemon, tmp_path, "drip")
        path = f"/{npub_of(ALICE)}/drip.git/git-receive-pack"
        open_push = _drip(daemon, path, commands((Z, tip, f"refs/nostr/{'d' * 64}")), 60)
        refused = _drip(daemon, path, commands((tip, "e" * 40, "refs/heads/main")), 60)
        try:
            loop = asyncio.get_running_loop()
            new_tip = commit(work, "next.txt")
            from tests.daemon import state
            ok, msg = await client.publish(state(ALICE, "drip", {"refs/heads/main": new_tip}))
            assert ok, msg
            for sock in (open_push, refused):  # both are well into their bodies
                sock.sendall(b"P")
            owner = loop.run_in_executor(None, lambda: push(work, url, "main"))
            while not owner.done():
                for sock in (open_push, refused):
                    sock.sendall(b"A")
                await asyncio.wait({owner}, timeout=0.2)
            assert owner.result().returncode == 0, owner.result().stderr
            assert remote_refs(url)["refs/heads/main"] == new_tip
            for sock in (open_push, refused):  # still connected, still being read
                sock.sendall(b"C")
        finally:
            open_push.close()
            refused.close()
    finally:
        await client.close()


async def test_slow_body_is_cut_off_by_the_minimum_pace(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(git_body_min_rate_bytes_s="100000", git_body_min_rate_grace_s="0.5")
    client = await Client.connect(daemon.ws_url)
    try:
        _, _, tip = await served_repo(client, daemon, tmp_path, "pace")
        sock = _drip(daemon, f"/{npub_of(ALICE)}/pace.git/git-receive-pack",
                     commands((Z, tip, f"refs/nostr/{'f' * 64}")), 30)
        answer = b""
        deadline = time.monotonic() + 20
        with sock:
            while b"bytes/s" not in answer and time.monotonic() < deadline:
                try:
                    sock.sendall(b"K")
                except OSError:
                    break
                await asyncio.sleep(0.1)
                sock.setblocking(False)
                try:
                    answer += sock.recv(4096)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        assert b"below the minimum of 100000 bytes/s" in answer
    finally:
        await client.close()


async def test_unclaimed_pr_ref_is_never_served_and_goes_at_expiry(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(purgatory_expiry_s="1.5", purgatory_sweep_s="0.2")
    client = await Client.connect(daemon.ws_url)
    try:
        work, url, tip = await served_repo(client, daemon, tmp_path, "unsigned")
        orphan = commit(work, "orphan.txt")
        assert push(work, url, f"{orphan}:refs/nostr/{'9' * 64}").returncode == 0
        assert f"refs/nostr/{'9' * 64}" not in remote_refs(url)
        assert not fetchable_by_id(url, orphan, tmp_path)
        pending = daemon.data_dir / "pending" / npub_of(ALICE) / "unsigned.git"
        assert pending.is_dir()
        await wait_for(lambda: not pending.exists(), "the expired placeholder's pending repo gone", timeout=15,
                       every=0.1)
        assert not fetchable_by_id(url, orphan, tmp_path)
        assert remote_refs(url) == {"HEAD": tip, "refs/heads/main": tip}
    finally:
        await client.close()


def _rogue_git(tmp_path: Path) -> Path:
    """A git that, after a real receive-pack, moves a ref nobody asked for: the kind of git
    behaviour the post-push check exists for."""
    real = shutil.which("git")
    script = tmp_path / "rogue-git"
    script.write_text(f"""#!/bin/bash
if [[ " $* " == *" receive-pack "* ]]; then
  {real} "$@"; rc=$?
  repo="${{@: -1}}"
  tip=$({real} -C "$repo" for-each-ref --format='%(objectname)' refs/heads/main)
  [ -n "$tip" ] && {real} -C "$repo" update-ref refs/heads/rogue "$tip"
  exit $rc
fi
exec {real} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_refs_git_leaves_unauthorised_are_put_back(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(git_binary=str(_rogue_git(tmp_path)))
    client = await Client.connect(daemon.ws_url)
    try:
        work = make_repo(tmp_path / "work", commits=2)
        tip = rev(work)
        await announce_and_state(client, daemon, ALICE, "rogue", {"refs/heads/main": tip})
        url = repo_url(daemon, ALICE, "rogue")
        result = push(work, url, "main")
        assert result.returncode != 0
        assert "the push was undone" in result.stdout + result.stderr
        assert remote_refs(url) == {}
        assert not fetchable_by_id(url, tip, tmp_path)  # the push's objects went with it
        _, _, text = daemon.get("/metrics")
        assert metric(text.decode(), "grasp_git_operations_total", service="receive-pack", outcome="restored") == 1
        assert [record["level"] for record in daemon.log_events("push_restored")] == ["error"]
    finally:
        await client.close()


async def test_objects_an_authorised_push_smuggles_in_are_not_served(daemon, tmp_path: Path) -> None:
    """Anyone may deliver a signed state's commits, and a pack may carry anything besides:
    what no ref reaches is dropped after the push (protocol v2 would serve it by id)."""
    client = await Client.connect(daemon.ws_url)
    try:
        work, url, tip = await served_repo(client, daemon, tmp_path, "smuggle")
        new_tip = commit(work, "signed.txt")
        from tests.daemon import state
        ok, msg = await client.publish(state(ALICE, "smuggle", {"refs/heads/main": new_tip}))
        assert ok, msg
        (work / "payload.bin").write_bytes(b"unsigned payload " + os.urandom(64))
        payload = git("hash-object", "-w", "payload.bin", cwd=work).stdout.strip()
        wanted = git("rev-list", "--objects", new_tip, f"^{tip}", cwd=work).stdout.split()
        ids = [w for w in wanted if len(w) == 40] + [payload]
        pack = subprocess.run(["git", "pack-objects", "--stdout", "-q"], cwd=work, capture_output=True, check=True,
                              input="".join(f"{i}\n" for i in ids).encode(), env={**os.environ, **GIT_ENV}).stdout
        status, answer = raw_post(daemon, f"/{npub_of(ALICE)}/smuggle.git/git-receive-pack",
                                  commands((tip, new_tip, "refs/heads/main")) + pack)
        assert status == 200 and b"ok refs/heads/main" in answer, answer
        assert remote_refs(url)["refs/heads/main"] == new_tip
        await wait_for(lambda: not fetchable_by_id(url, payload, tmp_path), "the unreachable payload dropped",
                       timeout=15, every=0.1)
        assert fetchable_by_id(url, new_tip, tmp_path)
        git("clone", "-q", url, str(tmp_path / "clone"))
        assert rev(tmp_path / "clone") == new_tip
        assert git("fsck", "--no-dangling", cwd=tmp_path / "clone").returncode == 0
    finally:
        await client.close()
