"""Curation lists and GRASP-05 archive modes through the running daemon: real websocket
clients, the real git CLI, and SIGHUP changing the lists while it runs."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.nostr.event import sign_event
from tests.daemon import (
    ALICE,
    BOB,
    CAROL,
    Client,
    Daemon,
    announcement,
    issue,
    now,
    npub_of,
    pubkey_of,
    state,
    wait_log,
)
from tests.gitutil import commit, make_repo, push, remote_refs, rev
from tests.test_relay_daemon import served_repo
from tests.test_sync_daemon import FAST_SYNC, wait_served
from tests.upstream import Upstream


def nip11(daemon: Daemon) -> dict[str, Any]:
    return json.loads(daemon.get("/", {"Accept": "application/nostr+json"})[2])


def elsewhere(secret: str, identifier: str, host: str = "git.example.org") -> Any:
    """An announcement that lists another service only (what archives take)."""
    tags = [["d", identifier], ["name", identifier],
            ["clone", f"https://{host}/{npub_of(secret)}/{identifier}.git"], ["relays", f"wss://{host}"]]
    return sign_event(secret, 30617, "", tags, now())


async def test_repository_whitelist_and_blacklist(start_daemon) -> None:
    """Whitelist hosts only what it names; the blacklist beats it, and the repo's issues go too;
    the author blacklist covers every kind."""
    daemon = start_daemon(repository_whitelist=f"{npub_of(ALICE)} {npub_of(BOB)}/kept",
                          repository_blacklist=f"{npub_of(ALICE)}/banned",
                          pubkey_blacklist=npub_of(CAROL))
    doc = nip11(daemon)
    assert doc["supported_grasps"] == ["GRASP-01", "GRASP-02"]
    assert "hosted" in doc["curation"] and "refused" in doc["curation"] and "blocked" in doc["curation"]
    client = await Client.connect(daemon.ws_url)
    try:
        await served_repo(client, daemon.domain, ALICE, "repo")
        ok, msg = await client.publish(announcement(BOB, daemon.domain, "kept"))
        assert ok and msg.startswith("purgatory:")
        ok, msg = await client.publish(announcement(BOB, daemon.domain, "other"))
        assert not ok and "hosts only the repositories" in msg
        ok, msg = await client.publish(announcement(ALICE, daemon.domain, "banned"))
        assert not ok and "does not accept repository" in msg
        ok, msg = await client.publish(issue(BOB, pubkey_of(ALICE), "banned"))
        assert not ok and "does not accept repository" in msg
        ok, msg = await client.publish(issue(CAROL, pubkey_of(ALICE), "repo"))
        assert not ok and "pubkey is not allowed" in msg
        assert (await client.publish(issue(BOB, pubkey_of(ALICE), "repo")))[0]
    finally:
        await client.close()
    # nothing was created on disk for the refused ones
    repos = daemon.data_dir / "repos"
    assert not (repos / npub_of(BOB) / "other.git").exists()
    assert not (repos / npub_of(ALICE) / "banned.git").exists()


async def test_sighup_changes_the_curation_lists(start_daemon, tmp_path: Path) -> None:
    conf = tmp_path / "grasp-relay.env"
    conf.write_text("")
    daemon = start_daemon(config_file=str(conf))
    assert "curation" not in nip11(daemon)
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(announcement(ALICE, daemon.domain, "first")))[0]
        conf.write_text(f"GRASP_REPOSITORY_BLACKLIST=second\nGRASP_REPOSITORY_WHITELIST={npub_of(ALICE)}\n")
        mark = daemon.log_length()
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        line = await wait_log(daemon, "reloaded", mark)
        assert line["applied"] == ["GRASP_REPOSITORY_BLACKLIST", "GRASP_REPOSITORY_WHITELIST"]
        ok, msg = await client.publish(announcement(ALICE, daemon.domain, "second"))
        assert not ok and "does not accept repository" in msg
        ok, msg = await client.publish(announcement(BOB, daemon.domain, "third"))
        assert not ok and "hosts only" in msg
        assert (await client.publish(announcement(ALICE, daemon.domain, "fourth")))[0]
        assert "refused" in nip11(daemon)["curation"]
        conf.write_text("GRASP_ARCHIVE_ALL=true\n")
        mark = daemon.log_length()
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_log(daemon, "reloaded", mark)
        assert (await client.publish(announcement(BOB, daemon.domain, "third")))[0]
        assert (await client.publish(elsewhere(CAROL, "mirror")))[0]
        assert "GRASP-05" in nip11(daemon)["supported_grasps"]
    finally:
        await client.close()


def archived(secret: str, identifier: str, clone: str) -> Any:
    """An announcement listing one other git server only (what GRASP-05 archives take)."""
    tags = [["d", identifier], ["name", identifier], ["clone", clone], ["relays", "wss://relay.example.org"]]
    return sign_event(secret, 30617, "", tags, now())


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    up = Upstream(tmp_path / "up", "127.0.0.1").start()
    yield up
    up.stop()


async def test_read_only_archive_of_listed_services_takes_data_only_by_sync(start_daemon, upstream,
                                                                         tmp_path: Path) -> None:
    daemon = start_daemon(archive_grasp_services=upstream.domain, **FAST_SYNC)
    doc = nip11(daemon)
    assert "GRASP-05" in doc["supported_grasps"] and "read-only" in doc["curation"]
    work = make_repo(tmp_path / "w", commits=2)
    upstream.make_repo("proj", work)
    client = await Client.connect(daemon.ws_url)
    try:
        ann = archived(ALICE, "proj", upstream.url_for("proj"))
        st = state(ALICE, "proj", {"refs/heads/main": rev(work)})
        for event in (ann, st):
            ok, msg = await client.publish(event)
            assert ok and msg.startswith("purgatory:"), msg
        await wait_served(client, [ann.id, st.id])
        url = f"{daemon.http_url}/{npub_of(ALICE)}/proj.git"
        assert remote_refs(url)["refs/heads/main"] == rev(work)
        # a push, even one a signed state would authorise, is refused: data comes by sync only
        commit(work, "more.txt")
        ok, msg = await client.publish(state(ALICE, "proj", {"refs/heads/main": rev(work)}, created_at=now() + 1))
        assert ok, msg
        refused = push(work, url, "main")
        assert refused.returncode != 0 and "read-only archive" in refused.stdout + refused.stderr
        refused = push(work, url, f"{rev(work)}:refs/nostr/{'a' * 64}")
        assert refused.returncode != 0 and "read-only archive" in refused.stdout + refused.stderr
        # another service's announcement is not archived
        ok, msg = await client.publish(archived(BOB, "proj", "https://git.example.org/x/proj.git"))
        assert not ok and "clone tag" in msg
    finally:
        await client.close()


async def test_writable_archive_all_takes_signed_pushes(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(archive_all="true", archive_read_only="false",
                          repository_blacklist=f"{npub_of(BOB)}/proj")
    doc = nip11(daemon)
    assert "GRASP-05" in doc["supported_grasps"] and "also accept pushes" in doc["curation"]
    work = make_repo(tmp_path / "w", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        for event in (archived(ALICE, "proj", "https://git.example.org/a/proj.git"),
                      state(ALICE, "proj", {"refs/heads/main": rev(work)})):
            ok, msg = await client.publish(event)
            assert ok and msg.startswith("purgatory:"), msg
        pushed = push(work, f"{daemon.http_url}/{npub_of(ALICE)}/proj.git", "main")
        assert pushed.returncode == 0, pushed.stderr
        # archive all, but the blacklist still beats it
        ok, msg = await client.publish(archived(BOB, "proj", "https://git.example.org/b/proj.git"))
        assert not ok and "does not accept repository" in msg
    finally:
        await client.close()
