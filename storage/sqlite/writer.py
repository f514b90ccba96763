"""The single writer: one asyncio task feeding one SQLite connection on one thread.

Callers queue an operation and await its future; the task takes everything queued (up to
`store_batch_max`), runs it on the writer thread inside ONE transaction, commits, and only
then resolves the futures. So a caller's `await` returning means the write is committed,
and the cost of a commit (and of the thread hop) is shared by the whole batch.

Why not aiosqlite's connection for this: its public API hops to its thread once per
statement, and a save is several dependent statements (look up, maybe remove, insert, tag
rows). Running the whole batch as one function on a dedicated thread costs one hop per
batch, which is what makes >10k events/s possible."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from storage.sqlite.records import StoreClosed, StoreError

log = structlog.get_logger(__name__)

WriteFn = Callable[..., Any]
#: told of every write of a batch (fn, args, ok, value) once it is committed or failed, before
#: any caller resumes: caches of what was read can then never be seen stale after a write
OnCommit = Callable[[WriteFn, tuple[Any, ...], bool, Any], None]


@dataclass(slots=True)
class _Op:
    fn: WriteFn
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Outcome:
    ok: bool
    value: Any


def run_batch(conn: sqlite3.Connection, calls: list[tuple[WriteFn, tuple[Any, ...]]]) -> list[_Outcome]:
    """Run every call in one transaction. If the batch fails, retry each call in its own
    transaction so that one bad write does not fail its neighbours (a full disk still fails
    them all)."""
    try:
        return _transaction(conn, calls)
    except Exception as exc:  # noqa: BLE001 - any failure must reach the callers, not kill the writer
        if len(calls) == 1:
            return [_Outcome(False, exc)]
    outcomes: list[_Outcome] = []
    for call in calls:
        try:
            outcomes += _transaction(conn, [call])
        except Exception as exc:  # noqa: BLE001
            outcomes.append(_Outcome(False, exc))
    return outcomes


def _transaction(conn: sqlite3.Connection, calls: list[tuple[WriteFn, tuple[Any, ...]]]) -> list[_Outcome]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        values = [fn(conn, *args) for fn, args in calls]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [_Outcome(True, v) for v in values]


class Writer:
    def __init__(self, conn: sqlite3.Connection, batch_max: int, on_commit: OnCommit | None = None) -> None:
        self._conn = conn
        self._on_commit = on_commit
        self._batch_max = batch_max
        self._pending: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")
        self.batches = 0
        self.writes = 0

    async def submit(self, fn: WriteFn, *args: Any) -> Any:
        """Queue one write; returns its value once committed, raises StoreError if not."""
        if self._closing:
            raise StoreClosed("store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(fn, args, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Flush what is queued, then stop the task and the thread."""
        self._closing = True
        self._wake.set()
        await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, _close_conn, self._conn)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._pending.popleft() for _ in range(min(self._batch_max, len(self._pending)))]
            calls = [(op.fn, op.args) for op in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, run_batch, self._conn, calls)
            except Exception as exc:  # noqa: BLE001 - the executor itself failed
                outcomes = [_Outcome(False, exc)] * len(batch)
            self.batches += 1
            self.writes += len(batch)
            self._tell(batch, outcomes)
            self._resolve(batch, outcomes)

    def _tell(self, batch: list[_Op], outcomes: list[_Outcome]) -> None:
        if self._on_commit is None:
            return
        for op, outcome in zip(batch, outcomes, strict=True):
            try:
                self._on_commit(op.fn, op.args, outcome.ok, outcome.value)
            except Exception:  # a hook must never keep callers from their answer
                log.exception("store on_commit hook failed", fn=getattr(op.fn, "__name__", "?"))

    @staticmethod
    def _resolve(batch: list[_Op], outcomes: list[_Outcome]) -> None:
        failures = 0
        for op, outcome in zip(batch, outcomes, strict=True):
            if op.future.done():  # the caller was cancelled; the write happened anyway
                continue
            if outcome.ok:
                op.future.set_result(outcome.value)
            else:
                failures += 1
                op.future.set_exception(_as_store_error(outcome.value))
        if failures:
            first = next(o.value for o in outcomes if not o.ok)
            log.error("store write failed", failed=failures, batch=len(batch), error=str(first))


def _as_store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    err = StoreError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _close_conn(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")  # keeps the planner's statistics fresh, cheaply
    except sqlite3.Error:
        pass
    conn.close()
