"""Unit tests of GRASP-02 peer planning (pure)."""

from __future__ import annotations

from relay.peers.sync import MAX_VALUES_PER_FILTER, PeerPlan, plan_peers
from storage.nostr.event import sign_event

A, B = "a1" * 32, "b2" * 32
OWN = "relay.example"


def ann(secret: str, d: str, relays: list[str], created_at: int = 1):
    return sign_event(secret, 30617, "", [["d", d], ["relays", *relays]], created_at)


def test_plan_skips_our_own_relay_and_groups_by_peer() -> None:
    plans = plan_peers(
        [ann(A, "one", ["wss://relay.example", "wss://peer.example/"]),
         ann(B, "two", ["wss://peer.example", "ws://other.example:7777", "https://not-a-relay"])],
        OWN, max_peers=10,
    )
    assert set(plans) == {"wss://peer.example", "ws://other.example:7777"}
    peer = plans["wss://peer.example"]
    assert peer.identifiers == {"one", "two"} and len(peer.coordinates) == 2
    assert plans["ws://other.example:7777"].identifiers == {"two"}


def test_plan_keeps_the_most_named_peers() -> None:
    anns = [ann(A, f"r{i}", ["wss://busy.example"]) for i in range(3)] + [ann(B, "x", ["wss://quiet.example"])]
    assert set(plan_peers(anns, OWN, max_peers=1)) == {"wss://busy.example"}
    assert plan_peers(anns, OWN, max_peers=0) == {}


def test_a_held_announcement_is_followed_by_identifier_only_until_served() -> None:
    held = ann(A, "new", ["wss://peer.example"])
    waiting = plan_peers([held], OWN, max_peers=10, waiting=frozenset({held.id}))["wss://peer.example"]
    assert waiting.identifiers == {"new"} and waiting.coordinates == frozenset()
    assert all("#a" not in f for f in waiting.filters())
    served = plan_peers([held], OWN, max_peers=10)["wss://peer.example"]
    assert served.coordinates == {f"30617:{held.pubkey}:new"} and served != waiting  # asked afresh


def test_filters_are_chunked() -> None:
    ids = frozenset(f"r{i}" for i in range(MAX_VALUES_PER_FILTER + 1))
    coords = frozenset(f"30617:{'ab' * 32}:{i}" for i in ids)
    filters = PeerPlan(ids, coords).filters()
    assert [len(f.get("#d", f.get("#a"))) for f in filters] == [MAX_VALUES_PER_FILTER, 1, MAX_VALUES_PER_FILTER, 1]
    assert filters[0]["kinds"] == [30617, 30618]


# --- a hostile peer relay, through the running daemon ------------------------------------
async def test_a_bad_event_from_a_peer_is_skipped_and_reconnects_ask_since(start_daemon, tmp_path) -> None:
    """A peer sends an event the old code could not even parse (a lone surrogate made
    Event.from_dict raise past its except), then a good one, then drops the connection. The
    stream moves on past the bad one, and the reconnect asks only for what is newer than the
    newest stored event, instead of replaying the whole history (which stalled on the same
    bad event for ever)."""
    import json
    import time

    import websockets

    from tests.daemon import ALICE, Client, npub_of, state, wait_for

    reqs: list[list] = []
    good = state(ALICE, "peered", {"refs/heads/main": "a" * 40}, created_at=int(time.time()) - 100)
    bad = good.to_dict() | {"content": "\ud800"}  # json.dumps writes it as the escape "\\ud800"

    async def peer(ws) -> None:
        async for message in ws:
            frame = json.loads(message)
            if frame[0] != "REQ":
                continue
            reqs.append(frame)
            await ws.send(json.dumps(["EVENT", frame[1], bad]))
            await ws.send(json.dumps(["EVENT", frame[1], good.to_dict()]))
            await ws.send(json.dumps(["EOSE", frame[1]]))
            await ws.close()  # and make the relay come back

    async with websockets.serve(peer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        daemon = start_daemon(peer_refresh_s="0.2", peer_backoff_s="0.2", outbound_allow_private="true",
                              sync_enabled="false")
        tags = [["d", "peered"], ["clone", f"{daemon.http_url}/{npub_of(ALICE)}/peered.git"],
                ["relays", daemon.ws_url, f"ws://127.0.0.1:{port}"]]
        from storage.nostr.event import sign_event

        client = await Client.connect(daemon.ws_url)
        try:
            ok, msg = await client.publish(sign_event(ALICE, 30617, "", tags, int(time.time())))
            assert ok, msg
            await wait_for(lambda: len(reqs) >= 3, "three subscriptions from the relay", timeout=15)
        finally:
            await client.close()
    assert all("since" not in f for f in reqs[0][2:])
    assert all(f.get("since") == good.created_at for later in reqs[1:] for f in later[2:])
    assert daemon.log_events("peer_event_invalid") and "Traceback" not in daemon.log_text()
    # the good event went on to the purgatory (it waits there for its git data)
    assert good.id in {r["event_id"] for r in daemon.log_events("purgatory_held")}
