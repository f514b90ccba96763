"""Unit tests of GRASP-02 peer planning (pure: relay/peers/plan.py), and a hostile peer
through the running daemon."""

from __future__ import annotations

import time

from relay.peers.plan import PeerPlan, is_root_candidate, plan_peers, root_map
from storage.nostr.event import sign_event

A, B = "a1" * 32, "b2" * 32
OWN = "relay.example"
PER = 100


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


def test_bootstrap_relays_are_asked_about_every_repository_and_come_first() -> None:
    anns = [ann(A, f"r{i}", ["wss://busy.example"]) for i in range(3)] + [ann(B, "x", ["wss://quiet.example"])]
    plans = plan_peers(anns, OWN, max_peers=1, bootstrap=["wss://boot.example/", "wss://relay.example"])
    assert set(plans) == {"wss://boot.example"}  # first, though named by no announcement; never ourselves
    assert plans["wss://boot.example"].identifiers == {"r0", "r1", "r2", "x"}
    assert len(plans["wss://boot.example"].coordinates) == 4


def test_a_held_announcement_is_followed_by_identifier_only_until_served() -> None:
    held = ann(A, "new", ["wss://peer.example"])
    waiting = plan_peers([held], OWN, max_peers=10, waiting=frozenset({held.id}))["wss://peer.example"]
    assert waiting.identifiers == {"new"} and waiting.coordinates == frozenset()
    assert all("#a" not in f for f in waiting.filters(PER))
    served = plan_peers([held], OWN, max_peers=10)["wss://peer.example"]
    assert served.coordinates == {f"30617:{held.pubkey}:new"} and served != waiting  # asked afresh


def test_three_layers_reach_the_conversations() -> None:
    """Announcements and states by #d; what tags the coordinate by #a, #A and #q; what tags
    the roots (the issue, the PR) by #e, #E and #q: comments tag their root with E, status
    events with e, and neither need carry the repo's a."""
    repo = ann(A, "one", ["wss://peer.example"])
    coord = f"30617:{repo.pubkey}:one"
    issue = sign_event(B, 1621, "bug", [["a", coord]], 2)
    stray = sign_event(B, 1621, "elsewhere", [["a", f"30617:{repo.pubkey}:other"]], 2)
    roots = root_map([issue, stray], frozenset({coord}))
    assert roots == {coord: frozenset({issue.id})}
    plan = plan_peers([repo], OWN, max_peers=10, roots=roots)["wss://peer.example"]
    assert plan.filters(PER) == [
        {"kinds": [30617, 30618], "#d": ["one"]},
        {"#a": [coord]}, {"#A": [coord]}, {"#q": [coord]},
        {"#e": [issue.id]}, {"#E": [issue.id]}, {"#q": [issue.id]},
    ]
    assert all(f["since"] == 5 for f in plan.filters(PER, since=5))
    assert is_root_candidate(issue) and is_root_candidate(repo)
    assert not is_root_candidate(sign_event(B, 1111, "c", [["E", issue.id]], 3))


def test_filters_are_chunked_and_plans_subtract() -> None:
    ids = frozenset(f"r{i}" for i in range(PER + 1))
    coords = frozenset(f"30617:{'ab' * 32}:{i}" for i in ids)
    filters = PeerPlan(ids, coords).filters(PER)
    assert [len(f.get("#d", f.get("#a", f.get("#A", f.get("#q"))))) for f in filters] == \
        [PER, 1] + [PER] * 3 + [1] * 3
    assert filters[0]["kinds"] == [30617, 30618]
    grown = PeerPlan(ids, coords, frozenset({"e1"}))
    assert grown.minus(PeerPlan(ids, coords)) == PeerPlan(roots=frozenset({"e1"}))
    assert not PeerPlan(ids, coords).minus(grown) and grown.union(PeerPlan()) == grown


# --- hostile peer relays, through the running daemon --------------------------------------
PEER_FAST = dict(peer_refresh_s="30", peer_backoff_s="0.2", peer_replan_delay_s="0", outbound_allow_private="true",
                 sync_enabled="false", peer_negentropy_timeout_s="2", peer_since_overlap_s="0")


async def publish_announcement(daemon, relays: list[str], identifier: str = "peered") -> None:
    from storage.nostr.event import sign_event
    from tests.daemon import ALICE, Client, now, npub_of

    tags = [["d", identifier], ["clone", f"{daemon.http_url}/{npub_of(ALICE)}/{identifier}.git"],
            ["relays", daemon.ws_url, *relays]]
    client = await Client.connect(daemon.ws_url)
    try:
        ok, msg = await client.publish(sign_event(ALICE, 30617, "", tags, now()))
        assert ok, msg
    finally:
        await client.close()


async def test_a_bad_event_never_stalls_a_peer_and_reconnects_ask_since(start_daemon) -> None:
    """A peer without NIP-77 sends events that are no events (a lone surrogate that once made
    Event.from_dict raise past its except, a forged signature, a non-object) before the good
    one, on every REQ, and drops the connection once the live REQs arrive. The stream moves on
    past the bad ones (counted), the history comes by REQ pages, and the reconnect asks only
    since the first connection's reconciliation instead of replaying the whole history."""
    from tests.daemon import ALICE, state, wait_for, wait_log, wait_metric
    from tests.peer_fakes import FakePeer

    good = state(ALICE, "peered", {"refs/heads/main": "a" * 40}, created_at=1_700_000_000)
    forged = state(ALICE, "peered", {"refs/heads/main": "b" * 40}).to_dict() | {"sig": "00" * 64}
    bad = [good.to_dict() | {"content": "\ud800"}, forged, "not an event", {"id": 5}]
    async with FakePeer([good], bad=bad, close_on=lambda f: f[0] == "REQ" and f[1].startswith("grasp-live")) as peer:
        daemon = start_daemon(**PEER_FAST)
        await publish_announcement(daemon, [peer.url])
        await wait_for(lambda: peer.connections >= 2 and any(r[1].startswith("grasp-live") for r in
                                                              peer.reqs()[peer.first_req_of(2):]),
                       "a second connection reaching its live subscriptions")
        await wait_metric(daemon, "grasp_peer_history_total", peer=peer.host, method="req")
        assert daemon.metric("grasp_peer_history_total", peer=peer.host, method="negentropy") == 0
        assert daemon.metric("grasp_peer_events_total", peer=peer.host, outcome="invalid") >= len(bad)
        await wait_log(daemon, "peer_disconnected", trigger="failed", state="backoff")
    first, second = peer.reqs()[:peer.first_req_of(2)], peer.reqs()[peer.first_req_of(2):]
    pages = [r for r in first if r[1] == "grasp-page"]
    assert pages and all("since" not in f for r in pages for f in r[2:])  # the first history: all of it
    assert any(f.get("until") == good.created_at for r in pages for f in r[2:])  # paged by until
    # since the first connection's reconciliation (its history pass began after the announcement),
    # which is later than the newest event stored from the peer: nothing older is asked again
    assert second and all(good.created_at < f.get("since", 0) <= time.time() for r in second for f in r[2:])
    negs = [f for f in peer.received if f[0] == "NEG-OPEN"]
    assert len(negs) == 1  # tried once, then the peer is known not to speak NIP-77
    assert daemon.log_events("peer_event_invalid") and "Traceback" not in daemon.log_text()
    assert good.id in {r["event_id"] for r in daemon.log_events("purgatory_held")}  # went on, held there


async def test_peer_health_moves_as_the_table_says(start_daemon) -> None:
    """Three peers, each failing its own way, followed by one daemon: one rate-limits (cooling,
    for the cool-off, then ok), one drops every connection before its history is done
    (backoff, each pause longer than the one before), and one whose name does not resolve
    (parked for hours)."""
    from tests.daemon import wait_for, wait_log, wait_metric
    from tests.peer_fakes import FakePeer

    async with FakePeer(rate_limit_connections=1) as slow, FakePeer(close_on=lambda f: f[0] == "REQ") as flaky:
        daemon = start_daemon(**{**PEER_FAST, "peer_backoff_s": "0.1"}, peer_cooloff_s="0.5", peer_park_s="3600")
        await publish_announcement(daemon, [slow.url, flaky.url, "ws://peer.invalid"])
        cooled = await wait_log(daemon, "peer_disconnected", peer=slow.url, trigger="rate_limited")
        assert cooled["state"] == "cooling" and 0.3 <= cooled["retry_in"] <= 0.5
        await wait_metric(daemon, "grasp_peer_state", peer=slow.host, state="ok")
        assert daemon.metric("grasp_peer_state", peer=slow.host, state="cooling") == 0
        parked = await wait_log(daemon, "peer_disconnected", peer="ws://peer.invalid")
        assert parked["trigger"] == "unreachable" and parked["state"] == "parked" and parked["retry_in"] > 3000
        assert daemon.metric("grasp_peer_state", peer="peer.invalid", state="parked") == 1

        def backoffs() -> list[float] | None:
            got = [r["retry_in"] for r in daemon.log_events("peer_disconnected")
                   if r.get("peer") == flaky.url and r["state"] == "backoff"]
            return got if len(got) >= 3 else None

        pauses = await wait_for(backoffs, "three backoffs from the peer that drops connections")
        assert pauses[2] > pauses[0]  # 0.1 * 2^2 * [0.5, 1) > 0.1 * [0.5, 1)
        assert daemon.metric("grasp_peer_state", peer=flaky.host, state="backoff") == 1
    assert "Traceback" not in daemon.log_text()
