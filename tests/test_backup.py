"""Backups through the real daemon: SIGTERM leaves the event store in one file (WAL folded
in), and `grasp-relay backup DEST` taken while events and pushes keep arriving restores into
a relay that serves every event acknowledged before the backup began, and whose every ref
has its objects and is where the snapshot's signed state says."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

from storage.nostr.event import sign_event
from tests.daemon import (
    ALICE,
    BOB,
    CAROL,
    Client,
    announcement,
    console_script,
    issue,
    now,
    npub_of,
    pubkey_of,
    state,
    wait_for,
    wait_log,
)
from tests.gitutil import GIT_ENV, commit, git, make_repo, push, remote_refs, rev


def count_events(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


async def test_sigterm_folds_the_wal_into_the_store_file(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    client = await Client.connect(daemon.ws_url)
    try:
        for _ in range(40):  # kind 10317 is replaceable: one author each, so all 40 are kept
            assert (await client.publish(sign_event(os.urandom(32).hex(), 10317, "", [], now())))[0]
    finally:
        await client.close()
    wal = daemon.data_dir / "events.sqlite3-wal"
    assert wal.exists() and wal.stat().st_size > 0
    assert daemon.stop(signal.SIGTERM) == 0
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(daemon.data_dir / "events.sqlite3", alone / "events.sqlite3")  # the file without its WAL
    assert count_events(alone / "events.sqlite3") == 40
    assert daemon.log_events("wal_checkpointed")


async def push_async(work: Path, url: str, refspec: str) -> int:
    proc = await asyncio.create_subprocess_exec("git", "push", "--quiet", url, refspec, cwd=work,
                                                env={**os.environ, **GIT_ENV},
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return await proc.wait()


async def test_backup_while_events_and_pushes_arrive(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "live")
    work = make_repo(tmp_path / "work", commits=2)
    url = f"{daemon.http_url}/{npub_of(ALICE)}/bk.git"
    acked: list[str] = []  # issues (each one is kept)
    acked_states: list[tuple[int, str]] = []  # (created_at, id): addressable, the newest is kept
    client = await Client.connect(daemon.ws_url)
    pusher = await Client.connect(daemon.ws_url)
    stop = asyncio.Event()

    async def events() -> None:
        n = 0
        while not stop.is_set():
            event = issue(BOB, pubkey_of(ALICE), "bk", subject=f"issue {n}")
            ok, msg = await client.publish(event)
            assert ok, msg
            acked.append(event.id)
            n += 1

    async def pushes() -> int:
        rounds = 0
        while not stop.is_set():
            tip = await asyncio.to_thread(commit, work, f"file{rounds}.txt")
            st = state(ALICE, "bk", {"refs/heads/main": tip}, created_at=now() + rounds + 1)
            ok, msg = await pusher.publish(st)
            assert ok, msg
            acked_states.append((st.created_at, st.id))
            assert await push_async(work, url, "main") == 0
            rounds += 1
        return rounds

    try:
        ann = announcement(ALICE, daemon.domain, "bk")
        first = state(ALICE, "bk", {"refs/heads/main": rev(work)})
        assert (await client.publish(ann))[0] and (await client.publish(first))[0]
        acked_states.append((first.created_at, first.id))
        assert await push_async(work, url, "main") == 0
        loads = [asyncio.create_task(events()), asyncio.create_task(pushes())]

        def loaded() -> bool:
            for task in loads:
                if task.done():
                    task.result()  # a load that stopped says why
            return len(acked) >= 30 and len(acked_states) >= 3

        await wait_for(loaded, "30 issues and 3 states acknowledged", every=0.01)
        before = [ann.id, *acked]
        newest_state_before = max(acked_states)
        dest = tmp_path / "snapshot"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
        env.update(GRASP_DATA_DIR=str(daemon.data_dir), GRASP_LOG_FORMAT="json")
        (tmp_path / "elsewhere").mkdir()
        backup = await asyncio.create_subprocess_exec(*console_script(), "backup", str(dest), env=env,
                                                      cwd=tmp_path / "elsewhere", stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(backup.communicate(), 60)
        stop.set()
        rounds = (await asyncio.gather(*loads))[1]
    finally:
        stop.set()
        await client.close()
        await pusher.close()
    assert backup.returncode == 0, (out.decode(), err.decode())
    assert b"backup written" in out, out
    assert rounds >= 1 and len(acked) + 1 > len(before), "nothing arrived while the backup ran"
    # the newest state acknowledged before the backup is in it (served, or held while its
    # push had not landed), unless a newer one of the same repo replaced it there
    conn = sqlite3.connect(dest / "events.sqlite3")
    try:
        present = {row[0]: row[1] for table in ("events", "held") for row in conn.execute(
            f"SELECT id, created_at FROM {table} WHERE kind=30618 AND d='bk'")}
    finally:
        conn.close()
    assert newest_state_before[1] in present or max(present.values()) > newest_state_before[0]

    restored = start_daemon(dest)
    restored_url = f"{restored.http_url}/{npub_of(ALICE)}/bk.git"
    client = await Client.connect(restored.ws_url)
    try:
        found = {e["id"] for e in await client.query({"ids": before, "limit": len(before)})}
        assert found == set(before), f"{len(set(before) - found)} acknowledged events missing"
        # the served state and the refs agree; a snapshot whose repo was already at a held
        # state is released by the restored relay's purgatory, so allow it that moment

        async def agreed() -> dict[str, str] | None:
            states = await client.query({"kinds": [30618], "authors": [pubkey_of(ALICE)], "#d": ["bk"]})
            assert len(states) == 1
            signed = {tag[0]: tag[1] for tag in states[0]["tags"] if tag[0].startswith("refs/")}
            refs = {n: o for n, o in remote_refs(restored_url).items() if n.startswith("refs/heads/")}
            return signed if refs == signed else None

        signed = await wait_for(agreed, "the served state and the refs agreeing", timeout=10)
    finally:
        await client.close()
    repo = dest / "repos" / npub_of(ALICE) / "bk.git"
    assert git("fsck", "--connectivity-only", "--no-dangling", cwd=repo, check=False).returncode == 0
    git("clone", "--quiet", restored_url, str(tmp_path / "clone"))
    assert rev(tmp_path / "clone") == signed["refs/heads/main"]
    await wait_log(restored, "integrity_pass_done", timeout=10)
    assert restored.log_events("integrity_difference") == []  # the whole log, not its tail


def test_backup_refuses_a_non_empty_destination_and_a_missing_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env["GRASP_DATA_DIR"] = str(tmp_path / "nothing-here")
    dest = tmp_path / "dest"
    done = subprocess.run([*console_script(), "backup", str(dest)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "no event store" in done.stderr
    dest.mkdir()
    (dest / "old").write_text("x")
    done = subprocess.run([*console_script(), "backup", str(dest)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "not an empty directory" in done.stderr
    done = subprocess.run([*console_script(), "backup", "--help"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "Restore" in done.stdout


async def test_backup_keeps_released_contributor_pr_refs(start_daemon, tmp_path: Path) -> None:
    """GRASP-06: a released PR's ref in `/prs/` is in the snapshot, one nobody signed is not,
    and a relay started from the snapshot serves the first at the same tip."""
    from tests.test_git_flows import ids_served
    from tests.test_prs_daemon import contributor_pr, prs_url
    from tests.test_push_integrity import served_repo

    daemon = start_daemon(grasp06_enabled="true")
    client = await Client.connect(daemon.ws_url)
    try:
        work, _, _ = await served_repo(client, daemon, tmp_path, "repo")
        url = prs_url(daemon, CAROL, "repo")
        tip = commit(work, "feature.txt")
        pr = contributor_pr(CAROL, pubkey_of(ALICE), "repo", tip, url)
        assert push(work, url, f"{tip}:refs/nostr/{pr.id}").returncode == 0
        ok, msg = await client.publish(pr)
        assert ok and msg == "", msg
        assert await ids_served(client, pr.id) == {pr.id}
    finally:
        await client.close()
    dest = tmp_path / "snapshot"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env.update(GRASP_DATA_DIR=str(daemon.data_dir), GRASP_LOG_FORMAT="json", GRASP_GRASP06_ENABLED="true")
    done = subprocess.run([*console_script(), "backup", str(dest)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "1 contributor repos" in done.stdout, done.stdout
    copy = dest / "prs" / npub_of(CAROL) / "repo.git"
    assert git("for-each-ref", "--format=%(refname) %(objectname)", cwd=copy).stdout.split() == [
        f"refs/nostr/{pr.id}", tip]
    assert git("fsck", "--no-dangling", cwd=copy, check=False).returncode == 0
    daemon.stop()
    restored = start_daemon(data_dir=dest, grasp06_enabled="true")
    assert remote_refs(prs_url(restored, CAROL, "repo")) == {f"refs/nostr/{pr.id}": tip}
