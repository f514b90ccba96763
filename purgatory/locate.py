"""Reading the world for one identifier: its announcements, who maintains each owner's repo,
where its objects may be (served repos, pending areas, the quarantine), and its served
states. Every other part of the purgatory asks these questions; none of them writes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable, Iterable

from purgatory.ports import AnnouncementReads, StateQuery
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.repos import RepoStore


class Announcements:
    """An identifier's announcements as `StoreView.announcements_for` returns them (served
    first, then held, newest first), with the per-author lookup `view.announcement` gives."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._first: dict[str, Event] = {}
        for event in events:
            self._first.setdefault(event.pubkey, event)

    @property
    def owners(self) -> list[str]:
        return list(self._first)

    def of(self, pubkey: str) -> Event | None:
        return self._first.get(pubkey)


class Locator:
    def __init__(self, repos: RepoStore, view: AnnouncementReads, store: StateQuery,
                 quarantine_path: Callable[[str], Path], walk: nip34.WalkLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.repos = repos
        self.view = view
        self.store = store
        self.quarantine_path = quarantine_path
        self.walk = walk
        self.clock = clock

    def announcements(self, identifier: str) -> Announcements:
        """One read of an identifier's announcements, for all the questions one step asks
        (owners, maintainer sets, repo paths): each store read on the event loop costs far
        more under load than its query, as it gives up and waits to retake the GIL."""
        return Announcements(self.view.announcements_for(identifier))

    def owners_of(self, author: str, anns: Announcements) -> list[str]:
        """The owners whose confirmed maintainers include `author`."""
        return nip34.owners_authorising(author, anns.events, anns.of, now=self.clock(), limits=self.walk)

    def maintainer_set(self, owner: str, identifier: str,
                       lookup: Callable[[str], Event | None] | None = None) -> frozenset[str]:
        """The confirmed maintainers of `owner`'s repo now (`nip34.walk_maintainers`)."""
        return nip34.maintainer_set(owner, identifier, lookup or self.announcements(identifier).of,
                                    now=self.clock(), limits=self.walk)

    def served_paths(self, identifier: str, anns: Announcements | None = None) -> list[Path]:
        anns = anns or self.announcements(identifier)
        return [self.repos.path(owner, identifier) for owner in anns.owners if self.repos.exists(owner, identifier)]

    def sources(self, identifier: str, anns: Announcements | None = None) -> list[Path]:
        """Where the objects for an identifier may be: every owner's repo, then their pending
        areas (refs/nostr pushes), then the quarantine (fetches)."""
        anns = anns or self.announcements(identifier)
        paths = self.served_paths(identifier, anns)
        paths += [self.repos.pending_path(owner, identifier) for owner in anns.owners
                  if self.repos.pending_exists(owner, identifier)]
        waiting = self.quarantine_path(identifier)
        if (waiting / "HEAD").is_file():
            paths.append(waiting)
        return paths

    def first_holding(self, paths: list[Path], oids: Iterable[str]) -> Path | None:
        """The first repo holding every one of these objects (blocking: opens repos)."""
        wanted = list(oids)
        for path in paths:
            if not self.repos.missing(path, wanted):
                return path
        return None

    def still_missing(self, paths: list[Path], oids: set[str]) -> set[str]:
        """Which of these objects none of the repos holds (blocking: opens repos)."""
        for path in paths:
            if not oids:
                break
            oids = self.repos.missing(path, oids)
        return oids

    async def locate(self, identifier: str, oids: Iterable[str]) -> Path | None:
        return await asyncio.to_thread(self.first_holding, self.sources(identifier), list(oids))

    async def served_states(self, identifier: str) -> list[Event]:
        """Served 30618s for this identifier, newest first (tie: lowest id)."""
        states = Filter(kinds=frozenset({nip34.STATE}), tags=(("d", frozenset({identifier})),))
        found = await self.store.query([states], 1000)
        return sorted(found, key=lambda e: (-e.created_at, e.id))

