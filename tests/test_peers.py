"""Unit tests of GRASP-02 peer planning (pure)."""

from __future__ import annotations

from relay.peers import MAX_VALUES_PER_FILTER, PeerPlan, plan_peers
from storage.event import sign_event

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


def test_filters_are_chunked() -> None:
    ids = frozenset(f"r{i}" for i in range(MAX_VALUES_PER_FILTER + 1))
    coords = frozenset(f"30617:{'ab' * 32}:{i}" for i in ids)
    filters = PeerPlan(ids, coords).filters()
    assert [len(f.get("#d", f.get("#a"))) for f in filters] == [MAX_VALUES_PER_FILTER, 1, MAX_VALUES_PER_FILTER, 1]
    assert filters[0]["kinds"] == [30617, 30618]
