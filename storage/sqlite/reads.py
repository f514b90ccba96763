"""Client reads (REQ and COUNT) on a reader thread: planned against the store, bounded in
time, and streamed to the event loop in batches.

Why streamed: a REQ may match 5,000 events of up to 256 kB each per filter; built as one list
that is a gigabyte in the reader thread before anyone could refuse it. Rows are handed over
STREAM_BATCH at a time to a callback on the event loop (the connection's outbox), which may
refuse more (the client does not read); the thread then stops reading. At most two batches
exist at once, one being fetched and one being queued.

Why a time budget: one scanning REQ holds one of the few reader threads for as long as it
runs, and every other client's REQs queue behind it. A query gets `budget_s` of wall time
from its first statement (planning probes included); then the event loop calls
`sqlite3.Connection.interrupt()`, which costs nothing while the query runs (a progress
handler would take the GIL every N steps, slowing exactly the queries that are big).
Interrupting is scoped to the one query: the guard holds the connection only while that
query runs, and SQLite resets a stray interrupt when the next statement starts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from storage.nostr.filters import Filter
from storage.nostr.negentropy import Items
from storage.sqlite.query import select_count, select_keys, select_raw

STREAM_BATCH = 64
_POLL_S = 0.05  # how often a thread waiting for the loop checks whether it was cancelled

StreamEnd = Literal["done", "stopped", "budget"]
#: Called on the event loop with each batch of raw event JSON; False stops the stream.
Deliver = Callable[[list[str]], bool]


class QueryBudgetExceeded(Exception):
    """The query ran past its budget and was interrupted; nothing of it is kept."""


class QueryCancelled(Exception):
    """The query was stopped from outside (the store is closing)."""


@dataclass(eq=False)
class Guard:
    """One query's link between its reader thread and the event loop."""

    loop: asyncio.AbstractEventLoop
    budget_s: float | None
    reason: str | None = None  # why it was interrupted: "budget" or "cancelled"
    _conn: sqlite3.Connection | None = None
    _timer: asyncio.TimerHandle | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: bool = False

    # --- reader thread -------------------------------------------------------------------
    def enter(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._conn = conn
            if self.reason is not None:  # cancelled while it waited for a thread
                conn.interrupt()
        if self.budget_s is not None:
            self.loop.call_soon_threadsafe(self._arm)

    def leave(self) -> None:
        with self._lock:
            self._conn = None
            self._done = True

    # --- event loop ----------------------------------------------------------------------
    def _arm(self) -> None:
        if not self._done and self.budget_s is not None:
            self._timer = self.loop.call_later(self.budget_s, self.interrupt, "budget")

    def interrupt(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._done or self.reason is not None:
                return
            self.reason = reason
            if self._conn is not None:
                self._conn.interrupt()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def cancelled(self) -> bool:
        return self.reason == "cancelled"


def _runner(conn: sqlite3.Connection) -> Callable[[str, list[object]], Sequence[tuple[object, ...]]]:
    return lambda sql, params: conn.execute(sql, params).fetchall()


def _interrupted(guard: Guard, exc: sqlite3.OperationalError) -> Exception:
    if guard.reason == "budget":
        return QueryBudgetExceeded(str(exc))
    if guard.reason is not None:
        return QueryCancelled(str(exc))
    return exc


def stream(conn: sqlite3.Connection, guard: Guard, filters: list[Filter], default_limit: int,
           deliver: Deliver) -> StreamEnd:
    """Runs on a reader thread: plan, execute, hand the rows over batch by batch."""
    guard.enter(conn)
    pending: concurrent.futures.Future[bool] | None = None
    try:
        built = select_raw(filters, default_limit, _runner(conn))
        if built is None:
            return "done"
        cursor = conn.execute(*built)
        while True:
            rows = cursor.fetchmany(STREAM_BATCH)
            if pending is not None and not _wait(pending, guard):
                cursor.close()
                return "budget" if guard.reason == "budget" else "stopped"
            if not rows:
                return "done"
            pending = _hand_over(guard.loop, deliver, [row[0] for row in rows])
    except sqlite3.OperationalError:
        if guard.reason == "budget":
            return "budget"
        if guard.reason is not None:
            return "stopped"
        raise
    finally:
        guard.leave()


def count(conn: sqlite3.Connection, guard: Guard, filters: list[Filter]) -> int:
    guard.enter(conn)
    try:
        built = select_count(filters, _runner(conn))
        if built is None:
            return 0
        return int(conn.execute(*built).fetchone()[0])
    except sqlite3.OperationalError as exc:
        raise _interrupted(guard, exc) from None
    finally:
        guard.leave()


def negentropy_items(conn: sqlite3.Connection, guard: Guard, filters: list[Filter], max_records: int) -> Items | None:
    """The (created_at, id) items of the served events matching `filters`, sorted for a
    NIP-77 session, built here on the reader thread so the event loop only gets the packed
    result; None when more than `max_records` match (the relay refuses such a session)."""
    guard.enter(conn)
    try:
        built = select_keys(filters, max_records + 1, _runner(conn))
        rows = [] if built is None else conn.execute(*built).fetchall()
    except sqlite3.OperationalError as exc:
        raise _interrupted(guard, exc) from None
    finally:
        guard.leave()
    if len(rows) > max_records:
        return None
    return Items.from_pairs(rows)


def _hand_over(loop: asyncio.AbstractEventLoop, deliver: Deliver, batch: list[str]) -> concurrent.futures.Future[bool]:
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def on_loop() -> None:
        if future.cancelled():
            return
        try:
            future.set_result(bool(deliver(batch)))
        except BaseException as exc:  # noqa: BLE001 - handed to the thread, which stops the stream
            future.set_exception(exc)

    loop.call_soon_threadsafe(on_loop)
    return future


def _wait(future: concurrent.futures.Future[bool], guard: Guard) -> bool:
    """The loop's verdict on the previous batch; False if it refused more or the query was
    cancelled meanwhile (a closing store must not wait for a loop that waits for it)."""
    while True:
        try:
            return future.result(timeout=_POLL_S) and guard.reason is None
        except concurrent.futures.TimeoutError:
            if guard.reason is not None:
                future.cancel()
                return False
