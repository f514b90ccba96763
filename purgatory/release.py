"""Which held events the git data on this server now satisfies: pure selection.

`purgatory.apply` gathers the held entries of one identifier and a way to find a repo
holding a set of objects; this module decides what to release and what each release
implies for the repos (which owners' repos are aligned, which keep a newer state), without
touching a repo or the store itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from storage.nostr import nip34
from storage.nostr.event import Event
from storage.sqlite.records import HeldEntry

#: The OK message of an event held until its git data arrives (the policy and the purgatory
#: both answer with it, so it has one home here, below both).
PURGATORY_MESSAGE = "purgatory: won't be served until git data arrives"

#: Finds a repo (or the quarantine) that holds all of these objects, or None.
Locate = Callable[[Iterable[str]], Path | None]
#: The owners whose maintainer set contains this author (for one identifier).
OwnersOf = Callable[[str], list[str]]
#: The confirmed maintainers of this owner's repo (for one identifier).
MaintainersOf = Callable[[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class StateRelease:
    event: Event
    refs: dict[str, str]
    head: str | None
    source: Path
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrRelease:
    event: Event
    tip: str
    source: Path


@dataclass
class ReleasePlan:
    """Entries to release, in release order (announcements first so that clients see the
    repo before its state), and what to do to the repos afterwards."""

    entries: list[HeldEntry] = field(default_factory=list)
    states: list[StateRelease] = field(default_factory=list)
    prs: list[PrRelease] = field(default_factory=list)

    @property
    def event_ids(self) -> list[str]:
        return [e.event.id for e in self.entries]


def needed_oids(event: Event) -> set[str]:
    """The objects an event promises. Announcements promise nothing by themselves: they are
    released with the first state that is satisfied for their owner."""
    if event.kind == nip34.STATE:
        return set(nip34.state_refs(event)[0].values())
    if event.kind in (nip34.PR, nip34.PR_UPDATE):
        tip = nip34.pr_tip(event)
        return {tip} if tip else set()
    return set()


def plan(entries: list[HeldEntry], locate: Locate, owners_of: OwnersOf) -> ReleasePlan:
    held = sorted(entries, key=lambda e: (e.received_at, e.event.created_at))
    result = ReleasePlan()
    others: list[HeldEntry] = []
    touched: set[str] = set()
    for entry in held:
        event = entry.event
        if event.kind == nip34.STATE:
            refs, head = nip34.state_refs(event)
            source = locate(refs.values()) if refs else None
            if source is not None:
                owners = tuple(owners_of(event.pubkey))
                touched.update(owners)
                result.states.append(StateRelease(event, refs, head, source, owners))
                others.append(entry)
        elif event.kind in (nip34.PR, nip34.PR_UPDATE):
            tip = nip34.pr_tip(event)
            source = locate([tip]) if tip else None
            if source is not None and tip is not None:
                result.prs.append(PrRelease(event, tip, source))
                others.append(entry)
    announcements = [
        e for e in held if e.event.kind == nip34.ANNOUNCEMENT and e.event.pubkey in touched
    ]
    result.entries = announcements + others
    return result


def newest_state(states: list[StateRelease]) -> StateRelease | None:
    """Among states released together the newest wins (tie: lowest id), as for any
    addressable event."""
    if not states:
        return None
    return min(states, key=lambda s: (-s.event.created_at, s.event.id))


def alignments(newest: StateRelease, served: list[Event],
               maintainers_of: MaintainersOf) -> list[tuple[str, Event | None]]:
    """For each owner the newest released state authorises, in order: the newer served state
    of that owner's maintainers that supersedes it (the repo keeps its refs), or None (the
    repo is aligned with it). `served` is newest first."""
    out: list[tuple[str, Event | None]] = []
    for owner in newest.owners:
        members = maintainers_of(owner)
        latest = next((s for s in served if s.pubkey in members), None)
        out.append((owner, latest if latest is not None and newer(latest, newest.event) else None))
    return out


def newer(a: Event, b: Event) -> bool:
    """Does a supersede b, as addressable events do: newer created_at, tie to the lowest id."""
    return (a.created_at, b.id) > (b.created_at, a.id)
