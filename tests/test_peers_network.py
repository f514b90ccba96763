"""GRASP-02 between real daemons on 127.0.0.1: a repository announced and discussed on A
reaches a fresh B whole (announcement, state and git data, issues, NIP-22 comments tagging
the issue with `E` only, status events tagging it with `e` only, PRs), and a large history
comes by NIP-77 negentropy, or by REQ pages when A does not speak NIP-77."""

from __future__ import annotations

import json
import time
from pathlib import Path

from storage.nostr.event import Event, sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, Daemon, npub_of, pubkey_of, state, wait_for, wait_metric
from tests.gitutil import commit, make_repo, push, remote_refs, rev

FAST = dict(sync_user_delay_s="0.2", sync_synced_delay_s="0.1", sync_backoff_base_s="0.5", sync_backoff_max_s="1",
            fetch_timeout_s="5", fetch_cooloff_s="0.5", purgatory_sweep_s="0.2", outbound_allow_private="true",
            peer_refresh_s="60", peer_backoff_s="0.3", peer_replan_delay_s="0.2",
            events_per_minute_per_conn="100000", events_per_minute_per_ip="100000")


def announce(a: Daemon, b: Daemon, identifier: str) -> Event:
    npub = npub_of(ALICE)
    tags = [["d", identifier], ["name", identifier],
            ["clone", f"{a.http_url}/{npub}/{identifier}.git", f"{b.http_url}/{npub}/{identifier}.git"],
            ["relays", a.ws_url, b.ws_url]]
    return sign_event(ALICE, 30617, "", tags, int(time.time()) - 5)


async def publish_all(client: Client, events: list[Event]) -> None:
    """Pipelined: every EVENT sent, then every OK read (each must be true)."""
    for event in events:
        await client.ws.send(json.dumps(["EVENT", event.to_dict()]))
    pending = {e.id for e in events}
    while pending:
        msg = await client.recv(30)
        if msg[0] == "OK" and msg[1] in pending:
            assert msg[2], msg
            pending.discard(msg[1])


async def served_repo(a: Daemon, b: Daemon, tmp_path: Path, identifier: str) -> tuple[Event, Event, Path]:
    """Announcement and state published to A, git data pushed to A: served there."""
    ann = announce(a, b, identifier)
    work = make_repo(tmp_path / f"w-{identifier}", commits=2)
    st = state(ALICE, identifier, {"refs/heads/main": rev(work)}, created_at=int(time.time()) - 5)
    on_a = await Client.connect(a.ws_url)
    try:
        for event in (ann, st):
            ok, msg = await on_a.publish(event)
            assert ok, msg
        assert push(work, f"{a.http_url}/{npub_of(ALICE)}/{identifier}.git", "main").returncode == 0
        await wait_for(lambda: on_a.query({"ids": [ann.id, st.id]}), "the repository served on A")
    finally:
        await on_a.close()
    return ann, st, work


async def count_on(daemon: Daemon, filt: dict) -> int:
    client = await Client.connect(daemon.ws_url)
    try:
        return len(await client.query({**filt, "limit": 5000}))
    finally:
        await client.close()


async def test_a_repository_and_its_conversations_reach_a_fresh_peer(start_daemon, tmp_path: Path) -> None:
    a = start_daemon(tmp_path / "a", **FAST)
    b_dir = tmp_path / "b"
    b = Daemon(b_dir, {})  # its port is known before it starts: the announcement names it
    ann, st, work = await served_repo(a, b, tmp_path, "talk")
    coord = f"30617:{pubkey_of(ALICE)}:talk"
    bug = sign_event(BOB, 1621, "it breaks", [["a", coord], ["p", pubkey_of(ALICE)], ["subject", "bug"]],
                     int(time.time()) - 4)
    # NIP-22: the root by E (and its kind by K), no a tag; a status tags its root with e only
    reply = sign_event(CAROL, 1111, "me too", [["E", bug.id, "", pubkey_of(BOB)], ["K", "1621"],
                                               ["e", bug.id], ["k", "1621"]], int(time.time()) - 3)
    closed = sign_event(ALICE, 1632, "fixed", [["e", bug.id, "", "root"], ["p", pubkey_of(BOB)]],
                        int(time.time()) - 2)
    tip = commit(work, "feature.txt")
    pr = sign_event(CAROL, 1618, "a PR", [["a", coord], ["c", tip], ["subject", "feature"]], int(time.time()) - 2)
    on_a = await Client.connect(a.ws_url)
    try:
        for event in (bug, reply, closed):
            ok, msg = await on_a.publish(event)
            assert ok and not msg, msg
        ok, msg = await on_a.publish(pr)
        assert ok and msg.startswith("purgatory:"), msg
        assert push(work, f"{a.http_url}/{npub_of(ALICE)}/talk.git", f"HEAD:refs/nostr/{pr.id}").returncode == 0
        await wait_for(lambda: on_a.query({"ids": [pr.id]}), "the PR served on A")
    finally:
        await on_a.close()
    # B knows nothing but A as a bootstrap relay
    b.env = {f"GRASP_{k.upper()}": v for k, v in {**FAST, "sync_bootstrap_relays": a.ws_url}.items()}
    b.start()
    try:
        ids = [ann.id, st.id, bug.id, reply.id, closed.id, pr.id]
        on_b = await Client.connect(b.ws_url)
        try:
            async def all_served() -> bool:
                return {e["id"] for e in await on_b.query({"ids": ids})} == set(ids)

            await wait_for(all_served, "the whole repository and conversation served on B", timeout=40, every=0.3)
        finally:
            await on_b.close()
        refs = remote_refs(f"{b.http_url}/{npub_of(ALICE)}/talk.git")
        assert refs["refs/heads/main"] == st.tags[1][1] and refs[f"refs/nostr/{pr.id}"] == tip
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="negentropy") >= 3
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="req") == 0
        assert b.metric("grasp_peer_state", peer=a.domain, state="ok") == 1
        assert "Traceback" not in b.log_text()
    finally:
        b.stop()


async def many_issues(a: Daemon, b: Daemon, tmp_path: Path, identifier: str, count: int) -> list[Event]:
    await served_repo(a, b, tmp_path, identifier)
    coord = f"30617:{pubkey_of(ALICE)}:{identifier}"
    start = int(time.time()) - 10_000
    issues = [sign_event(BOB, 1621, f"issue {n}", [["a", coord], ["subject", f"n{n}"]], start + n // 4)
              for n in range(count)]
    on_a = await Client.connect(a.ws_url)
    try:
        await publish_all(on_a, issues)
    finally:
        await on_a.close()
    return issues


async def sync_many(start_daemon, tmp_path: Path, a_env: dict[str, str]) -> tuple[Daemon, Daemon]:
    a = start_daemon(tmp_path / "a", **{**FAST, **a_env})
    b = Daemon(tmp_path / "b", {})
    issues = await many_issues(a, b, tmp_path, "big", 1200)
    b.env = {f"GRASP_{k.upper()}": v for k, v in {**FAST, "sync_bootstrap_relays": a.ws_url}.items()}
    b.start()
    try:
        coord = f"30617:{pubkey_of(ALICE)}:big"

        async def arrived() -> bool:
            return await count_on(b, {"#a": [coord], "kinds": [1621]}) == len(issues)

        await wait_for(arrived, "1,200 issues on B", timeout=60, every=0.5)
    except BaseException:
        b.stop()
        raise
    return a, b


async def test_1200_events_reach_a_fresh_peer_by_negentropy(start_daemon, tmp_path: Path) -> None:
    a, b = await sync_many(start_daemon, tmp_path, {})
    try:
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="negentropy") >= 1
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="req") == 0
        assert b.metric("grasp_peer_events_total", peer=a.domain, outcome="accepted") >= 1200
        assert not b.log_events("peer_without_negentropy")
    finally:
        b.stop()


async def test_1200_events_reach_a_fresh_peer_by_req_pages_without_nip77(start_daemon, tmp_path: Path) -> None:
    """A does not speak NIP-77 and caps every REQ at 300 events: B pages by until past it."""
    a, b = await sync_many(start_daemon, tmp_path, {"negentropy_enabled": "false", "max_limit": "300",
                                                     "default_limit": "300"})
    try:
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="req") >= 1
        assert b.metric("grasp_peer_history_total", peer=a.domain, method="negentropy") == 0
        assert b.log_events("peer_without_negentropy")
    finally:
        b.stop()


async def test_a_state_on_a_plain_relay_reaches_both_and_its_data_is_fetched(start_daemon, tmp_path: Path) -> None:
    """nostr-sdk's own relay (rust-nostr's LocalRelay, in this process) is a plain peer both
    daemons follow: a new state published only there reaches A and B, and each fetches its
    git data from the upstream git server the announcement also lists."""
    import asyncio

    import nostr_sdk

    from tests.upstream import Upstream

    nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())  # rust's callbacks need the loop
    plain = nostr_sdk.LocalRelayBuilder().addr("127.0.0.1").build()
    await plain.run()
    up = Upstream(tmp_path / "up", "127.0.0.1").start()
    try:
        plain_url = str(await plain.url()).rstrip("/")
        a, b = Daemon(tmp_path / "a", {}), Daemon(tmp_path / "b", {})
        work = make_repo(tmp_path / "w", commits=2)
        up.make_repo("plain", work)
        npub = npub_of(ALICE)
        tags = [["d", "plain"], ["name", "plain"],
                ["clone", f"{a.http_url}/{npub}/plain.git", f"{b.http_url}/{npub}/plain.git", up.url_for("plain")],
                ["relays", a.ws_url, b.ws_url, plain_url]]
        ann = sign_event(ALICE, 30617, "", tags, int(time.time()) - 10)
        first = state(ALICE, "plain", {"refs/heads/main": rev(work)}, created_at=int(time.time()) - 10)
        for daemon in (a, b):
            daemon.env = {f"GRASP_{k.upper()}": v for k, v in FAST.items()}
            daemon.start()
        try:
            for daemon in (a, b):
                client = await Client.connect(daemon.ws_url)
                try:
                    await publish_all(client, [ann, first])
                    await wait_for(lambda: client.query({"ids": [ann.id, first.id]}), "the repository served")
                finally:
                    await client.close()
            for daemon in (a, b):
                await wait_metric(daemon, "grasp_peer_state", peer=plain_url.split("//")[1], state="ok")
            tip = commit(work, "more.txt")
            up.make_repo("plain", work)
            second = state(ALICE, "plain", {"refs/heads/main": tip})
            sdk = nostr_sdk.Client()
            await sdk.add_relay(nostr_sdk.RelayUrl.parse(plain_url))
            await sdk.connect()
            try:
                sent = await sdk.send_event(nostr_sdk.Event.from_json(second.to_json()))
                assert sent.success, sent.failed
            finally:
                await sdk.disconnect()
            for daemon in (a, b):
                url = f"{daemon.http_url}/{npub}/plain.git"
                await wait_for(lambda: remote_refs(url).get("refs/heads/main") == tip,
                               f"the new state's data served by {daemon.domain}", timeout=30, every=0.3)
                assert daemon.metric("grasp_peer_events_total", peer=plain_url.split("//")[1],
                                     outcome="accepted") >= 1
            assert up.fetches >= 2
            for daemon in (a, b):  # rust-nostr's relay speaks NIP-77: our Initiator reconciled with it
                assert daemon.metric("grasp_peer_history_total", peer=plain_url.split("//")[1],
                                     method="negentropy") >= 1
        finally:
            for daemon in (a, b):
                daemon.stop()
    finally:
        up.stop()
        plain.shutdown()
        nostr_sdk.uniffi_set_event_loop(None)  # type: ignore[arg-type]


async def test_a_comment_before_its_issue_waits_in_the_retry_cache(start_daemon, tmp_path: Path) -> None:
    """A peer sends a comment before the issue it answers (once, ahead of everything else):
    the policy refuses it for want of its root, it waits in the bounded cache, and is taken
    when the issue is stored."""
    from tests.peer_fakes import FakePeer

    coord = f"30617:{pubkey_of(ALICE)}:early"
    bug = sign_event(BOB, 1621, "it breaks", [["a", coord]], int(time.time()) - 20)
    reply = sign_event(CAROL, 1111, "me too", [["E", bug.id], ["K", "1621"]], int(time.time()) - 10)
    async with FakePeer([bug], early=[reply]) as peer:
        a = Daemon(tmp_path / "a", {})
        a.env = {f"GRASP_{k.upper()}": v for k, v in FAST.items()}
        a.start()
        try:
            npub = npub_of(ALICE)
            tags = [["d", "early"], ["clone", f"{a.http_url}/{npub}/early.git"], ["relays", a.ws_url, peer.url]]
            ann = sign_event(ALICE, 30617, "", tags, int(time.time()) - 30)
            work = make_repo(tmp_path / "w", commits=1)
            st = state(ALICE, "early", {"refs/heads/main": rev(work)}, created_at=int(time.time()) - 30)
            client = await Client.connect(a.ws_url)
            try:
                await publish_all(client, [ann, st])
                assert push(work, f"{a.http_url}/{npub}/early.git", "main").returncode == 0

                async def both() -> bool:
                    return {e["id"] for e in await client.query({"ids": [reply.id, bug.id]})} == {reply.id, bug.id}

                await wait_for(both, "issue and comment served", timeout=30, every=0.3)
            finally:
                await client.close()
            assert not peer.early  # sent, once, before the issue
            assert a.metric("grasp_peer_events_total", peer=peer.host, outcome="deferred") == 1
            assert a.metric("grasp_peer_events_total", peer=peer.host, outcome="accepted") >= 2
        finally:
            a.stop()
