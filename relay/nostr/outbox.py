"""What one websocket has waiting to be written, counted in bytes, against a budget per
connection and one for the whole relay. No I/O: the connection's writer task pops frames,
everything else offers them, and the answers say what to tell the client.

Why bytes and not frames: a frame is 50 bytes or 256 kB, so 20,000 frames was anywhere from
1 MB to 5 GB per connection. A client that never reads (or reads slower than it asks) only
ever costs its budget.

Two kinds of frames:
- event frames (a REQ's stored events, live events) are *offered*: taken if they fit under
  both budgets, else refused, and the caller answers `CLOSED` for that subscription;
- control frames (OK, EOSE, CLOSED, NOTICE, COUNT) are small and always taken, so every
  request keeps its answer; they may take the outbox past its budget up to HARD_FACTOR times
  it, and a client that gets there (it sends without ever reading) is dropped at once.

A connection is *congested* from the moment a frame is refused or the budget is passed until
its outbox has drained to half the budget; the connection drops a client that stays
congested for `stall_s` (relay/nostr/websocket.py)."""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

HARD_FACTOR = 2
#: per queued frame beyond the text itself: the deque slot and the entry tuple
ENTRY_OVERHEAD = 72

Offer = Literal["queued", "connection_full", "relay_full"]


@dataclass
class OutboxTotals:
    """The relay-wide count, shared by every connection's outbox."""

    limit: int
    queued: int = 0


@dataclass
class Outbox:
    limit: int
    totals: OutboxTotals
    queued: int = 0
    congested_since: float | None = None
    _frames: deque[tuple[str, str | None, int]] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self._frames)

    @staticmethod
    def size_of(text: str) -> int:
        """Memory the frame holds while it waits (a str's real size, not its length)."""
        return sys.getsizeof(text) + ENTRY_OVERHEAD

    def offer(self, text: str, sub_id: str, now: float) -> Offer:
        """An event frame of subscription `sub_id`, taken only if it fits."""
        size = self.size_of(text)
        if self.queued + size > self.limit:
            self._congested(now)
            return "connection_full"
        if self.totals.queued + size > self.totals.limit:
            self._congested(now)
            return "relay_full"
        self._push(text, sub_id, size)
        return "queued"

    def put(self, text: str, now: float, sub_id: str | None = None) -> bool:
        """A control frame; always taken. False when the outbox is now past its hard cap
        (HARD_FACTOR x the budget): the client must be dropped."""
        self._push(text, sub_id, self.size_of(text))
        if self.queued > self.limit:
            self._congested(now)
        return self.queued <= self.limit * HARD_FACTOR

    def pop(self) -> str | None:
        if not self._frames:
            return None
        text, _, size = self._frames.popleft()
        self._forget(size)
        if self.congested_since is not None and self.queued <= self.limit // 2:
            self.congested_since = None
        return text

    def purge(self, sub_id: str) -> int:
        """Drop the frames of `sub_id` not yet written (its REQ was replaced or CLOSEd);
        returns how many."""
        kept: deque[tuple[str, str | None, int]] = deque()
        dropped = 0
        for entry in self._frames:
            if entry[1] == sub_id:
                self._forget(entry[2])
                dropped += 1
            else:
                kept.append(entry)
        self._frames = kept
        if self.congested_since is not None and self.queued <= self.limit // 2:
            self.congested_since = None
        return dropped

    def clear(self) -> None:
        """The connection is gone: give its bytes back to the relay."""
        self.totals.queued -= self.queued
        self.queued = 0
        self._frames.clear()

    def stalled_for(self, now: float) -> float:
        return 0.0 if self.congested_since is None else now - self.congested_since

    # --- internals -----------------------------------------------------------------------
    def _push(self, text: str, sub_id: str | None, size: int) -> None:
        self._frames.append((text, sub_id, size))
        self.queued += size
        self.totals.queued += size

    def _forget(self, size: int) -> None:
        self.queued -= size
        self.totals.queued -= size

    def _congested(self, now: float) -> None:
        if self.congested_since is None:
            self.congested_since = now
