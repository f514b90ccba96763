"""Carry out a release: the plan `purgatory.release` chose, applied to the repos and then to
the store.

`Release.on_git_data(identifier)` runs whenever data may have arrived (a push, a fetch, a
new event whose data is already here): it plans in a worker thread, aligns the authorised
owners' repos with the newest state released, writes the PR refs, and only then moves the
entries into the served store and broadcasts them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Awaitable, Callable, Sequence

import structlog

from purgatory import lifecycle, release
from purgatory.locate import Locator
from purgatory.placeholders import Placeholders
from purgatory.ports import PurgatoryMetrics, ReleaseStore
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore
from storage.sqlite.records import HeldEntry

log = structlog.get_logger(__name__)

#: runs for each event the release moved into the served store, in list order (the broadcast)
AfterRelease = Callable[[Event], Awaitable[None]]
#: removes an identifier's quarantine directory
DropQuarantine = Callable[[str], Awaitable[None]]


async def align(repos: RepoStore, source: Path, target: Path, refs: dict[str, str], head: str | None) -> None:
    """Give `target` the objects of `refs` from `source` and set its refs (and HEAD) to them."""
    async with repos.lock(target):  # never beside a push being checked
        if source != target:
            await repos.copy_objects_async(source, target, sorted(set(refs.values())))
        await repos.set_refs_async(target, refs, head)
    log.info("repo_aligned", repo=str(target), refs=len(refs), head=head)


class Release:
    def __init__(self, store: ReleaseStore, repos: RepoStore, locator: Locator, placeholders: Placeholders,
                 drop_quarantine: DropQuarantine, metrics: PurgatoryMetrics, *,
                 after_release: Sequence[AfterRelease] = ()) -> None:
        self.store = store
        self.repos = repos
        self.locator = locator
        self.placeholders = placeholders
        self.drop_quarantine = drop_quarantine
        self.metrics = metrics
        self.after_release = tuple(after_release)
        self._locks: dict[str, asyncio.Lock] = {}

    async def on_git_data(self, identifier: str) -> set[str]:
        """Release what the data now on this server satisfies; returns the released ids."""
        lock = self._locks.setdefault(identifier, asyncio.Lock())
        async with lock:
            entries = await self.store.held(identifier)
            if not entries:
                await self.drop_quarantine(identifier)
                return set()
            # repo lookups open repositories on disk: plan in a worker thread, with what it
            # needs from the store (read on the loop) gathered first
            locator = self.locator
            anns = locator.announcements(identifier)
            paths = locator.sources(identifier, anns) + self._contributor_sources(entries)
            authors = {e.event.pubkey for e in entries if e.event.kind == nip34.STATE}
            owners = {author: locator.owners_of(author, anns) for author in authors}
            plan = await asyncio.to_thread(
                release.plan, entries, lambda oids: locator.first_holding(paths, oids), owners.__getitem__
            )
            if not plan.entries:
                return set()
            # repos first, then the store: a crash in between leaves data whose events are
            # still held, and the next look (a restart enqueues every held identifier)
            # releases them; the other order could serve a state whose repo never got it
            await self._apply_states(identifier, plan.states)
            await self._write_pr_refs(identifier, plan.prs)
            await self.release_entries(identifier, plan.entries)
            if not await self.store.held(identifier):
                await self.drop_quarantine(identifier)
            return set(plan.event_ids)

    async def release_entries(self, identifier: str, entries: list[HeldEntry],
                              trigger: str = lifecycle.DATA_HERE) -> None:
        """Move held entries into the served store (one transaction) and broadcast them;
        `trigger` is the lifecycle's reason (the data is here, or a served state adopted)."""
        for _ in entries:
            lifecycle.step(lifecycle.HELD, trigger, to=lifecycle.RELEASED)
        results = await self.store.release([e.event.id for e in entries])
        for entry, result in zip(entries, results):
            self.metrics.purgatory_event(entry.event.kind, "released")
            log.info("purgatory_released", event_id=entry.event.id, kind=entry.event.kind,
                     identifier=identifier, status=result.status)
            if result.stored:
                for hook in self.after_release:
                    await hook(entry.event)

    async def _apply_states(self, identifier: str, states: list[release.StateRelease]) -> None:
        """Align every authorised owner's repo with the newest state being released, unless a
        newer served state from that owner's maintainers already rules the repo."""
        newest = release.newest_state(states)
        if newest is None:
            return
        served = await self.locator.served_states(identifier)
        lookup = self.locator.announcements(identifier).of

        def maintainers_of(owner: str) -> frozenset[str]:
            return self.locator.maintainer_set(owner, identifier, lookup)

        for owner, by in release.alignments(newest, served, maintainers_of):
            if by is not None:
                log.info("state_superseded", event_id=newest.event.id, by=by.id, owner=owner)
            elif self.repos.exists(owner, identifier):
                await align(self.repos, newest.source, self.repos.path(owner, identifier), newest.refs, newest.head)

    def _contributor_sources(self, entries: list[HeldEntry]) -> list[Path]:
        """For held GRASP-06 PRs: their signers' contributor repos here (served and pending),
        where the tip was pushed."""
        prs = self.placeholders.prs
        if prs is None:
            return []
        paths: list[Path] = []
        for entry in entries:
            ident = self.placeholders.prs_identifier(entry.event)
            if ident is None:
                continue
            owner = entry.event.pubkey
            if prs.exists(owner, ident):
                paths.append(prs.path(owner, ident))
            if prs.pending_exists(owner, ident):
                paths.append(prs.pending_path(owner, ident))
        return paths

    async def _write_pr_refs(self, identifier: str, prs: list[release.PrRelease]) -> None:
        """A released PR's ref goes into the served repos it names, with its objects; the
        pushes that waited for it in pending areas are then claimed (and removed). A GRASP-06
        PR's ref also goes into its signer's contributor repo (created now: it serves only
        released PR refs) and is mirrored, one way, into every announced repo of the
        identifier, where maintainers look for it."""
        for pr in prs:
            name = nip34.PR_REF_PREFIX + pr.event.id
            contributor = self.placeholders.prs_identifier(pr.event)
            targets = [(o, i) for o, i in self.placeholders.pr_repos(pr.event) if self.repos.exists(o, i)]
            if contributor is not None:
                targets += [(o, contributor) for o in self.locator.announcements(contributor).owners
                            if (o, contributor) not in targets and self.repos.exists(o, contributor)]
            paths = [(self.repos, self.repos.path(o, i)) for o, i in targets]
            if contributor is not None and self.placeholders.prs is not None:
                prs_repos = self.placeholders.prs
                paths.insert(0, (prs_repos, await asyncio.to_thread(prs_repos.ensure, pr.event.pubkey, contributor)))
            for store, target in paths:
                async with store.lock(target):
                    try:
                        if pr.source != target:
                            await self.repos.copy_objects_async(pr.source, target, [pr.tip])
                        await asyncio.to_thread(self.repos.set_ref, target, name, pr.tip)
                    finally:
                        if store is not self.repos:  # a contributor repo is only its PR refs
                            await asyncio.to_thread(store.remove_if_empty, target)
            await self.placeholders.claim(identifier, pr.event.id,
                                          pr.event.pubkey if contributor is not None else None)

