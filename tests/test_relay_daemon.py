"""The relay foundation through the running daemon: a real websocket client and nostr-sdk's
Client against the `grasp-relay` console script."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from storage.nostr.event import sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, announcement, issue, now, npub_of, pubkey_of, state
from tests.gitutil import make_repo, push, rev


async def served_repo(client: Client, domain: str, secret: str = ALICE, identifier: str = "repo") -> str:
    """An announcement whose repo is served: announced, a state, and a real git push (only
    served announcements anchor other events; a held one anchors nothing)."""
    ann = announcement(secret, domain, identifier)
    ok, msg = await client.publish(ann)
    assert ok, msg
    with tempfile.TemporaryDirectory() as tmp:
        work = make_repo(Path(tmp) / "work", commits=1)
        ok, msg = await client.publish(state(secret, identifier, {"refs/heads/main": rev(work)}))
        assert ok, msg
        result = push(work, f"http://{domain}/{npub_of(secret)}/{identifier}.git", "main")
        assert result.returncode == 0, result.stderr
    assert [e["id"] for e in await client.query({"ids": [ann.id]})] == [ann.id]
    return ann.id


async def test_nip11_landing_page_and_cors(daemon) -> None:
    status, headers, body = daemon.get("/", {"Accept": "application/nostr+json"})
    doc = json.loads(body)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert doc["supported_grasps"] == ["GRASP-01", "GRASP-02"] and 34 in doc["supported_nips"]
    assert doc["limitation"]["max_filters"] == 20 and "curation" not in doc
    assert "repo_acceptance_criteria" in doc
    status, headers, body = daemon.get("/")
    assert status == 200 and b"GRASP relay" in body and headers["Content-Type"].startswith("text/html")
    status, headers, _ = daemon.get("/nope")
    assert status == 404 and headers["Access-Control-Allow-Methods"] == "GET, POST"


async def test_publish_query_and_live_subscription(daemon) -> None:
    writer = await Client.connect(daemon.ws_url)
    reader = await Client.connect(daemon.ws_url)
    try:
        await served_repo(writer, daemon.domain)
        owner = pubkey_of(ALICE)
        await reader.send(["REQ", "live", {"kinds": [1621]}])
        assert (await reader.recv())[0] == "EOSE"
        first = issue(BOB, owner, "repo", "one")
        ok, msg = await writer.publish(first)
        assert ok and msg == ""
        live = await reader.recv()
        assert live[:2] == ["EVENT", "live"] and live[2]["id"] == first.id
        found = await writer.query({"#a": [f"30617:{owner}:repo"]})
        assert [e["id"] for e in found] == [first.id]
        ok, msg = await writer.publish(first)
        assert ok and msg.startswith("duplicate:")
        await writer.send(["COUNT", "c", {"kinds": [1621]}])
        assert await writer.recv() == ["COUNT", "c", {"count": 1}]
    finally:
        await writer.close()
        await reader.close()


async def test_held_announcement_is_not_served_and_anchors_nothing(daemon) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "held")
        ok, msg = await client.publish(ann)
        assert ok and msg.startswith("purgatory:")
        assert await client.query({"kinds": [30617]}) == []
        ok, msg = await client.publish(issue(BOB, pubkey_of(ALICE), "held"))
        assert not ok and msg.startswith("blocked:") and "waits for its git data" in msg
    finally:
        await client.close()


async def test_acceptance_rules(daemon) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        other = announcement(ALICE, "other.example.org", "x")
        ok, msg = await client.publish(other)
        assert not ok and msg.startswith("blocked:") and "clone" in msg
        orphan = issue(BOB, pubkey_of(CAROL), "nothing")
        ok, msg = await client.publish(orphan)
        assert not ok and msg.startswith("blocked:")
        stray_state = sign_event(BOB, 30618, "", [["d", "x"], ["refs/heads/main", "a" * 40]], now())
        ok, msg = await client.publish(stray_state)
        assert not ok and msg.startswith("invalid:")
        grasp_list = sign_event(CAROL, 10317, "", [["g", "wss://example.org"]], now())
        assert (await client.publish(grasp_list))[0]
        note = sign_event(CAROL, 1, "hello", [], now())
        assert not (await client.publish(note))[0]
    finally:
        await client.close()


async def test_replaceable_and_deletion(daemon) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        older = sign_event(CAROL, 10317, "", [["g", "wss://a"]], now() - 10)
        newer = sign_event(CAROL, 10317, "", [["g", "wss://b"]], now())
        assert (await client.publish(newer))[0]
        ok, msg = await client.publish(older)
        assert ok and msg.startswith("duplicate:")
        assert [e["id"] for e in await client.query({"kinds": [10317]})] == [newer.id]
        await served_repo(client, daemon.domain)
        bug = issue(BOB, pubkey_of(ALICE), "repo")
        assert (await client.publish(bug))[0]
        deletion = sign_event(BOB, 5, "", [["e", bug.id], ["k", "1621"]], now())
        ok, msg = await client.publish(deletion)
        assert ok, msg
        assert await client.query({"ids": [bug.id]}) == []
        assert [e["id"] for e in await client.query({"kinds": [5]})] == [deletion.id]
        ok, msg = await client.publish(bug)
        assert not ok and "deleted" in msg
    finally:
        await client.close()


async def test_bad_input_keeps_connection_alive(daemon) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        await client.ws.send("this is not json")
        assert (await client.recv())[0] == "NOTICE"
        good = sign_event(CAROL, 10317, "", [], now()).to_dict()
        bad_sig = dict(good, sig=sign_event(BOB, 10317, "", [], now()).sig)
        await client.send(["EVENT", bad_sig])
        assert await client.recv() == ["OK", good["id"], False, "invalid: bad signature"]
        bad_id = dict(good, content="changed")
        await client.send(["EVENT", bad_id])
        msg = await client.recv()
        assert msg[2] is False and msg[3].startswith("invalid: event id")
        await client.send(["REQ", "s", {"kinds": [1], "bogus": True}])
        msg = await client.recv()
        assert msg[0] == "CLOSED" and msg[2].startswith("invalid:")
        assert (await client.publish(sign_event(CAROL, 10317, "", [], now())))[0]
    finally:
        await client.close()


async def test_limits_through_daemon(start_daemon) -> None:
    daemon = start_daemon(max_subscriptions=1, max_event_tags=3, max_content_bytes=10,
                          max_message_bytes=4096, max_filters=2)
    client = await Client.connect(daemon.ws_url)
    try:
        many_tags = sign_event(CAROL, 10317, "", [["g", "x"]] * 4, now())
        assert "too many tags" in (await client.publish(many_tags))[1]
        long_content = sign_event(CAROL, 10317, "x" * 11, [], now())
        assert "content is longer" in (await client.publish(long_content))[1]
        future = sign_event(CAROL, 10317, "", [], now() + 3600)
        assert "future" in (await client.publish(future))[1]
        await client.ws.send(json.dumps(["REQ", "big", {"ids": ["a" * 64] * 100}]))
        assert "larger than 4096" in (await client.recv())[1]
        await client.send(["REQ", "a", {"kinds": [1]}])
        assert (await client.recv())[0] == "EOSE"
        await client.send(["REQ", "b", {"kinds": [1]}])
        assert (await client.recv())[2].startswith("rate-limited:")
        await client.send(["REQ", "a", {}, {}, {}])
        assert "too many filters" in (await client.recv())[2]
    finally:
        await client.close()


async def test_restart_keeps_events_sdk_client_publishes_and_reads(start_daemon, tmp_path) -> None:
    from datetime import timedelta

    from nostr_sdk import Client as SdkClient
    from nostr_sdk import Event as SdkEvent
    from nostr_sdk import Filter, Kind, RelayUrl, ReqTarget

    data = tmp_path / "persist"
    daemon = start_daemon(data)
    grasp_list = sign_event(CAROL, 10317, "", [["g", "wss://x"]], now())
    sdk = SdkClient()
    await sdk.add_relay(RelayUrl.parse(daemon.ws_url))
    await sdk.connect()
    try:
        output = await sdk.send_event(SdkEvent.from_json(grasp_list.to_json()))
        assert output.id.to_hex() == grasp_list.id and output.success
    finally:
        await sdk.disconnect()
    daemon.stop()
    daemon.start()
    sdk = SdkClient()
    await sdk.add_relay(RelayUrl.parse(daemon.ws_url))
    await sdk.connect()
    try:
        target = ReqTarget.auto([Filter().kind(Kind(10317))])
        events = await sdk.fetch_events(target, timeout=timedelta(seconds=5))
        assert [e.id().to_hex() for e in events] == [grasp_list.id]
    finally:
        await sdk.disconnect()


async def test_accepted_event_survives_kill_9(start_daemon, tmp_path) -> None:
    data = tmp_path / "crash"
    daemon = start_daemon(data)
    client = await Client.connect(daemon.ws_url)
    events = [sign_event(CAROL, 10317 + 0, "", [["g", f"wss://{i}"]], now() - i) for i in range(1)]
    events += [sign_event(BOB, 10317, "", [["g", "wss://b"]], now())]
    for event in events:
        assert (await client.publish(event))[0]
    ann = announcement(ALICE, daemon.domain, "crash")
    assert (await client.publish(ann))[1].startswith("purgatory:")
    daemon.kill9()
    await client.close()
    daemon.start()
    client = await Client.connect(daemon.ws_url)
    try:
        ids = {e["id"] for e in await client.query({"kinds": [10317]})}
        assert ids == {e.id for e in events}
        status, _, body = daemon.get("/health")
        assert json.loads(body)["purgatory"] == {"30617": 1}
    finally:
        await client.close()


async def test_archive_whitelist_accepts_announcements_elsewhere(start_daemon) -> None:
    from tests.daemon import npub_of

    daemon = start_daemon(archive_whitelist=f"{npub_of(ALICE)}/mirror")
    doc = json.loads(daemon.get("/", {"Accept": "application/nostr+json"})[2])
    assert doc["supported_grasps"] == ["GRASP-01", "GRASP-02", "GRASP-05"] and "curation" in doc
    client = await Client.connect(daemon.ws_url)
    try:
        elsewhere = announcement(ALICE, "git.example.org", "mirror")
        ok, msg = await client.publish(elsewhere)
        assert ok and msg.startswith("purgatory:")
        other_repo = announcement(ALICE, "git.example.org", "other")
        assert not (await client.publish(other_repo))[0]
    finally:
        await client.close()


async def test_pipelined_dependent_events_on_one_connection(daemon) -> None:
    """A client may send an announcement, its state, an issue and a comment on the issue
    without waiting for OKs: each is judged after the ones it depends on. (The repo is served
    first: a held announcement anchors nothing.)"""
    client = await Client.connect(daemon.ws_url)
    try:
        owner = pubkey_of(ALICE)
        await served_repo(client, daemon.domain, ALICE, "burst")
        ann = announcement(ALICE, daemon.domain, "burst", created_at=now() + 1)
        st = state(ALICE, "burst", {"refs/heads/main": "c" * 40}, created_at=now() + 1)
        bug = issue(BOB, owner, "burst")
        comment = sign_event(CAROL, 1111, "me too", [["E", bug.id], ["K", "1621"], ["e", bug.id]], now())
        for event in (ann, st, bug, comment):
            await client.send(["EVENT", event.to_dict()])
        answers = {}
        while len(answers) < 4:
            msg = await client.recv()
            if msg[0] == "OK":
                answers[msg[1]] = (msg[2], msg[3])
        assert answers[ann.id][0] and answers[st.id][1].startswith("purgatory:")
        assert answers[bug.id] == (True, "") and answers[comment.id] == (True, "")
    finally:
        await client.close()
