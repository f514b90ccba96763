"""An owner's repo follows its maintainers' served state.

A new announcement whose maintainers already have a served state here gets that state's
data at once (its own held announcement is then released: nothing is left to wait for),
and any served announcement may change who maintains a repo of its identifier, so every
served repo of the identifier follows its maintainers again: forward only, never rolled
back (the issue's "do not roll back history on a membership change")."""

from __future__ import annotations

import asyncio

import structlog

from purgatory.apply import align
from purgatory.integrity import compare as integrity
from purgatory.locate import Locator
from purgatory.ports import ServedAnnouncement
from purgatory.release import newer
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)


class Adoption:
    def __init__(self, repos: RepoStore, locator: Locator, view: ServedAnnouncement) -> None:
        self.repos = repos
        self.locator = locator
        self.view = view

    async def adopt_announcement(self, announcement: Event) -> None:
        """A served announcement (an update, or a maintainer's) has its repo, with data; and
        it may change who maintains any repo of its identifier (a key confirms, steps down,
        is added or removed), so every served repo of the identifier follows its maintainers
        again (`follow_maintainers`)."""
        identifier = announcement.d_tag
        await asyncio.to_thread(self.repos.ensure, announcement.pubkey, identifier)
        await self.adopt_served_state(announcement, identifier)
        states = await self.locator.served_states(identifier)
        for owner in self.locator.announcements(identifier).owners:
            if owner != announcement.pubkey and self.view.served_announcement(owner, identifier) is not None:
                await self.follow_maintainers(owner, identifier, states)

    async def adopt_served_state(self, announcement: Event, identifier: str) -> bool:
        """A new owner whose maintainers already have a served state here gets that state's
        data at once: the state is authoritative for this owner's repo as well. True when
        the repo is at such a state afterwards."""
        return await self.follow_maintainers(announcement.pubkey, identifier,
                                             await self.locator.served_states(identifier))

    async def follow_maintainers(self, owner: str, identifier: str, served: list[Event]) -> bool:
        """Bring `owner`'s repo to the newest served state of its confirmed maintainers now,
        when the repo is empty or exactly at an older served state; True when the repo is at
        that state afterwards.

        Recomputed on every announcement that may change the set, with these limits: a repo
        exactly at a *newer* served state, set while its author was a maintainer, keeps its
        refs until a confirmed maintainer publishes a newer state (logged `state_kept`; the
        integrity pass leaves it alone for the same reason); a repo at no served state at
        all (a push whose state is being released, or refs moved behind our back) is left
        to the release and to the integrity pass. New states and pushes follow the new set
        at once anyway: each decision computes the set afresh."""
        if not self.repos.exists(owner, identifier):
            return False
        members = self.locator.maintainer_set(owner, identifier)
        latest = next((s for s in served if s.pubkey in members), None)
        if latest is None:
            return False
        path = self.repos.path(owner, identifier)
        refs_now, head_now = self.repos.refs(path), self.repos.head(path)
        at = integrity.at_state(refs_now, head_now, served)
        if at is not None and at.id == latest.id:
            return True
        if at is not None and newer(at, latest):
            log.info("state_kept", owner=owner, identifier=identifier, state=at.id, newest_of_maintainers=latest.id)
            return False
        if at is None and refs_now:
            return False
        refs, head = nip34.state_refs(latest)
        source = await self.locator.locate(identifier, refs.values())
        if source is None:
            return False
        await align(self.repos, source, path, refs, head)
        return True
