"""Who speaks for a repository, through the running daemon with the real git CLI: the ngit v3
maintainer model (reciprocal confirmation, role tags, stepping down, no roll-back on a
membership change) and "only served events anchor others"."""

from __future__ import annotations

import json
from pathlib import Path

from storage.nostr.event import Event, sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, Daemon, issue, now, npub_of, pubkey_of, state, wait_for
from tests.gitutil import commit, git, make_repo, push, remote_refs, rev
from tests.test_git_flows import ids_served, repo_url

DAVE = "d4" * 32
MAIN = "refs/heads/main"


def pk(secret: str) -> str:
    return pubkey_of(secret)


def repo_ann(secret: str, daemon: Daemon, identifier: str, *extra: list[str], here: bool = True,
             created_at: int | None = None) -> Event:
    """An announcement as ngit writes one: `here` lists this relay in clone and relays (the
    repo is hosted here); otherwise it names another server only, and gets in (if at all)
    through the maintainer exception."""
    npub = npub_of(secret)
    tags = [["d", identifier], ["name", identifier]]
    if here:
        tags += [["clone", f"http://{daemon.domain}/{npub}/{identifier}.git"], ["relays", f"ws://{daemon.domain}"]]
    else:
        tags += [["clone", f"https://git.elsewhere.invalid/{npub}/{identifier}.git"],
                 ["relays", "wss://relay.elsewhere.invalid"]]
    return sign_event(secret, 30617, "", [*tags, *extra], created_at or now())


async def publish_ok(client: Client, event: Event, prefix: str | None = None) -> str:
    ok, msg = await client.publish(event)
    assert ok, msg
    if prefix is not None:
        assert msg.startswith(prefix), msg
    return msg


async def publish_refused(client: Client, event: Event, *words: str) -> str:
    ok, msg = await client.publish(event)
    assert not ok, msg
    for word in words:
        assert word in msg, msg
    return msg


def cloned_main(url: str, into: Path) -> str:
    git("clone", "-q", url, str(into))
    return rev(into)


async def test_takeover_a_listed_keys_fork_cannot_move_the_owners_main(daemon, tmp_path: Path) -> None:
    """Before v3, listing Bob, who already had his own fork announcement of the same
    identifier, made Bob's fork state authoritative in Alice's repo. Now Bob is only invited
    until his announcement names Alice back: nothing of his reaches Alice's repo."""
    alice_work = make_repo(tmp_path / "alice", commits=1)
    alice_tip = rev(alice_work)
    bob_work = make_repo(tmp_path / "bob", commits=2)  # other history
    alice_url, bob_url = repo_url(daemon, ALICE, "proj"), repo_url(daemon, BOB, "proj")
    client = await Client.connect(daemon.ws_url)
    try:
        await publish_ok(client, repo_ann(BOB, daemon, "proj"), "purgatory:")
        await publish_ok(client, state(BOB, "proj", {MAIN: rev(bob_work)}), "purgatory:")
        assert push(bob_work, bob_url, "main").returncode == 0
        # Alice lists Bob the pre-v3 way; her repo does not adopt Bob's served fork state
        await publish_ok(client, repo_ann(ALICE, daemon, "proj", ["maintainers", pk(ALICE), pk(BOB)]), "purgatory:")
        assert MAIN not in remote_refs(alice_url)
        await publish_ok(client, state(ALICE, "proj", {MAIN: alice_tip}), "purgatory:")
        assert push(alice_work, alice_url, "main").returncode == 0
        # Bob's newer state counts for his own repo only
        bob_tip = commit(bob_work, "more.txt")
        await publish_ok(client, state(BOB, "proj", {MAIN: bob_tip}, created_at=now() + 5), "purgatory:")
        forced = push(bob_work, alice_url, "+main:main")
        # the only state that counts there is Alice's
        assert forced.returncode != 0 and f"lists refs/heads/main at {alice_tip}" in forced.stdout + forced.stderr
        assert push(bob_work, bob_url, "main").returncode == 0
        assert remote_refs(bob_url)[MAIN] == bob_tip
        assert remote_refs(alice_url)[MAIN] == alice_tip
        assert cloned_main(alice_url, tmp_path / "clone") == alice_tip
    finally:
        await client.close()


async def test_confirmed_co_maintainer_lands_then_steps_down_without_roll_back(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    work = make_repo(tmp_path / "work", commits=1)
    alice_url = repo_url(daemon, ALICE, "team")
    client = await Client.connect(daemon.ws_url)
    try:
        await publish_ok(client, repo_ann(ALICE, daemon, "team", ["maintainers", pk(ALICE), pk(BOB)]), "purgatory:")
        alices = state(ALICE, "team", {MAIN: rev(work)})
        await publish_ok(client, alices, "purgatory:")
        assert push(work, alice_url, "main").returncode == 0
        # Bob hosts elsewhere; his announcement names Alice back, so he is confirmed (and it
        # gets in through the maintainer exception, served at once beside Alice's)
        await publish_ok(client, repo_ann(BOB, daemon, "team", ["maintainers", pk(BOB), pk(ALICE)], here=False), "")
        bob_tip = commit(work, "bob.txt")
        bobs = state(BOB, "team", {MAIN: bob_tip}, created_at=now() + 2)
        await publish_ok(client, bobs, "purgatory:")
        assert push(work, alice_url, "main").returncode == 0
        assert await ids_served(client, bobs.id) == {bobs.id}
        assert cloned_main(alice_url, tmp_path / "clone1") == bob_tip
        # Bob steps down: his own announcement gives himself only an ended entry
        t = now()
        await publish_ok(client, repo_ann(BOB, daemon, "team", ["M", pk(ALICE)],
                                          ["m", pk(BOB), str(t - 100), str(t - 10)],
                                          here=False, created_at=t + 3), "")
        later = commit(work, "later.txt")
        await publish_refused(client, state(BOB, "team", {MAIN: later}, created_at=t + 4), "invalid:", "steps you down")
        refused = push(work, alice_url, "main")
        assert refused.returncode != 0
        # no roll-back: Alice's main stays where Bob's signed state put it, also after a
        # restart and its integrity pass (kept, not repaired to Alice's older state)
        assert remote_refs(alice_url)[MAIN] == bob_tip
    finally:
        await client.close()
    daemon.stop()
    daemon.start()
    await wait_for(lambda: daemon.log_events("integrity_pass_done"), "the start-up integrity pass")
    done = daemon.log_events("integrity_pass_done")[-1]
    assert done["differences"] == 0, done
    assert any(e.get("state") == bobs.id for e in daemon.log_events("integrity_kept"))
    assert remote_refs(alice_url)[MAIN] == bob_tip
    # until a confirmed maintainer publishes a newer state: then it moves on
    client = await Client.connect(daemon.ws_url)
    try:
        await publish_ok(client, state(ALICE, "team", {MAIN: later}, created_at=now() + 6), "purgatory:")
        assert push(work, alice_url, "main").returncode == 0
        assert cloned_main(alice_url, tmp_path / "clone2") == later
    finally:
        await client.close()


async def test_role_tags_as_ngit_v3_writes_them(daemon, tmp_path: Path) -> None:
    """Several `m` entries with intervals (Bob left once and came back), an ended entry
    (Carol), a moderator (Dave), and a legacy maintainers tag that role tags set aside."""
    work = make_repo(tmp_path / "work", commits=1)
    url = repo_url(daemon, ALICE, "roles")
    t = now()
    roles = [["M", pk(ALICE)],
             ["m", pk(BOB), str(t - 3000), str(t - 2000)], ["m", pk(BOB), str(t - 1000)],
             ["m", pk(CAROL), str(t - 3000), str(t - 2000)],
             ["o", pk(DAVE)],
             ["maintainers", pk(CAROL), pk(DAVE)]]
    client = await Client.connect(daemon.ws_url)
    try:
        await publish_ok(client, repo_ann(ALICE, daemon, "roles", *roles), "purgatory:")
        await publish_ok(client, state(ALICE, "roles", {MAIN: rev(work)}), "purgatory:")
        assert push(work, url, "main").returncode == 0
        back = [["M", pk(ALICE)], ["m", pk(BOB), str(t - 1000)]]
        await publish_ok(client, repo_ann(BOB, daemon, "roles", *back, here=False), "")
        # Carol's entry ended and Dave only moderates: neither is named, so neither gets the
        # maintainer exception nor counts
        await publish_refused(client, repo_ann(CAROL, daemon, "roles", ["m", pk(ALICE)], here=False), "blocked:")
        carol_tip = commit(work, "carol.txt")
        await publish_refused(client, state(CAROL, "roles", {MAIN: carol_tip}, created_at=t + 1), "invalid:")
        await publish_refused(client, state(DAVE, "roles", {MAIN: carol_tip}, created_at=t + 1), "invalid:")
        assert push(work, url, "main").returncode != 0
        bobs = state(BOB, "roles", {MAIN: carol_tip}, created_at=t + 2)
        await publish_ok(client, bobs, "purgatory:")
        assert push(work, url, "main").returncode == 0
        assert cloned_main(url, tmp_path / "clone") == carol_tip
        assert await ids_served(client, bobs.id) == {bobs.id}
    finally:
        await client.close()
    status, _, body = daemon.get("/", {"Accept": "application/nostr+json"})
    doc = json.loads(body)
    assert status == 200 and "ngit v3" in doc["repo_acceptance_criteria"]
    assert doc["limitation"]["maintainer_walk_max_rounds"] == 6 and doc["limitation"]["maintainer_walk_max_keys"] == 64


async def test_events_tagging_a_held_announcement_are_refused_until_it_is_served(start_daemon, tmp_path: Path) -> None:
    """The junk-announcement attack: announce, never push, publish notes tagging it. They are
    refused (not stored, not served) and nothing of them is left after the expiry; once a
    real announcement is served by a push, new events tagging it are accepted."""
    daemon = start_daemon(purgatory_expiry_s="4", purgatory_sweep_s="0.2")
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        await publish_ok(client, repo_ann(ALICE, daemon, "real"), "purgatory:")
        await publish_ok(client, state(ALICE, "real", {MAIN: rev(work)}), "purgatory:")
        early = issue(DAVE, pk(ALICE), "real", "too early")
        await publish_refused(client, early, "blocked:", "waits for its git data")
        assert push(work, repo_url(daemon, ALICE, "real"), "main").returncode == 0
        later = issue(DAVE, pk(ALICE), "real", "after the push")
        assert await publish_ok(client, later) == ""
        real = f"30617:{pk(ALICE)}:real"
        assert {e["id"] for e in await client.query({"#a": [real]})} == {later.id}

        junk = repo_ann(CAROL, daemon, "junk")
        await publish_ok(client, junk, "purgatory:")
        coord = f"30617:{pk(CAROL)}:junk"
        note = sign_event(DAVE, 1, "x" * 100_000, [["a", coord]], now())
        await publish_refused(client, note, "blocked:", "waits")
        await publish_refused(client, issue(DAVE, pk(CAROL), "junk"), "blocked:")
        pr = sign_event(DAVE, 1618, "", [["a", coord], ["c", rev(work)]], now())
        await publish_refused(client, pr, "blocked:", "served here yet")
        assert await client.query({"#a": [coord]}) == []
        await wait_for(lambda: daemon.log_events("purgatory_expired"), "the junk announcement to expire")
        assert await client.query({"#a": [coord]}) == [] and await client.query({"ids": [junk.id]}) == []
        await publish_refused(client, issue(DAVE, pk(CAROL), "junk", "again"), "blocked:")
    finally:
        await client.close()
