"""NIP-77 on one websocket connection: the open negentropy sessions (`NegSessions`, sans-IO:
values in, frames out) and the small asyncio part that reads a NEG-OPEN's items from the
store and keeps the idle timer (`ConnectionNegentropy`).

Why the bounds: a session keeps its sorted items (40 bytes each, storage/nostr/negentropy.py)
for as long as the client keeps talking, so what one connection and the relay as a whole may
hold is capped: records per session, sessions per connection, records across all sessions
(`NegentropyBudget`, shared by every connection), and an idle time after which a session is
closed and its memory returned. Only served events are read; held ones never take part."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from relay.nostr import protocol
from relay.nostr.protocol import NegClose, Negentropy, NegMsg, NegOpen
from relay.ratelimit import Window
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Items, NegentropyError, check, respond
from storage.sqlite.reads import QueryBudgetExceeded

log = structlog.get_logger(__name__)


class NegentropyReads(Protocol):
    async def negentropy_items(self, filters: list[Filter], max_records: int,
                               budget_s: float | None = None) -> Items | None: ...


@dataclass
class NegentropyBudget:
    """Items kept by every open session of the relay together."""

    used: int = 0

    def take(self, count: int, limit: int) -> bool:
        if self.used + count > limit:
            return False
        self.used += count
        return True

    def give(self, count: int) -> None:
        self.used = max(0, self.used - count)


@dataclass(frozen=True, slots=True)
class NegLimits:
    max_sessions: int
    max_records: int
    total_max_records: int
    frame_max_bytes: int
    idle_s: float
    query_budget_s: float

    @classmethod
    def from_settings(cls, settings: object) -> NegLimits:
        return cls(**{name: getattr(settings, f"negentropy_{name}") for name in cls.__dataclass_fields__})


@dataclass
class _Open:
    items: Items
    last_active: float


@dataclass
class NegSessions:
    """The negentropy sessions of one connection, by subscription id."""

    limits: NegLimits
    budget: NegentropyBudget
    open: dict[str, _Open] = field(default_factory=dict)

    def refusal(self, sub_id: str) -> str | None:
        """Why a NEG-OPEN cannot be served before its items are read (None: it can). A
        NEG-OPEN with the id of an open session replaces it (NIP-77), so it is closed first."""
        self.close(sub_id)
        if len(self.open) >= self.limits.max_sessions:
            return protocol.neg_err(sub_id, f"blocked: too many negentropy sessions open on this connection "
                                            f"(max {self.limits.max_sessions}); NEG-CLOSE one first")
        return None

    def start(self, sub_id: str, items: Items | None, message: bytes, now: float) -> str:
        if items is None:
            return protocol.neg_err(sub_id, f"blocked: too many records (more than {self.limits.max_records} "
                                            "served events match this filter); narrow it")
        if not self.budget.take(len(items), self.limits.total_max_records):
            return protocol.neg_err(sub_id, "blocked: the relay is reconciling too many records at once; "
                                            "try again later")
        self.open[sub_id] = _Open(items, now)
        return self.message(sub_id, message, now)

    def message(self, sub_id: str, message: bytes, now: float) -> str:
        session = self.open.get(sub_id)
        if session is None:
            return protocol.neg_err(sub_id, "closed: no negentropy session is open with this id")
        try:
            reply = respond(session.items, message, self.limits.frame_max_bytes)
        except NegentropyError as exc:  # NIP-77: after NEG-ERR the session is closed
            self.close(sub_id)
            return protocol.neg_err(sub_id, f"invalid: {exc}")
        session.last_active = now
        return protocol.neg_msg(sub_id, reply)

    def close(self, sub_id: str) -> None:
        session = self.open.pop(sub_id, None)
        if session is not None:
            self.budget.give(len(session.items))

    def close_all(self) -> None:
        for sub_id in list(self.open):
            self.close(sub_id)

    def expire(self, now: float) -> list[str]:
        """Close the sessions idle for `idle_s`; their NEG-ERR frames."""
        idle = [sub_id for sub_id, s in self.open.items() if now - s.last_active >= self.limits.idle_s]
        for sub_id in idle:
            self.close(sub_id)
        return [protocol.neg_err(sub_id, f"closed: no NEG-MSG for {self.limits.idle_s:g} seconds") for sub_id in idle]

    def next_expiry(self) -> float | None:
        if not self.open:
            return None
        return min(s.last_active for s in self.open.values()) + self.limits.idle_s


class ConnectionNegentropy:
    """The NEG-* requests of one connection: `send` queues a frame, the store reads the
    items, and a NEG-OPEN counts in the connection's REQ rate `window` (it is a query)."""

    def __init__(self, sessions: NegSessions, store: NegentropyReads, send: Callable[[str], None],
                 window: Window, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self._store = store
        self._send = send
        self._window = window
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None

    async def handle(self, request: Negentropy) -> None:
        if isinstance(request, NegOpen):
            await self._open(request)
        elif isinstance(request, NegMsg):
            self._send(self.sessions.message(request.sub_id, request.message, self._clock()))
        elif isinstance(request, NegClose):
            self.sessions.close(request.sub_id)
        self._arm()

    async def _open(self, request: NegOpen) -> None:
        sub_id = request.sub_id
        refusal = self.sessions.refusal(sub_id)
        if refusal is None and self._window.count_or_wait(time.monotonic()):
            refusal = protocol.neg_err(sub_id, f"rate-limited: more than {self._window.limit} REQs per minute")
        if refusal is None:
            try:
                check(request.message)  # before any read for it
            except NegentropyError as exc:
                refusal = protocol.neg_err(sub_id, f"invalid: {exc}")
        if refusal is not None:
            self._send(refusal)
            return
        limits = self.sessions.limits
        try:
            items = await self._store.negentropy_items([request.filter], limits.max_records, limits.query_budget_s)
        except QueryBudgetExceeded:
            self._send(protocol.neg_err(sub_id, f"blocked: reading this filter's events takes more than the relay's "
                                                f"budget ({limits.query_budget_s:g} s); narrow it"))
            return
        except Exception:  # the store failed this read; the connection goes on
            log.exception("negentropy_read_failed", sub_id=sub_id)
            self._send(protocol.neg_err(sub_id, "error: the query failed, try again"))
            return
        self._send(self.sessions.start(sub_id, items, request.message, self._clock()))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.sessions.next_expiry()
        if due is not None:
            delay = max(0.0, due - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for frame in self.sessions.expire(self._clock()):
            self._send(frame)
        self._arm()

    def close(self) -> None:
        """The connection ended: every session's items go back to the relay's budget."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.sessions.close_all()
