"""NIP-77 through the running daemon: rust-nostr's negentropy client (nostr-sdk's
`Client.sync` and `Relay.sync`) reconciles against it both ways, held events never take
part, and hostile NEG-* frames get answers while the connection keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest
from nostr_sdk import (
    ClientBuilder,
    EventId,
    Filter,
    Kind,
    NegentropyItem,
    NostrLmdb,
    RelayUrl,
    SyncDirection,
    SyncOptions,
    Timestamp,
)

from storage.nostr.event import Event, sign_event
from storage.nostr.negentropy import Initiator, Items
from tests.daemon import ALICE, Client, announcement

KIND = 10317  # accepted from anyone, replaceable per author: one event per fresh key


def grasp_list(created_at: int) -> Event:
    return sign_event(os.urandom(32).hex(), KIND, "", [["g", "wss://example.invalid"]], created_at)


async def publish_all(client: Client, events: list[Event]) -> None:
    for event in events:
        await client.ws.send(json.dumps(["EVENT", event.to_dict()]))
    acked = 0
    while acked < len(events):
        msg = await client.recv()
        if msg[0] == "OK":
            assert msg[2], msg
            acked += 1


@pytest.fixture(autouse=True)
async def sdk_loop() -> AsyncIterator[None]:
    """The LMDB database calls back into Python from rust's threads, which need to be told
    the loop; the setting is global to nostr-sdk, so it is put back for the next tests."""
    nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
    try:
        yield
    finally:
        nostr_sdk.uniffi_set_event_loop(None)  # type: ignore[arg-type]


async def sdk_client(url: str, db_dir: Path, events: list[Event]) -> Any:
    db = await NostrLmdb.open(str(db_dir))
    for event in events:
        await db.save_event(nostr_sdk.Event.from_json(event.to_json()))
    sdk = ClientBuilder().database(db).build()
    await sdk.add_relay(RelayUrl.parse(url))
    await sdk.connect()
    return sdk, db


def hexes(ids: Any) -> set[str]:
    return {i.to_hex() for i in ids}


async def test_sdk_sync_both_ways_over_many_rounds(start_daemon, tmp_path: Path) -> None:
    """600 events on the relay and a 4 kB frame limit: the relay's answers are cut and the
    client continues over several rounds; the summary has exactly the two differences."""
    daemon = start_daemon(negentropy_frame_max_bytes="4096")
    relay_events = [grasp_list(1_600_000_000 + i // 3) for i in range(600)]  # three per second
    client_only = [grasp_list(1_600_000_100 + i) for i in range(7)]
    raw = await Client.connect(daemon.ws_url)
    try:
        await publish_all(raw, relay_events)
        sdk, db = await sdk_client(daemon.ws_url, tmp_path / "lmdb", relay_events[::3] + client_only)
        try:
            opts = SyncOptions().direction(SyncDirection.BOTH)
            output = await sdk.sync(Filter().kind(Kind(KIND)), opts=opts)
            assert not output.failed, output.failed
            report = output.report
            relay_only = {e.id for e in relay_events} - {e.id for e in relay_events[::3]}
            assert hexes(report.local) == {e.id for e in client_only}
            assert hexes(report.remote.keys()) == relay_only
            assert hexes(report.sent.keys()) == {e.id for e in client_only}
            assert hexes(report.received.keys()) == relay_only
            assert await db.count(Filter().kind(Kind(KIND))) == 607
        finally:
            await sdk.disconnect()
        stored = await raw.query({"kinds": [KIND], "limit": 5000})
        assert {e["id"] for e in stored} == {e.id for e in relay_events + client_only}
    finally:
        await raw.close()


async def test_sdk_sync_down_only_and_relay_sync_with_items(daemon, tmp_path: Path) -> None:
    relay_events = [grasp_list(1_600_000_000 + i) for i in range(40)]
    client_only = [grasp_list(1_700_000_000 + i) for i in range(3)]
    raw = await Client.connect(daemon.ws_url)
    try:
        await publish_all(raw, relay_events)
        # a held event (an announcement waits for its git data) takes no part
        ok, msg = await raw.publish(announcement(ALICE, daemon.domain, "held"))
        assert ok, msg
        sdk, db = await sdk_client(daemon.ws_url, tmp_path / "lmdb", relay_events[:30] + client_only)
        try:
            output = await sdk.sync(Filter().kind(Kind(KIND)), opts=SyncOptions().direction(SyncDirection.DOWN))
            assert hexes(output.report.received.keys()) == {e.id for e in relay_events[30:]}
            assert not output.report.sent
            relay = await sdk.relay(RelayUrl.parse(daemon.ws_url))
            assert relay is not None
            mine = [NegentropyItem(id=EventId.parse(e.id), timestamp=Timestamp.from_secs(e.created_at))
                    for e in relay_events[:5] + client_only]
            summary = await relay.sync(Filter().kinds([Kind(KIND), Kind(30617)]), mine, SyncOptions().dry_run())
            assert hexes(summary.local) == {e.id for e in client_only}
            assert hexes(summary.remote) == {e.id for e in relay_events[5:]}
        finally:
            await sdk.disconnect()
        stored = await raw.query({"kinds": [KIND], "limit": 5000})
        assert {e["id"] for e in stored} == {e.id for e in relay_events}  # nothing went up
    finally:
        await raw.close()


async def test_hostile_neg_frames_get_answers_and_the_connection_serves_on(start_daemon) -> None:
    daemon = start_daemon(negentropy_max_records="20", negentropy_max_sessions="2")
    events = [grasp_list(1_600_000_000 + i) for i in range(25)]
    raw = await Client.connect(daemon.ws_url)
    try:
        await publish_all(raw, events)
        ok, msg = await raw.publish(announcement(ALICE, daemon.domain, "held"))
        assert ok, msg
        hostile = [
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "6"], "NEG-ERR", "invalid:"),
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "zz"], "NEG-ERR", "invalid:"),
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "62"], "NEG-MSG", "61"),
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "6180"], "NEG-ERR", "invalid: message ends in the middle"),
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "6100000281ffffffff7f"], "NEG-ERR", "invalid: id list is longer"),
            (["NEG-OPEN", "h", {"kinds": [KIND]}, "61" + "ff" * 11], "NEG-ERR", "invalid: varint longer"),
            (["NEG-OPEN", "h", {"kinds": "x"}, "6100000200"], "NEG-ERR", "invalid:"),
            (["NEG-OPEN", "h", {}], "NOTICE", "invalid:"),
            (["NEG-MSG", "nope", "6100000200"], "NEG-ERR", "closed:"),
            (["NEG-OPEN", "big", {}, "6100000200"], "NEG-ERR", "blocked: too many records"),
        ]
        for message, kind, reason in hostile:
            await raw.send(message)
            got = await raw.recv()
            assert got[0] == kind and got[-1].startswith(reason), (message, got)
        await raw.ws.send("[\"NEG-MSG\", \"h\", " + "[" * 5000 + "]" * 5000 + "]")
        assert (await raw.recv())[0] == "NOTICE"
        # two sessions at once, a third is refused, closing one frees a place
        few = {"kinds": [KIND], "since": events[10].created_at}  # 15 of the 25: under the cap of 20
        for sub_id in ("a", "b"):
            await raw.send(["NEG-OPEN", sub_id, few, "6100000200"])
            assert (await raw.recv())[:2] == ["NEG-MSG", sub_id]
        await raw.send(["NEG-OPEN", "c", {"kinds": [KIND]}, "6100000200"])
        assert (await raw.recv())[2].startswith("blocked: too many negentropy sessions")
        await raw.send(["NEG-CLOSE", "a"])
        # a full reconciliation by our own initiator: the served events, not the held one
        client = Initiator(Items.from_pairs((e.created_at, e.id) for e in events[10:14]), 4096)
        await raw.send(["NEG-OPEN", "c", {**few, "kinds": [KIND, 30617]}, client.initiate().hex()])
        while True:
            got = await raw.recv()
            assert got[:2] == ["NEG-MSG", "c"], got
            step = client.reconcile(bytes.fromhex(got[2]))
            if step.message is None:
                break
            await raw.send(["NEG-MSG", "c", step.message.hex()])
        assert {i.hex() for i in client.need} == {e.id for e in events[14:]} and not client.have
        assert len(await raw.query({"kinds": [KIND]})) == 25  # REQs still served
    finally:
        await raw.close()
    _, _, body = daemon.get("/", {"Accept": "application/nostr+json"})
    doc = json.loads(body)
    assert 77 in doc["supported_nips"] and doc["limitation"]["negentropy_max_records"] == 20
