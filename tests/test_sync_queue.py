"""SyncQueue: identifier entries, delays, fresh starts and the backoff schedule (time passed in)."""

from __future__ import annotations

import pytest

from config.settings import Settings
from purgatory.sync.queue import SyncQueue


@pytest.fixture
def queue() -> SyncQueue:
    return SyncQueue.from_settings(Settings(sync_backoff_base_s=20, sync_backoff_max_s=120))


def test_enqueue_creates_entry_due_after_delay(queue: SyncQueue) -> None:
    queue.enqueue("repo", 180, now=1000)
    entry = queue.get("repo")
    assert entry is not None
    assert (entry.next_attempt, entry.attempt_count, entry.in_progress) == (1180, 0, False)
    assert len(queue) == 1 and "repo" in queue
    assert queue.ready(1179.9) == []
    assert queue.ready(1180) == ["repo"]


def test_reenqueue_moves_earlier_never_later(queue: SyncQueue) -> None:
    queue.enqueue("repo", 180, now=0)
    queue.enqueue("repo", 500, now=10)
    assert queue.get("repo").next_attempt == 180  # type: ignore[union-attr]
    queue.enqueue("repo", 0.5, now=20)
    assert queue.get("repo").next_attempt == 20.5  # type: ignore[union-attr]
    assert len(queue) == 1


def test_reenqueue_is_a_fresh_start(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    for attempt in range(3):
        queue.mark_in_progress("repo")
        queue.on_sync_complete("repo", done=False, now=attempt * 200)
    entry = queue.get("repo")
    assert entry is not None and entry.attempt_count == 3
    assert entry.next_attempt == 400 + 80
    queue.enqueue("repo", 0.5, now=450)  # a new event while waiting out the backoff
    assert entry.attempt_count == 0
    assert entry.next_attempt == 450.5
    queue.mark_in_progress("repo")
    queue.on_sync_complete("repo", done=False, now=451)
    assert entry.next_attempt == 451 + 20  # backoff starts over at the base


def test_trigger_immediate_sync(queue: SyncQueue) -> None:
    queue.enqueue("repo", 180, now=0)
    queue.trigger_immediate_sync("repo", now=5)
    assert queue.ready(5) == ["repo"]
    queue.trigger_immediate_sync("new", now=6)
    assert queue.ready(6) == ["repo", "new"]


def test_backoff_schedule_doubles_to_cap(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    now, delays = 0.0, []
    for _ in range(6):
        queue.mark_in_progress("repo")
        queue.on_sync_complete("repo", done=False, now=now)
        entry = queue.get("repo")
        assert entry is not None and not entry.in_progress
        delays.append(entry.next_attempt - now)
        now = entry.next_attempt
    assert delays == [20, 40, 80, 120, 120, 120]


def test_backoff_follows_settings() -> None:
    queue = SyncQueue.from_settings(Settings(sync_backoff_base_s=1.5, sync_backoff_max_s=5))
    assert [queue.backoff_delay(n) for n in range(6)] == [0, 1.5, 3, 5, 5, 5]
    assert queue.backoff_delay(10_000) == 5  # no overflow on very long retry runs


def test_ready_skips_in_progress_and_orders_most_overdue_first(queue: SyncQueue) -> None:
    queue.enqueue("late", 5, now=0)
    queue.enqueue("early", 1, now=0)
    queue.enqueue("busy", 0, now=0)
    queue.enqueue("future", 50, now=0)
    queue.mark_in_progress("busy")
    assert queue.ready(10) == ["early", "late"]
    assert queue.next_due() == 1  # "busy" does not count: its task wakes the loop itself


def test_done_removes_entry(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    queue.mark_in_progress("repo")
    queue.on_sync_complete("repo", done=True, now=3)
    assert "repo" not in queue and queue.next_due() is None


def test_new_event_during_sync_survives_done(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    queue.mark_in_progress("repo")
    queue.enqueue("repo", 0.5, now=2)  # a new event arrives while the attempt runs
    queue.on_sync_complete("repo", done=True, now=3)
    entry = queue.get("repo")
    assert entry is not None
    assert (entry.next_attempt, entry.attempt_count, entry.in_progress) == (2.5, 0, False)


def test_new_event_during_failed_sync_resets_backoff(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    for now in (0, 100, 200):
        queue.mark_in_progress("repo")
        queue.on_sync_complete("repo", done=False, now=now)
    queue.mark_in_progress("repo")
    queue.enqueue("repo", 180, now=300)  # later than the backoff would retry
    queue.on_sync_complete("repo", done=False, now=301)
    entry = queue.get("repo")
    assert entry is not None
    assert entry.attempt_count == 0
    assert entry.next_attempt == 301 + 20  # never later than a fresh backoff


def test_remove_during_sync_is_not_undone(queue: SyncQueue) -> None:
    queue.enqueue("repo", 0, now=0)
    queue.mark_in_progress("repo")
    queue.remove("repo")  # entries expired meanwhile
    queue.on_sync_complete("repo", done=False, now=1)
    assert "repo" not in queue
