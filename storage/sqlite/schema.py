"""SQLite schema and connection setup for the event store.

Durability: the database runs in WAL mode with `synchronous=NORMAL`. In WAL mode a COMMIT
has written the transaction's frames to the WAL file (a `write()` into the OS) before it
returns, so a committed transaction survives the process being killed (`kill -9`, OOM,
crash): the kernel still holds the pages and the next open replays the WAL. What NORMAL
gives up is the fsync per commit, i.e. the last transactions may be lost on power loss or a
kernel crash. That trade buys several times the write throughput; operators who need
power-loss durability set `GRASP_STORE_SYNCHRONOUS=FULL`.

Layout, and why:
- Indexes are what NIP-01 queries need and no more (each one is a random write per event):
  id, (pubkey, kind, created_at), (kind, created_at), created_at, and the replacement key.
- `events.seq` is an integer primary key so the secondary indexes and the tag table point at
  a small integer, not at the 64-character id; `events.id` has its own unique index.
- `events.d` is the replacement key: `''` for replaceable kinds, the `d` tag for addressable
  kinds, NULL otherwise, so "the stored copy of this coordinate" is one index probe.
- `tags` holds the first value of every single-letter tag (the only tags NIP-01 filters can
  name), with the event's created_at copied in so a `#x` query walks (name, value, created_at)
  in order and stops at its limit without touching the events it skips. The event's kind is
  copied too (schema 2): `#t bug` + `kinds` walks (name, value, kind, created_at) instead of
  every row of `#t bug` (on 1M events, 2 s to return nothing), and a COUNT of a tag (with or
  without kinds) is answered from that index alone, without reading the events.
- `raw` is the canonical JSON text, sent to clients as is.
- The purgatory (`held`, `held_tags`, `expired`, `placeholders`) lives in the same file so a
  release (held -> served) is one transaction.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL,
    pubkey     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    d          TEXT,
    raw        TEXT    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id);
CREATE INDEX IF NOT EXISTS events_author_kind ON events(pubkey, kind, created_at);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, created_at);
CREATE INDEX IF NOT EXISTS events_created ON events(created_at);
CREATE INDEX IF NOT EXISTS events_coord ON events(kind, pubkey, d) WHERE d IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_kind_d ON events(kind, d) WHERE d IS NOT NULL;

CREATE TABLE IF NOT EXISTS tags (
    event_seq  INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    kind       INTEGER
);
CREATE INDEX IF NOT EXISTS tags_lookup ON tags(name, value, created_at);
CREATE INDEX IF NOT EXISTS tags_kind ON tags(name, value, kind, created_at);
CREATE INDEX IF NOT EXISTS tags_event ON tags(event_seq);

-- NIP-09 tombstones: ids an author deleted (refused if they arrive later) and coordinates
-- deleted up to a created_at.
CREATE TABLE IF NOT EXISTS deleted_ids (
    id     TEXT NOT NULL,
    pubkey TEXT NOT NULL,
    PRIMARY KEY (id, pubkey)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deleted_coords (
    kind   INTEGER NOT NULL,
    pubkey TEXT    NOT NULL,
    d      TEXT    NOT NULL,
    until  INTEGER NOT NULL,
    PRIMARY KEY (kind, pubkey, d)
) WITHOUT ROWID;

-- Purgatory: events waiting for their git data.
CREATE TABLE IF NOT EXISTS held (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    pubkey      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    d           TEXT,
    identifier  TEXT    NOT NULL,
    owner_hint  TEXT,
    received_at REAL    NOT NULL,
    expires_at  REAL    NOT NULL,
    source      TEXT    NOT NULL,
    raw         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS held_identifier ON held(identifier);
CREATE INDEX IF NOT EXISTS held_expires ON held(expires_at);
CREATE INDEX IF NOT EXISTS held_coord ON held(kind, pubkey, d);
CREATE INDEX IF NOT EXISTS held_kind_d ON held(kind, d);

CREATE TABLE IF NOT EXISTS held_tags (
    held_seq INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS held_tags_lookup ON held_tags(name, value);
CREATE INDEX IF NOT EXISTS held_tags_held ON held_tags(held_seq);

CREATE TABLE IF NOT EXISTS expired (
    id         TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    expired_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expired_when ON expired(expired_at);

CREATE TABLE IF NOT EXISTS placeholders (
    event_id   TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    tip        TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS placeholders_expires ON placeholders(expires_at);
"""


def open_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """The one connection that writes. Autocommit mode: the writer issues BEGIN/COMMIT itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={_sync_mode(synchronous)}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-32768")
    # Checkpoint every ~64 MB of WAL rather than every 4 MB: a checkpoint rewrites (and
    # fsyncs) each changed page once, so batching them lets many commits share the cost.
    conn.execute("PRAGMA wal_autocheckpoint=16000")
    conn.execute("PRAGMA journal_size_limit=67108864")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(f"database schema {version} is newer than this program ({SCHEMA_VERSION})")
    migrate(conn)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to this schema, in place and in one
    transaction (a crash midway leaves the old schema, and the next start tries again).

    Decided by the columns present rather than by `user_version` alone, so a file is judged
    by what it holds. 1 -> 2: `tags.kind`, filled from `events`, then its index (built by
    SCHEMA). Measured on 1M events (3.6M tag rows): see bench/README.md."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "tags" not in tables:
        return  # a new file: SCHEMA creates everything
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tags)")}
    if "kind" in columns:
        return
    started = time.monotonic()
    log.warning("store_migration_started", step="tags.kind", note="once per store; may take a while")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE tags ADD COLUMN kind INTEGER")
        conn.execute("UPDATE tags SET kind = (SELECT kind FROM events WHERE events.seq = tags.event_seq)")
        conn.execute("CREATE INDEX tags_kind ON tags(name, value, kind, created_at)")
        conn.execute("PRAGMA user_version=2")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    log.warning("store_migration_done", step="tags.kind", seconds=round(time.monotonic() - started, 1))


def open_reader(path: Path, *, same_thread: bool = False) -> sqlite3.Connection:
    """A read-only connection; in WAL mode it never blocks the writer nor is blocked by it.
    Each statement outside a transaction reads the latest committed snapshot."""
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=same_thread
    )
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16384")
    return conn


def _sync_mode(value: str) -> str:
    mode = value.upper()
    if mode not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"unsupported synchronous mode {value!r}")
    return mode
