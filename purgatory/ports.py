"""The narrow interfaces the purgatory's parts are built with: exactly the store reads and
writes and the metric calls each part makes, so relay/compose.py can hand each part only
those (the event store, its view and the metrics sink satisfy them structurally; mypy
checks that where they are joined) and unit tests can hand it a small fake.

The purgatory may not import relay/, so the metric calls it makes are named here again,
with the signatures `relay.metrics.MetricsSink` has."""

from __future__ import annotations

from typing import Literal, Protocol

from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.sqlite.records import HeldEntry, SaveResult

#: the outcomes the purgatory counts (relay.metrics.PurgatoryOutcome)
Outcome = Literal["held", "released", "expired"]


class PurgatoryMetrics(Protocol):
    def purgatory_event(self, kind: int, outcome: Outcome) -> None: ...


class FetchMetrics(Protocol):
    def sync_fetch(self, domain: str, outcome: str, seconds: float) -> None: ...


class HeldReads(Protocol):
    """The held entries of an identifier, oldest received first."""

    async def held(self, identifier: str | None = None) -> list[HeldEntry]: ...


class HoldingStore(HeldReads, Protocol):
    """What intake and expiry write: held entries, their expiry and its memory."""

    async def is_expired(self, event_id: str) -> bool: ...
    async def hold(self, event: Event, identifier: str, expires_at: float, source: str) -> bool: ...
    async def expired_due(self, now: float) -> list[HeldEntry]: ...
    async def discard(self, event_ids: list[str], reason: str) -> None: ...
    async def forget_expired(self, before: float) -> int: ...


class ReleaseStore(HeldReads, Protocol):
    """Moving held entries into the served store, in one transaction."""

    async def release(self, event_ids: list[str]) -> list[SaveResult]: ...


class StateQuery(Protocol):
    async def query(self, filters: list[Filter], default_limit: int) -> list[Event]: ...


class PlaceholderStore(Protocol):
    """The deadlines of PR refs pushed before their event."""

    async def add_placeholder(self, event_id: str, repo: str, tip: str, expires_at: float) -> None: ...
    async def placeholders_due(self, now: float) -> list[tuple[str, str, str]]: ...
    async def placeholder(self, event_id: str) -> tuple[str, str] | None: ...
    async def remove_placeholder(self, event_id: str) -> None: ...


class EventLookup(Protocol):
    def get_event(self, event_id: str) -> Event | None: ...


class AnnouncementReads(Protocol):
    """An identifier's announcements (served first, then held) as the store view reads them."""

    def announcements_for(self, identifier: str) -> list[Event]: ...


class ServedAnnouncement(Protocol):
    def served_announcement(self, pubkey: str, identifier: str) -> Event | None: ...
