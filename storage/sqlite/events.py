"""The event store: served events, their tag index and the purgatory tables, in one SQLite
file (WAL). The public face of storage/schema, writer, write_ops, query, held and view.

Usage:
    store = await EventStore.open(settings.db_path, settings)
    result = await store.save(event)          # committed when this returns
    raws = await store.query_raw(filters, settings.default_limit)
    end = await store.stream_raw(filters, settings.default_limit, deliver, budget_s=0.5)  # clients
    store.view.has_event(event_id)            # synchronous lookups for the policy
    await store.close()

Writes go through one writer task (batched transactions, see writer.py); reads run on a
small pool of reader threads, each with its own read-only connection, so a long REQ never
blocks a write nor the event loop.

Why no aiosqlite (the design card listed it; it is not a dependency): writes need one thread
hop per batch, not per statement (writer.py), and the read lanes need what aiosqlite does
not give: a query budget and cancellation that interrupt the statement on its own thread
(reads.py), and streaming to a client in batches. Measured on bench_store.py's 100k events
(same SQL, same file, the lanes' time including the planner's probes): a 500-row `#a` query
took p50 0.76 ms on the lanes and 2.25 ms through one aiosqlite connection (8 at once: 10.1
vs 18.6 ms); small results were close (0.14 vs 0.24 ms alone, 1.3 vs 0.9 ms 8 at once)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from config.settings import Settings
from storage.nostr.event import Event, stored_event
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Items
from storage.sqlite import held as held_reads
from storage.sqlite import reads, write_ops
from storage.sqlite.query import select_raw
from storage.sqlite.reads import Deliver, QueryBudgetExceeded, QueryCancelled, StreamEnd
from storage.sqlite.records import HeldEntry, SaveResult, StoreClosed, StoreError
from storage.sqlite.schema import open_reader, open_writer
from storage.sqlite.view import StoreView
from storage.sqlite.writer import Writer

__all__ = ["EventStore", "HeldEntry", "QueryBudgetExceeded", "QueryCancelled", "SaveResult", "StoreClosed",
           "StoreError", "StoreView", "StreamEnd"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


class _Readers:
    """A thread pool whose threads each own one read-only connection."""

    def __init__(self, path: Path, threads: int, name: str = "store-reader") -> None:
        self._path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self._path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        def call() -> T:
            return fn(self._conn(), *args)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


def _fetch_column(conn: sqlite3.Connection, sql: str, params: list[object]) -> list[Any]:
    return [row[0] for row in conn.execute(sql, params)]


def _fetch_planned(conn: sqlite3.Connection, filters: list[Filter], default_limit: int) -> list[str]:
    built = select_raw(filters, default_limit, lambda sql, params: conn.execute(sql, params).fetchall())
    return [] if built is None else _fetch_column(conn, *built)


class EventStore:
    def __init__(self, path: Path, writer: Writer, readers: _Readers, view: StoreView,
                 background: _Readers | None = None) -> None:
        self.path = path
        self._writer = writer
        self._readers = readers
        # The purgatory's reads (held entries, several per sync step) have their own lane:
        # when a throttle window opens, hundreds of them must not queue ahead of clients' REQs.
        self._background = background or readers
        self.view: StoreView = view
        """Synchronous read-only lookups (served and held) for code on the event loop."""
        self._guards: set[reads.Guard] = set()  # client reads under way, stopped by close()

    @classmethod
    async def open(cls, path: Path, settings: Settings) -> EventStore:
        """Open (creating directory and schema if needed) the database at `path`."""
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(None, open_writer, path, settings.store_synchronous)
        view = StoreView(path, settings.store_view_cache_entries)
        writer = Writer(conn, settings.store_batch_max, on_commit=_forgetter(view))
        readers = _Readers(path, settings.store_read_threads)
        background = _Readers(path, settings.store_background_read_threads, "store-bg-reader")
        store = cls(path, writer, readers, view, background)
        log.info("event store open", path=str(path), synchronous=settings.store_synchronous)
        return store

    async def close(self) -> None:
        """Commit everything queued, then close the writer, the readers and the view."""
        for guard in list(self._guards):  # a streaming read may be waiting for this loop
            guard.interrupt()
        await self._writer.close()
        self._readers.close()
        if self._background is not self._readers:
            self._background.close()
        self.view.close()
        log.info("event store closed", path=str(self.path))

    # --- served events -------------------------------------------------------------------
    async def save(self, event: Event) -> SaveResult:
        """Store an event with NIP-01/NIP-09 semantics; returns once committed. Ephemeral
        events are not stored (status "ephemeral"; the caller broadcasts them)."""
        if event.is_ephemeral:
            return SaveResult.of("ephemeral")
        result: SaveResult = await self._writer.submit(write_ops.save_event, event)
        return result

    async def query_raw(self, filters: list[Filter], default_limit: int) -> list[str]:
        """The stored JSON text of the events matching any filter, newest first. For the
        relay's own reads (no budget, whole list); clients' REQs use `stream_raw`."""
        return await self._readers.run(_fetch_planned, filters, default_limit)

    async def query(self, filters: list[Filter], default_limit: int) -> list[Event]:
        return [stored_event(raw) for raw in await self.query_raw(filters, default_limit)]

    async def stream_raw(self, filters: list[Filter], default_limit: int, deliver: Deliver,
                         budget_s: float | None = None) -> StreamEnd:
        """A client's REQ: the stored JSON of the matching events, newest first, handed to
        `deliver` (on the event loop) in batches while SQLite reads them (storage/sqlite/reads.py).
        "done": all delivered; "stopped": `deliver` refused a batch (nothing after it is
        delivered) or the store is closing; "budget": interrupted after `budget_s` of wall
        time on the reader (what was delivered until then stays delivered)."""
        async with self._guarded(budget_s) as guard:
            return await self._readers.run(reads.stream, guard, filters, default_limit, deliver)

    async def count(self, filters: list[Filter], budget_s: float | None = None) -> int:
        """NIP-45: distinct events matching any filter (limits ignored). Raises
        QueryBudgetExceeded after `budget_s` of wall time on the reader."""
        async with self._guarded(budget_s) as guard:
            return await self._readers.run(reads.count, guard, filters)

    async def negentropy_items(self, filters: list[Filter], max_records: int,
                               budget_s: float | None = None) -> Items | None:
        """NIP-77: the sorted (created_at, id) items of the served events matching `filters`
        (held events never take part); None when more than `max_records` match. Raises
        QueryBudgetExceeded after `budget_s` of wall time on the reader."""
        async with self._guarded(budget_s) as guard:
            return await self._readers.run(reads.negentropy_items, guard, filters, max_records)

    @contextlib.asynccontextmanager
    async def _guarded(self, budget_s: float | None) -> AsyncIterator[reads.Guard]:
        guard = reads.Guard(asyncio.get_running_loop(), budget_s)
        self._guards.add(guard)
        try:
            yield guard
        except asyncio.CancelledError:  # the caller went away: free the reader too
            guard.interrupt()
            raise
        finally:
            guard.disarm()
            self._guards.discard(guard)

    async def remove_orphans(self, event_ids: list[str]) -> list[str]:
        """Drop served events that nothing served anchors any more (after a deletion)."""
        removed: list[str] = await self._writer.submit(write_ops.remove_orphans, list(event_ids))
        return removed

    # --- purgatory -----------------------------------------------------------------------
    async def hold(self, event: Event, identifier: str, expires_at: float, source: str) -> bool:
        """Put an event in purgatory (committed on return). False if it is already held."""
        held: bool = await self._writer.submit(
            write_ops.hold, event, identifier, time.time(), expires_at, source
        )
        return held

    async def release(self, event_ids: list[str]) -> list[SaveResult]:
        """Move held events to the served store in one transaction, in the given order, with
        the save semantics; an id that is not held gets status "missing"."""
        results: list[SaveResult] = await self._writer.submit(write_ops.release, list(event_ids))
        return results

    async def discard(self, event_ids: list[str], reason: str) -> None:
        """Drop held entries and remember their ids as expired (`is_expired`)."""
        await self._writer.submit(write_ops.discard, list(event_ids), reason, time.time())

    async def forget_expired(self, before: float) -> int:
        """Stop remembering ids that expired before `before`: the memory keeps a dead event
        from cycling through the purgatory again, but must not grow forever."""
        forgotten: int = await self._writer.submit(write_ops.forget_expired, before)
        return forgotten

    async def held(self, identifier: str | None = None) -> list[HeldEntry]:
        """Purgatory entries (of one identifier: from the view's cache, no thread hop)."""
        if identifier is not None:
            return self.view.held_for(identifier)
        return await self._background.run(held_reads.held_entries, identifier)

    async def held_identifiers(self) -> list[str]:
        return await self._background.run(held_reads.held_identifiers)

    async def is_expired(self, event_id: str) -> bool:
        return await self._background.run(held_reads.is_expired, event_id)

    async def expired_due(self, now: float) -> list[HeldEntry]:
        return await self._background.run(held_reads.expired_due, now)

    async def held_counts(self) -> dict[int, int]:
        return await self._background.run(held_reads.held_counts)

    async def add_placeholder(self, event_id: str, repo: str, tip: str, expires_at: float) -> None:
        """A PR ref pushed before its event: removed at `expires_at` unless the event comes."""
        await self._writer.submit(write_ops.add_placeholder, event_id, repo, tip, expires_at)

    async def placeholders_due(self, now: float) -> list[tuple[str, str, str]]:
        return await self._background.run(held_reads.placeholders_due, now)

    async def placeholder(self, event_id: str) -> tuple[str, str] | None:
        return await self._background.run(held_reads.placeholder, event_id)

    async def remove_placeholder(self, event_id: str) -> None:
        await self._writer.submit(write_ops.remove_placeholder, event_id)

    # --- introspection -------------------------------------------------------------------
    @property
    def write_stats(self) -> tuple[int, int]:
        """(transactions committed or failed, writes in them), for metrics and benches."""
        return self._writer.batches, self._writer.writes


def _forgetter(view: StoreView) -> Callable[[Any, tuple[Any, ...], bool, Any], None]:
    """What each kind of write makes the view forget; run by the writer after the commit and
    before any caller resumes. A failed write forgets too: forgetting is always safe."""

    def forget(fn: Any, args: tuple[Any, ...], ok: bool, value: Any) -> None:
        if fn is write_ops.save_event:
            view.forget_event(args[0])
            if ok:
                view.forget_ids(value.removed_ids + value.removed_held)
        elif fn is write_ops.hold:
            view.forget_event(args[0])
            view.forget_held(args[1])
        elif fn is write_ops.remove_orphans:
            view.forget_ids(args[0])
        elif fn in (write_ops.release, write_ops.discard):
            view.forget_ids(args[0])
            for result in value if ok and fn is write_ops.release else ():
                view.forget_ids(result.removed_ids + result.removed_held)

    return forget
