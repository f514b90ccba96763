"""The byte-counted outbox, without sockets: budgets per connection and in all, control frames,
the hard cap, purging a replaced subscription, congestion and its end."""

from __future__ import annotations

from relay.nostr.outbox import HARD_FACTOR, Outbox, OutboxTotals


def frame(n: int) -> str:
    return "x" * n


def test_event_frames_are_taken_while_they_fit_and_counted_in_bytes() -> None:
    totals = OutboxTotals(limit=10**9)
    box = Outbox(limit=10_000, totals=totals)
    taken = 0
    while box.offer(frame(1000), "s", now=0.0) == "queued":
        taken += 1
    assert taken == 8  # about 1,100 bytes each with their overhead
    assert box.queued == totals.queued <= 10_000 and box.congested_since == 0.0
    assert box.offer(frame(10), "s", now=1.0) == "queued"  # a small one still fits
    assert box.congested_since == 0.0  # congestion dates from the first refusal


def test_relay_budget_refuses_across_connections() -> None:
    totals = OutboxTotals(limit=5_000)
    a, b = Outbox(limit=10_000, totals=totals), Outbox(limit=10_000, totals=totals)
    assert a.offer(frame(3000), "s", 0.0) == "queued"
    assert b.offer(frame(3000), "s", 0.0) == "relay_full"
    a.pop()
    assert totals.queued == 0 and b.offer(frame(3000), "s", 0.0) == "queued"
    b.clear()
    assert totals.queued == 0 and b.queued == 0 and len(b) == 0


def test_control_frames_are_always_taken_up_to_the_hard_cap() -> None:
    box = Outbox(limit=2_000, totals=OutboxTotals(limit=10**9))
    results = [box.put(frame(100), now=5.0) for _ in range(100)]
    assert results[:15] == [True] * 15 and results[-1] is False
    assert box.queued > 2_000 * HARD_FACTOR and box.congested_since == 5.0


def test_purge_drops_only_that_subscription_and_ends_congestion() -> None:
    box = Outbox(limit=5_000, totals=OutboxTotals(limit=10**9))
    box.put("OK", 0.0)
    while box.offer(frame(500), "old", 0.0) == "queued":
        pass
    box.put("EOSE old", 0.0, "old")
    box.put("NOTICE", 0.0)
    assert box.congested_since == 0.0
    assert box.purge("old") >= 5
    assert [box.pop(), box.pop(), box.pop()] == ["OK", "NOTICE", None]
    assert box.queued == 0 and box.congested_since is None


def test_congestion_lasts_until_drained_to_half() -> None:
    box = Outbox(limit=10_000, totals=OutboxTotals(limit=10**9))
    while box.offer(frame(1000), "s", 1.0) == "queued":
        pass
    assert box.stalled_for(4.0) == 3.0
    box.pop()
    assert box.congested_since == 1.0  # still more than half full
    while box.queued > 5_000:
        box.pop()
    assert box.congested_since is None and box.stalled_for(9.0) == 0.0


def test_size_counts_memory_not_characters() -> None:
    assert Outbox.size_of("\U0001f600" * 1000) > Outbox.size_of("a" * 1000) + 2000
