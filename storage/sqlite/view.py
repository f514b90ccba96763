"""A synchronous, read-only view of the store for the acceptance policy.

The policy runs on the event loop for every EVENT; its point lookups take microseconds, so
they run right there on their own read-only connection instead of paying a thread hop.
Every method sees what the writer has committed (WAL snapshot per statement). "Held" means
waiting in purgatory; most lookups see both served and held events, as the policy must."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.nostr.event import Event, stored_event
from storage.nostr.nip34 import ANNOUNCEMENT as ANNOUNCEMENT_KIND
from storage.nostr.nip34 import DELETION as DELETION_KIND
from storage.nostr.nip34 import STATE as STATE_KIND
from storage.nostr.nip34 import parse_coordinate
from storage.sqlite import held as held_reads
from storage.sqlite.records import HeldEntry
from storage.sqlite.schema import open_reader
from storage.sqlite.view_cache import IdIndexedCache

_ID_TAGS = ("e", "E", "q")
_COORD_TAGS = ("a", "A", "q")


class StoreView:
    def __init__(self, path: Path, cache_entries: int = 4096) -> None:
        self._conn: sqlite3.Connection = open_reader(path, same_thread=True)
        # Announcements and states by (kind, d), and purgatory entries by identifier: the
        # purgatory asks for them several times per sync step and the policy once per EVENT,
        # and every SQLite call or thread hop on the event loop may wait out another thread's
        # hold of the GIL. Kept exact by the store's writes (`forget*`, called on this same
        # thread once each write is committed).
        self._cache: IdIndexedCache[tuple[int, str], Event] = IdIndexedCache(cache_entries)
        self._held: IdIndexedCache[str, HeldEntry] = IdIndexedCache(cache_entries)

    def close(self) -> None:
        self._conn.close()

    # --- announcements and states ------------------------------------------------------
    def served_announcement(self, pubkey: str, identifier: str) -> Event | None:
        """The stored (served) 30617 of this author and identifier."""
        return self._one(
            "SELECT raw FROM events WHERE kind=? AND pubkey=? AND d=?",
            (ANNOUNCEMENT_KIND, pubkey, identifier),
        )

    def announcement(self, pubkey: str, identifier: str) -> Event | None:
        """The served 30617 of this author and identifier, else the newest held one."""
        return self.served_announcement(pubkey, identifier) or self._one(
            "SELECT raw FROM held WHERE kind=? AND pubkey=? AND d=? ORDER BY created_at DESC, id LIMIT 1",
            (ANNOUNCEMENT_KIND, pubkey, identifier),
        )

    def announcements_for(self, identifier: str) -> list[Event]:
        """Every 30617 with this `d`, of any author: served first, then held."""
        return self._by_kind_d(ANNOUNCEMENT_KIND, identifier)

    def states_for(self, identifier: str) -> list[Event]:
        """Every 30618 with this `d`, of any author: served first, then held."""
        return self._by_kind_d(STATE_KIND, identifier)

    # --- events ------------------------------------------------------------------------
    def has_event(self, event_id: str) -> bool:
        """Served or held."""
        return (
            self._exists("SELECT 1 FROM events WHERE id=?", (event_id,))
            or self._exists("SELECT 1 FROM held WHERE id=?", (event_id,))
        )

    def get_event(self, event_id: str) -> Event | None:
        """Served or held."""
        return self._one("SELECT raw FROM events WHERE id=?", (event_id,)) or self._one(
            "SELECT raw FROM held WHERE id=?", (event_id,)
        )

    def is_served(self, event_id: str) -> bool:
        return self._exists("SELECT 1 FROM events WHERE id=?", (event_id,))

    def has_coordinate(self, coordinate: str) -> bool:
        """A served or held replaceable/addressable event at `kind:pubkey:d`."""
        parsed = parse_coordinate(coordinate)
        if parsed is None:
            return False
        kind, pubkey, d = parsed
        if kind in (ANNOUNCEMENT_KIND, STATE_KIND):  # the common case: issues, PRs, patches
            return any(e.pubkey == pubkey for e in self._by_kind_d(kind, d))
        return self._exists(
            "SELECT 1 FROM events WHERE kind=? AND pubkey=? AND d=?", parsed
        ) or self._exists("SELECT 1 FROM held WHERE kind=? AND pubkey=? AND d=?", parsed)

    def has_served_coordinate(self, coordinate: str) -> bool:
        """A served (not held) replaceable/addressable event at `kind:pubkey:d`: only these
        anchor other events in the acceptance policy."""
        parsed = parse_coordinate(coordinate)
        return parsed is not None and self._exists(
            "SELECT 1 FROM events WHERE kind=? AND pubkey=? AND d=?", parsed)

    def is_referenced_by_served(self, event_id: str, coordinate: str | None) -> bool:
        """Does some served event point at this id (e/E/q) or coordinate (a/A/q)?"""
        return self._referenced(event_id, coordinate, ("tags",))

    def is_referenced(self, event_id: str, coordinate: str | None) -> bool:
        """Does some served or held event point at this id (e/E/q) or coordinate (a/A/q)?"""
        return self._referenced(event_id, coordinate, ("tags", "held_tags"))

    def _referenced(self, event_id: str, coordinate: str | None, tables: tuple[str, ...]) -> bool:
        wanted = [(name, event_id) for name in _ID_TAGS]
        if coordinate:
            wanted += [(name, coordinate) for name in _COORD_TAGS]
        for table in tables:
            for name, value in wanted:
                if self._exists(f"SELECT 1 FROM {table} WHERE name=? AND value=? LIMIT 1", (name, value)):
                    return True
        return False

    # --- purgatory bookkeeping -----------------------------------------------------------
    def held_for(self, identifier: str) -> list[HeldEntry]:
        """Purgatory entries of one identifier, oldest received first."""
        cached = self._held.get(identifier)
        if cached is None:
            cached = tuple(held_reads.held_entries(self._conn, identifier))
            self._held.put(identifier, cached, (entry.event.id for entry in cached))
        return list(cached)

    def held_entry(self, event_id: str) -> HeldEntry | None:
        return held_reads.held_entry(self._conn, event_id)

    def is_held(self, event_id: str) -> bool:
        return self._exists("SELECT 1 FROM held WHERE id=?", (event_id,))

    def is_expired(self, event_id: str) -> bool:
        """Was this id discarded from purgatory (so a synced copy must not be held again)?"""
        return held_reads.is_expired(self._conn, event_id)

    def placeholder(self, event_id: str) -> tuple[str, str] | None:
        return held_reads.placeholder(self._conn, event_id)

    # --- helpers -------------------------------------------------------------------------
    def _one(self, sql: str, params: tuple[object, ...]) -> Event | None:
        row = self._conn.execute(sql, params).fetchone()
        return stored_event(row[0]) if row else None

    def _exists(self, sql: str, params: tuple[object, ...]) -> bool:
        return self._conn.execute(sql, params).fetchone() is not None

    def _by_kind_d(self, kind: int, identifier: str) -> list[Event]:
        key = (kind, identifier)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._read_kind_d(kind, identifier)
            self._cache.put(key, cached, (event.id for event in cached))
        return list(cached)

    def _read_kind_d(self, kind: int, identifier: str) -> tuple[Event, ...]:
        # No ORDER BY in SQL: it would tempt the planner onto the (kind, created_at) index
        # and a walk over every announcement; the few rows are sorted here.
        events: dict[str, Event] = {}
        for table in ("events", "held"):
            rows = self._conn.execute(f"SELECT raw FROM {table} WHERE kind=? AND d=?", (kind, identifier))
            found = sorted((stored_event(raw) for (raw,) in rows), key=lambda e: (-e.created_at, e.id))
            for event in found:
                events.setdefault(event.id, event)
        return tuple(events.values())

    # --- keeping the cache exact ---------------------------------------------------------
    def forget_event(self, event: Event) -> None:
        """`event` was saved or held: its (kind, d) list changed. A deletion may remove any
        announcement, state or purgatory entry, so it empties both caches."""
        if event.kind == DELETION_KIND:
            self._cache.clear()
            self._held.clear()
        elif event.kind in (ANNOUNCEMENT_KIND, STATE_KIND):
            self._cache.forget((event.kind, event.d_tag))

    def forget_held(self, identifier: str) -> None:
        """An entry was held for this identifier."""
        self._held.forget(identifier)

    def forget_ids(self, event_ids: list[str]) -> None:
        """These events were released, discarded or replaced: drop every cached read that
        holds them (a release may also replace a served event of the same list)."""
        self._cache.forget_ids(event_ids)
        self._held.forget_ids(event_ids)
