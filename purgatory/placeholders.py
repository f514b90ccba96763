"""PR refs pushed before their event (`refs/nostr/<id>` in a repo's pending area).

The push gate accepts such a push without a signature (the event may come later, from
anyone); this part keeps it for as long as an event may wait in purgatory, and removes it
when nobody signed it in time or when the event, once here, names a different tip. A
released PR's ref is claimed: written into the served repos the event names, its pending
copy dropped. The moves are the PR-ref rows of `purgatory.lifecycle`.

GRASP-06 contributor repos (`prs`, a second RepoStore) have pending areas of their own; their
placeholders are keyed `prs:<owner>/<identifier>` (`purgatory.prs`). A ref pushed there is
removed as soon as its event is known and is not a GRASP-06 PR signed by that owner for that
identifier: a contributor repo holds only its owner's PRs."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import structlog

from purgatory import lifecycle
from purgatory import prs as grasp06
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
                 clock: Callable[[], float] = time.time, prs: RepoStore | None = None,
                 domain: str = "") -> None:
        self.store = store
        #: GRASP-06 contributor repos (None: off), and the domain their clone URLs name
        self.prs = prs
        self.domain = domain
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

    async def expect_prs_pr(self, event_id: str, owner: str, identifier: str, tip: str) -> None:
        """`expect_pr` for a ref pushed to the contributor repo `/prs/<owner>/<identifier>`."""
        lifecycle.step(lifecycle.PUSHED, lifecycle.NO_EVENT_YET)
        expires_at = self.clock() + self.expiry_s
        await self.store.add_placeholder(event_id, grasp06.prs_key(owner, identifier), tip, expires_at)

    async def event_arrived(self, event: Event) -> None:
        """A PR or PR update came to the purgatory: its ref, if pushed first, waits for it now
        instead of a deadline, unless it holds another tip than the event names (or, in a
        contributor repo, the event is not that contributor's PR for that identifier)."""
        found = await self.store.placeholder(event.id) if self.prs is not None else None
        if found is not None and grasp06.parse_repo_key(found[0])[0]:
            _prs, owner, identifier = grasp06.parse_repo_key(found[0])
            if (owner, identifier) != (event.pubkey, self.prs_identifier(event)):
                lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.CONTRADICTED)
                await self.store.remove_placeholder(event.id)
                await self._drop_prs_ref(owner, identifier, nip34.PR_REF_PREFIX + event.id, "not its signer's PR")
                return
        lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.EVENT_KNOWN)
        await self.store.remove_placeholder(event.id)
        await self._drop_contradicting(event)

    def prs_identifier(self, event: Event) -> str | None:
        """The signer's contributor repo here this PR names, if GRASP-06 is on (`purgatory.prs`)."""
        if self.prs is None:
            return None
        root_id = nip34.pr_root(event) if event.kind == nip34.PR_UPDATE else None
        root = self.events.get_event(root_id) if root_id else None
        return grasp06.prs_target(event, self.domain, root)

    async def _drop_prs_ref(self, owner: str, identifier: str, name: str, why: str) -> None:
        prs = self.prs
        if prs is None or not prs.pending_exists(owner, identifier):
            return
        async with prs.lock(prs.path(owner, identifier)):
            await asyncio.to_thread(prs.drop_pending_ref, owner, identifier, name)
        log.info("pr_ref_removed", ref=name, repo=f"prs/{owner}/{identifier}", reason=why)

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
        contributor = self.prs_identifier(event)
        if contributor is not None and self.prs is not None:
            waiting = self.prs.pending_refs(event.pubkey, contributor).get(name)
            if waiting not in (None, tip):
                lifecycle.step(lifecycle.WAITING, lifecycle.CONTRADICTED)
                await self._drop_prs_ref(event.pubkey, contributor, name, f"event names tip {tip}")

    async def claim(self, identifier: str, event_id: str, contributor: str | None = None) -> None:
        """The PR's ref is in the served repos now: remove it from every pending area of
        this identifier (and the contributor repo's, for a GRASP-06 PR); a pending repo goes
        with its last ref, and the objects with it."""
        lifecycle.step(lifecycle.WAITING, lifecycle.DATA_HERE)
        name = nip34.PR_REF_PREFIX + event_id
        for owner in self.owners(identifier):
            if self.repos.pending_exists(owner, identifier):
                async with self.repos.lock(self.repos.path(owner, identifier)):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)
        if contributor is not None:
            await self._drop_prs_ref(contributor, identifier, name, "claimed")

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
        contributor = self.prs_identifier(event)
        prs = self.prs
        if contributor is not None and prs is not None and name in prs.pending_refs(event.pubkey, contributor):
            lifecycle.step(lifecycle.WAITING, lifecycle.EVENT_EXPIRED)
            await self._drop_prs_ref(event.pubkey, contributor, name, "event expired")

    async def expire_due(self) -> None:
        """Remove the refs whose deadline passed and whose event never came."""
        for event_id, repo, _tip in await self.store.placeholders_due(self.clock()):
            await self.store.remove_placeholder(event_id)
            if self.events.get_event(event_id) is not None:
                lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.EVENT_KNOWN)
                continue  # claimed meanwhile
            lifecycle.step(lifecycle.PLACEHOLDER, lifecycle.DEADLINE)
            in_prs, owner, identifier = grasp06.parse_repo_key(repo)
            name = nip34.PR_REF_PREFIX + event_id
            if in_prs:
                await self._drop_prs_ref(owner, identifier, name, "nobody signed it in time")
                self.metrics.purgatory_event(nip34.PR, "expired")
                continue
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
