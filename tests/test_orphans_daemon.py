"""A deleted announcement takes with it what was stored only because of it: through the
running daemon, an issue on the repo and a comment on the issue stop being served when the
owner deletes the announcement (NIP-09), while an issue of another repo, and an event that
also tags a repo still served, stay."""

from __future__ import annotations

import time
from pathlib import Path

from storage.nostr.event import sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, issue, pubkey_of
from tests.test_push_integrity import served_repo


async def test_deleting_an_announcement_removes_what_rested_on_it(daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        await served_repo(client, daemon, tmp_path, "doomed")
        await served_repo(client, daemon, tmp_path, "kept")
        owner = pubkey_of(ALICE)
        bug = issue(BOB, owner, "doomed", "crash")
        other = issue(BOB, owner, "kept", "typo")
        both = sign_event(BOB, 1621, "affects both", [["a", f"30617:{owner}:doomed"], ["a", f"30617:{owner}:kept"]],
                          int(time.time()))
        for event in (bug, other, both):
            assert await client.publish(event) == (True, "")
        comment = sign_event(CAROL, 1111, "me too", [["E", bug.id], ["e", bug.id], ["K", "1621"], ["k", "1621"]],
                             int(time.time()))
        assert await client.publish(comment) == (True, "")
        ids = [bug.id, other.id, both.id, comment.id]
        assert {e["id"] for e in await client.query({"ids": ids})} == set(ids)
        deletion = sign_event(ALICE, 5, "gone", [["a", f"30617:{owner}:doomed"]], int(time.time()) + 1)
        ok, msg = await client.publish(deletion)
        assert ok, msg
        left = {e["id"] for e in await client.query({"ids": ids})}
        assert left == {other.id, both.id}
        # and it does not come back by itself: the issue tags nothing served any more
        ok, msg = await client.publish(bug)
        assert not ok and msg.startswith("blocked:")
    finally:
        await client.close()
