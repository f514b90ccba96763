"""Curation lists and GRASP-05 archive modes through the running daemon: real websocket
clients, the real git CLI, and SIGHUP changing the lists while it runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from storage.nostr.event import sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, Daemon, announcement, issue, now, npub_of, pubkey_of, wait_log
from tests.test_relay_daemon import served_repo


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
