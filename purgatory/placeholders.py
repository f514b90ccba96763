"""PR refs pushed before their event (`refs/nostr/<id>` in a repo's pending area).

The push gate accepts such a push without a signature (the event may come later, from
anyone); this part keeps it for as long as an event may wait in purgatory, and removes it
when nobody signed it in time or when the event, once here, names a different tip. A
released PR's ref is claimed: written into the served repos the event names, its pending
copy dropped. The moves are the PR-ref rows of `purgatory.lifecycle`."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import structlog

from purgatory import lifecycle
from purgatory.ports import EventLookup, PlaceholderStore, PurgatoryMetrics
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)

#: the owners of an identifier's announcements (served first, then held)
OwnersOf = Callable[[str], list[str]]


class Placeholders:
    def __init__(self, store: PlaceholderStore, events: EventLookup, repos: RepoStore,
                 owners: OwnersOf, metrics: PurgatoryMetrics, expiry_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.events = events
        self.repos = repos
        self.owners = owners
        self.metrics = metrics
        self.expiry_s = expiry_s
        self.clock = clock

    async def expect_pr(self, event_id: str, owner: str, identifier: str, tip: str) -> None:
        """A `refs/nostr/<id>` was pushed before its event: keep it for as long as an event
        may wait in purgatory, then remove it, so pushes nobody signs do not stay served."""
        lifecycle.step(lifecycle.PUSHED, lifecycle.NO_EVENT_YET)
        expires_at = self.clock() + self.expiry_s
        await self.store.add_placeholder(event_id, f"{owner}/{identifier}", tip, expires_at)

    async def event_arrived(self, event: Event) -> None:
        """A PR or PR update came to the purgatory: its ref, if pushed first, waits for it now
        instead of a deadline, unless it holds another tip than the event names."""
        lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.EVENT_KNOWN)
        await self.store.remove_placeholder(event.id)
        await self._drop_contradicting(event)

    async def _drop_contradicting(self, event: Event) -> None:
        """A `refs/nostr/<id>` pushed before its event must hold the tip the event names;
        a different tip is removed so that the right one can be pushed or fetched."""
        tip = nip34.pr_tip(event)
        name = nip34.PR_REF_PREFIX + event.id
        for owner, identifier in self.pr_repos(event):
            served = self.repos.path(owner, identifier)
            pushed = self.repos.get_ref(served, name) if self.repos.exists(owner, identifier) else None
            waiting = self.repos.pending_refs(owner, identifier).get(name)
            if pushed in (None, tip) and waiting in (None, tip):
                continue
            lifecycle.step(lifecycle.WAITING, lifecycle.CONTRADICTED)
            async with self.repos.lock(served):
                if pushed not in (None, tip):
                    await asyncio.to_thread(self.repos.delete_ref, served, name)
                if waiting not in (None, tip):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)
            log.info("pr_ref_removed", ref=name, repo=str(served), pushed=pushed, waiting=waiting, named=tip)

    async def claim(self, identifier: str, event_id: str) -> None:
        """The PR's ref is in the served repos now: remove it from every pending area of
        this identifier; a pending repo goes with its last ref, and the objects with it."""
        lifecycle.step(lifecycle.WAITING, lifecycle.DATA_HERE)
        name = nip34.PR_REF_PREFIX + event_id
        for owner in self.owners(identifier):
            if self.repos.pending_exists(owner, identifier):
                async with self.repos.lock(self.repos.path(owner, identifier)):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)

    async def event_expired(self, event: Event) -> None:
        """The held PR (or update) this ref waited for expired: its pushed ref goes from the
        pending areas of the repos it names, so what nobody's release claimed is not kept."""
        name = nip34.PR_REF_PREFIX + event.id
        for owner, identifier in self.pr_repos(event):
            if name not in self.repos.pending_refs(owner, identifier):
                continue
            lifecycle.step(lifecycle.WAITING, lifecycle.EVENT_EXPIRED)
            async with self.repos.lock(self.repos.path(owner, identifier)):
                await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)
            log.info("pr_ref_expired", ref=name, owner=owner, identifier=identifier, reason="event expired")

    async def expire_due(self) -> None:
        """Remove the refs whose deadline passed and whose event never came."""
        for event_id, repo, _tip in await self.store.placeholders_due(self.clock()):
            await self.store.remove_placeholder(event_id)
            if self.events.get_event(event_id) is not None:
                lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.EVENT_KNOWN)
                continue  # claimed meanwhile
            lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.DEADLINE)
            owner, identifier = repo.split("/", 1)
            name = nip34.PR_REF_PREFIX + event_id
            if self.repos.pending_exists(owner, identifier):
                async with self.repos.lock(self.repos.path(owner, identifier)):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)
            if self.repos.exists(owner, identifier):  # a placeholder from before pending areas
                path = self.repos.path(owner, identifier)
                async with self.repos.lock(path):
                    await asyncio.to_thread(self.repos.delete_ref, path, name)
            self.metrics.purgatory_event(nip34.PR, "expired")
            log.info("pr_ref_expired", ref=nip34.PR_REF_PREFIX + event_id, owner=owner, identifier=identifier)

    def pr_repos(self, event: Event) -> list[tuple[str, str]]:
        """The (owner, identifier) pairs a PR names; a PR update names its root's."""
        coords = nip34.pr_repo_coordinates(event)
        if not coords and event.kind == nip34.PR_UPDATE:
            root_id = nip34.pr_root(event)
            root = self.events.get_event(root_id) if root_id else None
            coords = nip34.pr_repo_coordinates(root) if root else []
        out = []
        for coord in coords:
            parsed = nip34.parse_coordinate(coord)
            if parsed is not None:
                out.append((parsed[1], parsed[2]))
        return out
