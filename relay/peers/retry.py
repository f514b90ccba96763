"""Events from peers that the policy refused only because what they hang on is not here
yet: a comment before its issue, a state before its announcement, a status before the PR.
Peers send in their own order, so these are kept a while and offered to the policy again
when an event they name is stored (the after-store hook) or at the next planning round.

Pure and bounded: at most `max_entries` events and `max_bytes` of their JSON; the oldest go
first when a bound is reached, and each is dropped `ttl_s` after it first arrived."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from storage.nostr import nip34
from storage.nostr.event import Event

#: refusals that another event arriving may lift (relay/nostr/policy's wording)
WAITING_PHRASES = ("served here", "no repository announcement for")


def may_accept_later(message: str) -> bool:
    """Is this refusal about a parent that is missing (and may arrive), not the event itself?"""
    prefix = message.split(":", 1)[0]
    return prefix in ("blocked", "invalid") and any(p in message for p in WAITING_PHRASES)


def waits_for(event: Event) -> frozenset[str]:
    """The keys of what this event may be waiting for: the ids and coordinates it tags, and
    for a state the identifier whose announcement it needs."""
    keys = {t[1] for t in event.tags if len(t) >= 2 and t[0] in ("e", "E", "q", "a", "A")}
    if event.kind == nip34.STATE:
        keys.add(f"d:{event.d_tag}")
    return frozenset(keys)


def provides(event: Event) -> frozenset[str]:
    """The keys storing this event satisfies."""
    keys = {event.id}
    if event.kind == nip34.ANNOUNCEMENT:
        keys |= {nip34.repo_coordinate(event.pubkey, event.d_tag), f"d:{event.d_tag}"}
    elif 30000 <= event.kind < 40000:
        keys.add(f"{event.kind}:{event.pubkey}:{event.d_tag}")
    return frozenset(keys)


@dataclass
class _Entry:
    event: Event
    source: str
    size: int
    first_seen: float
    keys: frozenset[str]


class RetryCache:
    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_key: dict[str, set[str]] = {}  # what is waited for -> the ids waiting on it
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, event: Event, source: str, now: float, first_seen: float | None = None) -> bool:
        """Keep `event` for a retry; False when it cannot be kept (larger than the budget)."""
        size = len(event.to_json())
        if size > self.max_bytes or self.max_entries == 0:
            return False
        self._drop(event.id)
        entry = _Entry(event, source, size, now if first_seen is None else first_seen, waits_for(event))
        self._entries[event.id] = entry
        for key in entry.keys:
            self._by_key.setdefault(key, set()).add(event.id)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, event_id: str) -> None:
        entry = self._entries.pop(event_id, None)
        if entry is not None:
            self.bytes -= entry.size
            for key in entry.keys:
                waiting = self._by_key.get(key)
                if waiting is not None:
                    waiting.discard(event_id)
                    if not waiting:
                        del self._by_key[key]

    def expire(self, now: float) -> int:
        """Drop what has waited `ttl_s`; how many went."""
        old = [i for i, e in self._entries.items() if now - e.first_seen >= self.ttl_s]
        for event_id in old:
            self._drop(event_id)
        return len(old)

    def take(self, keys: frozenset[str] | None, now: float) -> list[tuple[Event, str, float]]:
        """Remove and return the live entries waiting on any of `keys` (all of them: None),
        oldest first, as (event, source, first_seen) to put back with `add` if still refused."""
        if keys is None:
            self.expire(now)
            chosen = list(self._entries)
        else:  # by the index: a stored event costs a lookup per key, not a pass over the cache
            found = {i for key in keys for i in self._by_key.get(key, ())}
            chosen = [i for i in self._entries if i in found] if found else []
        out = []
        for event_id in chosen:
            entry = self._entries[event_id]
            self._drop(event_id)
            if now - entry.first_seen < self.ttl_s:  # an expired one goes without a retry
                out.append((entry.event, entry.source, entry.first_seen))
        return out
