"""Reads of the purgatory tables, as plain functions on a sqlite3 connection.

Shared by the synchronous `StoreView` (event loop thread) and the async `EventStore`
methods (reader threads), so both see the same rows the same way."""

from __future__ import annotations

import sqlite3

from storage.nostr.event import stored_event
from storage.sqlite.records import HeldEntry

_COLUMNS = "raw, identifier, received_at, expires_at, source"


def _entry(row: tuple[str, str, float, float, str]) -> HeldEntry:
    raw, identifier, received_at, expires_at, source = row
    return HeldEntry(stored_event(raw), identifier, received_at, expires_at, source)


def held_entries(conn: sqlite3.Connection, identifier: str | None = None) -> list[HeldEntry]:
    """Held entries, oldest received first."""
    if identifier is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM held ORDER BY received_at, seq").fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM held WHERE identifier=? ORDER BY received_at, seq", (identifier,)
        ).fetchall()
    return [_entry(r) for r in rows]


def held_entry(conn: sqlite3.Connection, event_id: str) -> HeldEntry | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM held WHERE id=?", (event_id,)).fetchone()
    return _entry(row) if row else None


def held_identifiers(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT identifier FROM held ORDER BY identifier")]


def expired_due(conn: sqlite3.Connection, now: float) -> list[HeldEntry]:
    """Held entries whose expiry time has passed, the earliest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM held WHERE expires_at <= ? ORDER BY expires_at, seq", (now,)
    ).fetchall()
    return [_entry(r) for r in rows]


def held_counts(conn: sqlite3.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT kind, count(*) FROM held GROUP BY kind").fetchall())


def is_expired(conn: sqlite3.Connection, event_id: str) -> bool:
    return conn.execute("SELECT 1 FROM expired WHERE id=?", (event_id,)).fetchone() is not None


def placeholders_due(conn: sqlite3.Connection, now: float) -> list[tuple[str, str, str]]:
    """(event id, repo, tip) of PR refs pushed before their event, whose event never came."""
    return conn.execute(
        "SELECT event_id, repo, tip FROM placeholders WHERE expires_at <= ?", (now,)
    ).fetchall()


def placeholder(conn: sqlite3.Connection, event_id: str) -> tuple[str, str] | None:
    row = conn.execute("SELECT repo, tip FROM placeholders WHERE event_id=?", (event_id,)).fetchone()
    return (row[0], row[1]) if row else None
