"""The path of an accepted-looking event: acceptance policy, then store (and broadcast) or
purgatory. Shared by websocket clients and events synced from other relays, so both obey
exactly the same rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from relay.daemon.reload import Live
from relay.metrics import MetricsSink
from relay.nostr import policy
from storage.nostr.event import Event
from storage.sqlite.records import SaveResult

log = structlog.get_logger(__name__)

_STATUS_MESSAGES = {
    "duplicate": (True, "duplicate: already have this event"),
    "older": (True, "duplicate: a newer version of this event is already stored"),
    "deleted": (False, "blocked: this event was deleted by its author"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool
    message: str


#: runs after an event was saved (or replaced one), in list order, before its OK: the
#: broadcast to live subscribers, then what serving it implies (an announcement's repo)
AfterStore = Callable[[Event], Awaitable[None]]
#: the purgatory's intake: the OK message, or None when the event expired there earlier
Hold = Callable[[Event, str | None, str], Awaitable[str | None]]


class Ingest:
    """Built by relay/compose.py with exactly what it uses, so the rules for websocket
    clients and for peers' events are one code path with no way back to the app."""

    def __init__(self, view: policy.ReadView, save: Callable[[Event], Awaitable[SaveResult]], live: Live,
                 metrics: MetricsSink, hold: Hold,
                 after_store: Sequence[AfterStore]) -> None:
        self._view = view
        self._save = save
        self._live = live
        self._metrics = metrics
        self._hold = hold
        self._after_store = tuple(after_store)

    async def publish(self, event: Event, source: str = "client") -> Outcome:
        structlog.contextvars.bind_contextvars(event_id=event.id)
        self._metrics.event_received(event.kind)
        verdict = policy.decide(event, self._view, self._live.policy_context)
        if verdict.action == "reject":  # ephemeral kinds among them (policy.ephemeral_rule)
            return self._reject(event, verdict.message)
        if verdict.action == "purgatory":
            message = await self._hold(event, verdict.identifier, source)
            if message is None:
                return self._reject(event, "blocked: this event expired in purgatory earlier")
            return self._accept(event, message)
        return await self.store(event)

    async def store(self, event: Event) -> Outcome:
        """Save, then run the after-store hooks (broadcast first)."""
        try:
            result = await self._save(event)
        except Exception as exc:  # the store failed the whole batch; the client may retry
            log.error("store_failed", event_id=event.id, error=str(exc))
            return self._reject(event, "error: could not store the event, try again")
        if result.status in ("saved", "replaced"):
            for hook in self._after_store:
                await hook(event)
            return self._accept(event, "")
        accepted, message = _STATUS_MESSAGES.get(result.status, (True, ""))
        return self._accept(event, message) if accepted else self._reject(event, message)

    def _accept(self, event: Event, message: str) -> Outcome:
        self._metrics.event_accepted(event.kind)
        log.info("event_accepted", event_id=event.id, kind=event.kind, note=message)
        return Outcome(True, message)

    def _reject(self, event: Event, message: str) -> Outcome:
        self._metrics.event_rejected(event.kind, message.split(":", 1)[0])
        log.info("event_rejected", event_id=event.id, kind=event.kind, reason=message)
        return Outcome(False, message)
