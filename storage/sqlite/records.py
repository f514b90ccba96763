"""Values the event store hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from storage.nostr.event import Event

SaveStatus = Literal["saved", "duplicate", "replaced", "older", "deleted", "ephemeral", "missing"]

# Client-facing texts (NIP-01 `OK` prefixes). The relay decides true/false; `SaveResult.ok`
# is the usual answer.
MESSAGES: dict[str, str] = {
    "saved": "",
    "replaced": "",
    "ephemeral": "",
    "duplicate": "duplicate: already have this event",
    "older": "duplicate: have a newer version of this event",
    "deleted": "blocked: this event was deleted by its author",
    "missing": "error: event is not held",
}


class StoreError(Exception):
    """A write the store could not commit (SQLite error, full disk). Nothing of that write
    was kept; the relay answers `OK false "error: ..."`."""


class StoreClosed(StoreError):
    """The store is closed or closing; no more writes are taken."""


@dataclass(frozen=True, slots=True)
class SaveResult:
    """The outcome of one save (or one released held event).

    `removed_ids` are served events this one replaced or (for a kind 5) deleted;
    `removed_held` are purgatory entries a kind 5 deletion dropped."""

    status: SaveStatus
    removed_ids: list[str] = field(default_factory=list)
    removed_held: list[str] = field(default_factory=list)
    message: str = ""

    @classmethod
    def of(
        cls, status: SaveStatus, removed: list[str] | None = None, removed_held: list[str] | None = None
    ) -> "SaveResult":
        return cls(status, removed or [], removed_held or [], MESSAGES[status])

    @property
    def stored(self) -> bool:
        """The event is now served (so it should be broadcast)."""
        return self.status in ("saved", "replaced")

    @property
    def ok(self) -> bool:
        """The usual NIP-01 `OK` flag: duplicates are accepted, refusals are not."""
        return self.status in ("saved", "replaced", "duplicate", "ephemeral")


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """An event waiting in purgatory for the git data it points at."""

    event: Event
    identifier: str
    received_at: float
    expires_at: float
    source: str
