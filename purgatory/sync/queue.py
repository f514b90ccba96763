"""The sync queue: one entry per repository identifier, not per event.

Many events for one repository (a state, several PRs) need the same fetch, so the queue is keyed
by identifier and each entry carries only its timing: when to try next, how many attempts have
failed (for the backoff) and whether a sync task is running for it. Time is passed in, so the
whole module is plain logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings


@dataclass
class SyncQueueEntry:
    identifier: str
    next_attempt: float
    attempt_count: int = 0
    in_progress: bool = False
    # Set when the identifier is enqueued again while its sync runs: new events arrived that
    # the running attempt may have missed, so the entry must survive that attempt's outcome.
    requeued_at: float | None = None


class SyncQueue:
    def __init__(self, backoff_base_s: float, backoff_max_s: float) -> None:
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._entries: dict[str, SyncQueueEntry] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncQueue:
        return cls(settings.sync_backoff_base_s, settings.sync_backoff_max_s)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._entries

    def get(self, identifier: str) -> SyncQueueEntry | None:
        return self._entries.get(identifier)

    def backoff_delay(self, attempt_count: int) -> float:
        """Delay after the `attempt_count`-th failed attempt: base, 2*base, 4*base... capped."""
        if attempt_count <= 0:
            return 0.0
        return min(self._base * 2 ** min(attempt_count - 1, 62), self._max)

    def enqueue(self, identifier: str, delay_s: float, now: float) -> None:
        """A new event is a fresh start: the backoff resets and the attempt may only move earlier,
        so a late duplicate announcement can never postpone a sync that is already due."""
        due = now + max(delay_s, 0.0)
        entry = self._entries.get(identifier)
        if entry is None:
            self._entries[identifier] = SyncQueueEntry(identifier, due)
            return
        entry.attempt_count = 0
        if entry.in_progress:
            previous = entry.requeued_at
            entry.requeued_at = due if previous is None else min(previous, due)
        else:
            entry.next_attempt = min(entry.next_attempt, due)

    def trigger_immediate_sync(self, identifier: str, now: float) -> None:
        self.enqueue(identifier, 0.0, now)

    def ready(self, now: float) -> list[str]:
        """Identifiers that are due and not already being synced, most overdue first."""
        due = [e for e in self._entries.values() if not e.in_progress and e.next_attempt <= now]
        due.sort(key=lambda e: e.next_attempt)
        return [e.identifier for e in due]

    def next_due(self) -> float | None:
        """When the main loop must wake next; entries in progress wake it when they finish."""
        times = [e.next_attempt for e in self._entries.values() if not e.in_progress]
        return min(times) if times else None

    def mark_in_progress(self, identifier: str) -> None:
        entry = self._entries[identifier]
        entry.in_progress = True
        entry.requeued_at = None

    def on_sync_complete(self, identifier: str, done: bool, now: float) -> None:
        """Done removes the entry, unless new events arrived meanwhile; otherwise back off."""
        entry = self._entries.get(identifier)
        if entry is None:
            return
        entry.in_progress = False
        requeued, entry.requeued_at = entry.requeued_at, None
        if done and requeued is None:
            del self._entries[identifier]
            return
        if done:
            entry.next_attempt = requeued  # type: ignore[assignment]
            return
        entry.attempt_count += 1
        backoff_due = now + self.backoff_delay(entry.attempt_count)
        if requeued is not None:
            entry.attempt_count = 0
            backoff_due = min(backoff_due, requeued)
        entry.next_attempt = backoff_due

    def remove(self, identifier: str) -> None:
        self._entries.pop(identifier, None)
