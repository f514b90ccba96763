"""What a rule says about an event (`Verdict`: store, hold in the purgatory, or reject, with
the repository it concerns) and what a rule may ask the store (`ReadView`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from purgatory.release import PURGATORY_MESSAGE
from storage.nostr.event import Event

Action = Literal["store", "purgatory", "reject"]


class ReadView(Protocol):
    """What the policy may ask the store. "Known" means stored or held in purgatory;
    "served" means stored (returned by REQ), not held."""

    def announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def served_announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def announcements_for(self, identifier: str) -> list[Event]: ...
    def get_event(self, event_id: str) -> Event | None: ...
    def is_served(self, event_id: str) -> bool: ...
    def has_coordinate(self, coordinate: str) -> bool: ...
    def has_served_coordinate(self, coordinate: str) -> bool: ...
    def is_referenced_by_served(self, event_id: str, coordinate: str | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    message: str = ""
    #: The repository (identifier) a stored/held event concerns, when it can be told.
    identifier: str | None = None
    #: The owner whose repo is primarily concerned (the announcement author, a state's own
    #: announcement if it has one, the first repository a PR names).
    owner: str | None = None
    #: Every owner whose repo this event concerns (a state is authoritative for all owners
    #: whose maintainer set holds its author).
    owners: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.action != "reject"


def reject(message: str) -> Verdict:
    return Verdict("reject", message)


def accept(action: Action, identifier: str | None, owners: list[str] | tuple[str, ...]) -> Verdict:
    message = PURGATORY_MESSAGE if action == "purgatory" else ""
    owners = tuple(owners)
    return Verdict(action, message, identifier, owners[0] if owners else None, owners)

