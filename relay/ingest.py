"""The path of an accepted-looking event: acceptance policy, then store (and broadcast) or
purgatory. Shared by websocket clients and, later, events synced from other relays, so both
obey exactly the same rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from relay import policy
from storage.event import Event

if TYPE_CHECKING:
    from relay.app import Relay

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


class Ingest:
    def __init__(self, relay: "Relay") -> None:
        self.relay = relay

    async def publish(self, event: Event, source: str = "client") -> Outcome:
        relay = self.relay
        structlog.contextvars.bind_contextvars(event_id=event.id)
        relay.metrics.event_received(event.kind)
        verdict = policy.decide(event, relay.store.view, relay.policy_context)
        if verdict.action == "reject":
            return self._reject(event, verdict.message)
        if event.is_ephemeral:
            relay.subscriptions.broadcast(event)
            return self._accept(event, "")
        if verdict.action == "purgatory" and relay.purgatory is not None:
            message = await relay.purgatory.accept(event, verdict.identifier, source)
            if message is None:
                return self._reject(event, "blocked: this event expired in purgatory earlier")
            return self._accept(event, message)
        return await self.store(event)

    async def store(self, event: Event) -> Outcome:
        """Save and broadcast; also used by the purgatory when an event's data is already here."""
        relay = self.relay
        try:
            result = await relay.store.save(event)
        except Exception as exc:  # the store failed the whole batch; the client may retry
            log.error("store_failed", event_id=event.id, error=str(exc))
            return self._reject(event, "error: could not store the event, try again")
        if result.status in ("saved", "replaced"):
            relay.subscriptions.broadcast(event)
            await relay.after_stored(event)
            return self._accept(event, "")
        accepted, message = _STATUS_MESSAGES.get(result.status, (True, ""))
        return self._accept(event, message) if accepted else self._reject(event, message)

    def _accept(self, event: Event, message: str) -> Outcome:
        self.relay.metrics.event_accepted(event.kind)
        log.info("event_accepted", event_id=event.id, kind=event.kind, note=message)
        return Outcome(True, message)

    def _reject(self, event: Event, message: str) -> Outcome:
        self.relay.metrics.event_rejected(event.kind, message.split(":", 1)[0])
        log.info("event_rejected", event_id=event.id, kind=event.kind, reason=message)
        return Outcome(False, message)
