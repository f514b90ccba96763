"""The write operations, as plain functions on a sqlite3 connection inside a transaction.

They run on the writer thread, many in one transaction (see writer.py). Each one only
touches the database, so a failed batch can be rolled back and retried one by one."""

from __future__ import annotations

import sqlite3

from storage.nostr.event import Event, is_hex
from storage.nostr.nip34 import DELETION as DELETION_KIND
from storage.nostr.nip34 import parse_coordinate
from storage.sqlite.records import SaveResult


def replace_key(event: Event) -> str | None:
    """The `events.d` column: `''` for replaceable kinds, the d tag for addressable, else NULL."""
    if event.is_addressable:
        return event.d_tag
    if event.is_replaceable:
        return ""
    return None


def index_tags(event: Event) -> list[tuple[str, str]]:
    """(name, first value) of every single-letter tag, without repeats."""
    seen: dict[tuple[str, str], None] = {}
    for tag in event.tags:
        if len(tag) > 1 and len(tag[0]) == 1:
            seen[(tag[0], tag[1])] = None
    return list(seen)


def _newer(a_created: int, a_id: str, b_created: int, b_id: str) -> bool:
    """Is version a preferred over b? Newest wins; a tie goes to the lowest id."""
    return a_created > b_created or (a_created == b_created and a_id < b_id)


# --- served events ---------------------------------------------------------------------

def save_event(conn: sqlite3.Connection, event: Event) -> SaveResult:
    if event.kind != DELETION_KIND and _tombstoned(conn, event):
        if _has(conn, event.id):
            return SaveResult.of("duplicate")
        return SaveResult.of("deleted")
    key = replace_key(event)
    removed: list[str] = []
    if key is not None:
        if _has(conn, event.id):
            return SaveResult.of("duplicate")
        rows = conn.execute(
            "SELECT seq, id, created_at FROM events WHERE kind=? AND pubkey=? AND d=?",
            (event.kind, event.pubkey, key),
        ).fetchall()
        for _, other_id, other_created in rows:
            if not _newer(event.created_at, event.id, other_created, other_id):
                return SaveResult.of("older")
        for seq, other_id, _ in rows:
            _remove_event(conn, seq)
            removed.append(other_id)
    if not _insert(conn, event, key):
        return SaveResult.of("duplicate")
    if event.kind == DELETION_KIND:
        deleted, deleted_held = apply_deletion(conn, event)
        return SaveResult.of("saved", deleted, deleted_held)
    return SaveResult.of("replaced" if removed else "saved", removed)


def _has(conn: sqlite3.Connection, event_id: str) -> bool:
    return conn.execute("SELECT 1 FROM events WHERE id=?", (event_id,)).fetchone() is not None


def _tombstoned(conn: sqlite3.Connection, event: Event) -> bool:
    if conn.execute(
        "SELECT 1 FROM deleted_ids WHERE id=? AND pubkey=?", (event.id, event.pubkey)
    ).fetchone():
        return True
    key = replace_key(event)
    if key is None:
        return False
    row = conn.execute(
        "SELECT until FROM deleted_coords WHERE kind=? AND pubkey=? AND d=?",
        (event.kind, event.pubkey, key),
    ).fetchone()
    return row is not None and event.created_at <= row[0]


def _insert(conn: sqlite3.Connection, event: Event, key: str | None) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO events(id, pubkey, created_at, kind, d, raw) VALUES (?,?,?,?,?,?)",
        (event.id, event.pubkey, event.created_at, event.kind, key, event.to_json()),
    )
    if cur.rowcount == 0:
        return False
    seq = cur.lastrowid
    tags = index_tags(event)
    if tags:
        conn.executemany(
            "INSERT INTO tags(event_seq, name, value, created_at, kind) VALUES (?,?,?,?,?)",
            [(seq, name, value, event.created_at, event.kind) for name, value in tags],
        )
    return True


def _remove_event(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("DELETE FROM tags WHERE event_seq=?", (seq,))
    conn.execute("DELETE FROM events WHERE seq=?", (seq,))


# --- NIP-09 ------------------------------------------------------------------------------

def apply_deletion(conn: sqlite3.Connection, deletion: Event) -> tuple[list[str], list[str]]:
    """Remove what a kind 5 names, of its own author only, never kind 5 events; remember
    the targets so a later copy is refused. Returns (served ids removed, held ids removed)."""
    served: list[str] = []
    held: list[str] = []
    author = deletion.pubkey
    for target in dict.fromkeys(deletion.tag_values("e")):
        if not is_hex(target, 64):
            continue
        conn.execute("INSERT OR IGNORE INTO deleted_ids(id, pubkey) VALUES (?,?)", (target, author))
        where, params = "id=? AND pubkey=? AND kind!=5", (target, author)
        served += _remove_where(conn, where, params)
        held += _remove_held_where(conn, where, params)
    for coordinate in dict.fromkeys(deletion.tag_values("a")):
        parsed = parse_coordinate(coordinate)
        if parsed is None or parsed[1] != author or parsed[0] == DELETION_KIND:
            continue
        kind, _, d = parsed
        conn.execute(
            "INSERT INTO deleted_coords(kind, pubkey, d, until) VALUES (?,?,?,?) "
            "ON CONFLICT(kind, pubkey, d) DO UPDATE SET until=max(until, excluded.until)",
            (kind, author, d, deletion.created_at),
        )
        # `+created_at`: keep the planner on the (kind, pubkey, d) index, not a created_at range
        where = "kind=? AND pubkey=? AND d=? AND +created_at<=?"
        params2 = (kind, author, d, deletion.created_at)
        served += _remove_where(conn, where, params2)
        held += _remove_held_where(conn, where, params2)
    return served, held


def remove_orphans(conn: sqlite3.Connection, event_ids: list[str]) -> list[str]:
    """Remove served events that lost the anchor they were stored for (the policy decided
    which); returns the ids removed. Not tombstoned: the event may come back once its
    repository is announced again."""
    removed: list[str] = []
    for event_id in dict.fromkeys(event_ids):
        removed += _remove_where(conn, "id=? AND kind!=5", (event_id,))
    return removed


def _remove_where(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[str]:
    rows = conn.execute(f"SELECT seq, id FROM events WHERE {where}", params).fetchall()
    for seq, _ in rows:
        _remove_event(conn, seq)
    return [event_id for _, event_id in rows]


# --- purgatory ---------------------------------------------------------------------------

def hold(
    conn: sqlite3.Connection,
    event: Event,
    identifier: str,
    received_at: float,
    expires_at: float,
    source: str,
) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO held(id, pubkey, created_at, kind, d, identifier, "
        "received_at, expires_at, source, raw) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            event.id, event.pubkey, event.created_at, event.kind, replace_key(event), identifier,
            received_at, expires_at, source, event.to_json(),
        ),
    )
    if cur.rowcount == 0:
        return False
    seq = cur.lastrowid
    conn.executemany(
        "INSERT INTO held_tags(held_seq, name, value) VALUES (?,?,?)",
        [(seq, name, value) for name, value in index_tags(event)],
    )
    return True


def release(conn: sqlite3.Connection, event_ids: list[str]) -> list[SaveResult]:
    """Move held events into the served store, in order, with the usual save semantics."""
    results: list[SaveResult] = []
    for event_id in event_ids:
        row = conn.execute("SELECT seq, raw FROM held WHERE id=?", (event_id,)).fetchone()
        if row is None:
            results.append(SaveResult.of("missing"))
            continue
        _remove_held(conn, row[0])
        results.append(save_event(conn, Event.from_json(row[1])))
    return results


def discard(conn: sqlite3.Connection, event_ids: list[str], reason: str, now: float) -> None:
    for event_id in event_ids:
        _remove_held_where(conn, "id=?", (event_id,))
        conn.execute(
            "INSERT OR REPLACE INTO expired(id, reason, expired_at) VALUES (?,?,?)",
            (event_id, reason, now),
        )


def forget_expired(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM expired WHERE expired_at < ?", (before,)).rowcount


def _remove_held(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("DELETE FROM held_tags WHERE held_seq=?", (seq,))
    conn.execute("DELETE FROM held WHERE seq=?", (seq,))


def _remove_held_where(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[str]:
    rows = conn.execute(f"SELECT seq, id FROM held WHERE {where}", params).fetchall()
    for seq, _ in rows:
        _remove_held(conn, seq)
    return [event_id for _, event_id in rows]


def add_placeholder(conn: sqlite3.Connection, event_id: str, repo: str, tip: str, expires_at: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO placeholders(event_id, repo, tip, expires_at) VALUES (?,?,?,?)",
        (event_id, repo, tip, expires_at),
    )


def remove_placeholder(conn: sqlite3.Connection, event_id: str) -> None:
    conn.execute("DELETE FROM placeholders WHERE event_id=?", (event_id,))
