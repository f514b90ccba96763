"""Live fan-out: which open subscriptions an event that has just been served goes to.

Kept apart from the websocket code so that the purgatory's release and the ingest path
broadcast the same way, through one `broadcast(event)` call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from relay.nostr.protocol import event_frame
from storage.nostr.event import Event
from storage.nostr.filters import Filter


class Subscriber(Protocol):
    """One connection, as the registry sees it: something event frames can be offered to.
    It may refuse (its output budget is spent) and close that subscription itself, which
    removes it from the registry during a broadcast: the loops below iterate over copies."""

    def send_event(self, sub_id: str, text: str) -> None: ...


@dataclass
class Subscriptions:
    _by_conn: dict[Subscriber, dict[str, tuple[Filter, ...]]] = field(default_factory=dict)

    def add(self, conn: Subscriber, sub_id: str, filters: tuple[Filter, ...]) -> bool:
        """Returns True when this opened a new subscription (False: replaced one)."""
        subs = self._by_conn.setdefault(conn, {})
        is_new = sub_id not in subs
        subs[sub_id] = filters
        return is_new

    def remove(self, conn: Subscriber, sub_id: str) -> bool:
        subs = self._by_conn.get(conn)
        return subs is not None and subs.pop(sub_id, None) is not None

    def drop(self, conn: Subscriber) -> int:
        """Forget a closed connection; returns how many subscriptions it had."""
        return len(self._by_conn.pop(conn, {}))

    def count(self) -> int:
        return sum(len(subs) for subs in self._by_conn.values())

    def broadcast(self, event: Event, raw_json: str | None = None) -> int:
        """Queue the event on every matching subscription; returns how many got it."""
        raw = raw_json
        sent = 0
        frames: dict[str, str] = {}  # many clients use the same ids ("live", "sub"): build once
        for conn, subs in list(self._by_conn.items()):
            for sub_id, filters in list(subs.items()):
                if any(f.matches(event) for f in filters):
                    frame = frames.get(sub_id)
                    if frame is None:
                        raw = raw or event.to_json()
                        frame = frames[sub_id] = event_frame(sub_id, raw)
                    conn.send_event(sub_id, frame)
                    sent += 1
        return sent
