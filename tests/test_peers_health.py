"""Unit tests of the peer health table (relay/peers/health.py), the retry cache of events
waiting on a parent (relay/peers/retry.py) and the reading of peers' frames
(relay/peers/frames.py): pure code, a fake clock and chosen jitter."""

from __future__ import annotations

import json

import pytest

from relay.peers import frames, health
from relay.peers.health import BACKOFF, COOLING, OK, PARKED, HealthLimits, PeerHealth
from relay.peers.retry import RetryCache, may_accept_later, provides, waits_for
from storage.nostr.event import sign_event

LIMITS = HealthLimits(backoff_base_s=2, backoff_max_s=60, cooloff_s=300, park_s=6 * 3600)
A = "a1" * 32


def test_every_state_has_a_row_for_every_trigger() -> None:
    moves = {(t.state, t.trigger) for t in health.TABLE}
    assert moves == {(s, t) for s in health.STATES for t in health.TRIGGERS}
    assert {t.next_state for t in health.TABLE if t.trigger == health.RATE_LIMITED} == {COOLING}
    with pytest.raises(ValueError):
        PeerHealth(LIMITS).on("bogus", 0, 0)


def test_backoff_doubles_with_jitter_up_to_the_cap_and_a_success_resets_it() -> None:
    peer = PeerHealth(LIMITS)
    waits = []
    for n in range(8):
        assert peer.on(health.FAILED, 1000, jitter=0.0) == BACKOFF
        waits.append(peer.wait(1000))
    # "equal jitter": half the delay is fixed, so jitter 0 gives half of base * 2^(n-1)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert peer.on(health.FAILED, 1000, jitter=0.999999) == BACKOFF and 59.9 < peer.wait(1000) <= 60
    assert peer.wait(1000 + 60) == 0  # the clock moved past it
    assert peer.on(health.SYNCED, 2000, 0.5) == OK and peer.failures == 0 and peer.last_success == 2000
    peer.on(health.FAILED, 2000, 0.0)
    assert peer.wait(2000) == 1  # from the start again


def test_rate_limit_cools_off_and_unreachable_parks_for_hours() -> None:
    peer = PeerHealth(LIMITS)
    assert peer.on(health.RATE_LIMITED, 50, 0.7) == COOLING and peer.wait(50) == 300
    assert peer.on(health.SYNCED, 400, 0.0) == OK and peer.wait(400) == 0
    assert peer.on(health.UNREACHABLE, 500, 0.3) == PARKED and peer.wait(500) == 6 * 3600
    assert peer.on(health.FAILED, 500 + 6 * 3600, 0.0) == BACKOFF  # retried after hours: then it backs off
    assert peer.on(health.RATE_LIMITED, 0, 0) == COOLING


# --- the retry cache ---------------------------------------------------------------------------
def issue(n: int, created_at: int = 1):
    return sign_event(A, 1621, f"issue {n}", [["a", f"30617:{'ab' * 32}:repo"]], created_at)


def comment(root_id: str, text: str = "x" * 10):
    return sign_event(A, 1111, text, [["E", root_id], ["K", "1621"]], 2)


def test_refusals_that_a_parent_may_lift() -> None:
    assert may_accept_later("blocked: event does not reference a repository served here")
    assert may_accept_later("blocked: event tags nothing served here: ...")
    assert may_accept_later("invalid: no repository announcement for 'x' here; ...")
    assert not may_accept_later("blocked: this pubkey is not allowed to publish here")
    assert not may_accept_later("invalid: bad signature")
    assert not may_accept_later("duplicate: served here")


def test_a_comment_waits_for_its_issue_and_a_state_for_its_announcement() -> None:
    cache = RetryCache(max_entries=10, max_bytes=10_000, ttl_s=60)
    root = issue(1)
    early = comment(root.id)
    state = sign_event(A, 30618, "", [["d", "repo"], ["refs/heads/main", "a" * 40]], 1)
    assert cache.add(early, "ws://p", now=0) and cache.add(state, "ws://p", now=0)
    assert root.id in waits_for(early) and "d:repo" in waits_for(state)
    assert cache.take(provides(issue(2)), now=1) == []  # another issue lifts nothing
    assert cache.take(provides(root), now=1) == [(early, "ws://p", 0)]
    ann = sign_event(A, 30617, "", [["d", "repo"]], 1)
    assert [e for e, _, _ in cache.take(provides(ann), now=1)] == [state]
    assert len(cache) == 0 and cache.bytes == 0


def test_the_cache_is_bounded_in_entries_bytes_and_time() -> None:
    root = issue(1)
    events = [comment(root.id, f"c{i}") for i in range(5)]
    size = len(events[0].to_json())
    by_count = RetryCache(max_entries=3, max_bytes=10**6, ttl_s=60)
    for n, event in enumerate(events):
        by_count.add(event, "ws://p", now=n)
    assert [e for e, _, _ in by_count.take(None, now=5)] == events[2:]  # the oldest went first
    by_bytes = RetryCache(max_entries=100, max_bytes=2 * size + 1, ttl_s=60)
    for event in events:
        by_bytes.add(event, "ws://p", now=0)
    assert len(by_bytes) == 2 and by_bytes.bytes <= 2 * size + 1
    assert not by_bytes.add(comment(root.id, "y" * 5000), "ws://p", now=0)  # larger than the whole budget
    by_time = RetryCache(max_entries=100, max_bytes=10**6, ttl_s=60)
    by_time.add(events[0], "ws://p", now=0)
    by_time.add(events[1], "ws://p", now=30)
    assert by_time.expire(now=60) == 1 and len(by_time) == 1
    # put back after a retry that still failed, its first arrival keeps counting
    (event, source, first), = by_time.take(None, now=61)
    by_time.add(event, source, now=85, first_seen=first)
    assert by_time.take(None, now=90) == []


# --- frames --------------------------------------------------------------------------------------
def test_frames_from_a_peer() -> None:
    assert frames.parse("not json") is None and frames.parse("{}") is None and frames.parse("[5]") is None
    assert frames.parse("[" * 5000 + "]" * 5000) is None
    closed = frames.parse(json.dumps(["CLOSED", "s", "rate-limited: slow down"]))
    assert closed is not None and frames.is_rate_limited(closed)
    notice = frames.parse(json.dumps(["NOTICE", "rate-limited: too many REQs"]))
    assert notice is not None and frames.is_rate_limited(notice)
    unsupported = frames.parse(json.dumps(["NOTICE", "invalid: unsupported message type 'NEG-OPEN'"]))
    assert unsupported is not None and frames.refuses_negentropy(unsupported, "n")
    other_session = frames.parse(json.dumps(["NEG-ERR", "other", "closed: ..."]))
    assert other_session is not None and not frames.refuses_negentropy(other_session, "n")
    eose = frames.parse(json.dumps(["EOSE", "n"]))
    assert eose is not None and not frames.is_rate_limited(eose) and not frames.refuses_negentropy(eose, "n")


# --- per-peer metrics ------------------------------------------------------------------------------
def test_peer_metrics_labels_are_capped() -> None:
    from relay.metrics import Metrics
    from tests.daemon import metric

    m = Metrics(process_metrics=False, max_peers=2)
    for n in range(5):
        url = f"wss://relay{n}.example/path"
        m.peer_state(url, "backoff")
        m.peer_event(url, "accepted")
        m.peer_event(url, "made-up")
        m.peer_bytes(url, 100)
        m.peer_history(url, "req")
    m.peer_state("wss://relay0.example", "ok")
    m.peer_success("wss://relay1.example", 1234.0)
    text = m.render()[0].decode()
    assert metric(text, "grasp_peer_state", peer="relay0.example", state="ok") == 1
    assert metric(text, "grasp_peer_state", peer="relay0.example", state="backoff") == 0
    assert metric(text, "grasp_peer_state", peer="relay1.example", state="backoff") == 1
    assert metric(text, "grasp_peer_events_total", peer="other", outcome="accepted") == 3
    assert metric(text, "grasp_peer_events_total", peer="relay1.example", outcome="other") == 1
    assert metric(text, "grasp_peer_bytes_total", peer="other") == 300
    assert metric(text, "grasp_peer_last_success", peer="relay1.example") == 1234
    assert 'peer="relay2.example"' not in text and 'peer="other",state=' not in text
