"""The real `SyncContext`: the sync logic's window on the store, the repos and the network.

A thin adapter: the store knows which events wait, the locator where objects may be found,
the quarantines where fetched ones go, `purgatory.fetch.objects` moves bytes and the
release step (`on_git_data`) serves what they satisfy; this class only translates between
them, and is handed each of them by relay/compose.py.

A second source of wanted objects rides on the same path: `gaps`, the served repos the hourly
check found lacking their state's objects. An identifier with a gap counts as pending, its
missing objects as needed, so the queue, the throttle and the quarantine are the same; once
data arrived, `complete_gaps` (the check's own step, which writes a repo only towards the
served state it follows) runs before the release."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import structlog

from config import Settings
from purgatory import release
from purgatory.fetch import objects as fetch
from purgatory.fetch.outbound import check_clone_url
from purgatory.locate import Locator
from purgatory.ports import FetchMetrics, HeldReads
from purgatory.quarantine import Quarantines
from purgatory.sync.context import FetchOutcome
from purgatory.sync.served_gaps import ServedGaps
from purgatory.sync.throttle import domain_of
from storage.nostr import nip34
from storage.sqlite.records import HeldEntry

log = structlog.get_logger(__name__)


#: the release step, run when a fetch brought data for an identifier
OnGitData = Callable[[str], Awaitable[object]]
#: completes the served repos of an identifier whose gaps the data now on this server fills
CompleteGaps = Callable[[str], Awaitable[object]]


class StoreSyncContext:
    def __init__(self, settings: Settings, store: HeldReads, locator: Locator, quarantines: Quarantines,
                 on_git_data: OnGitData, metrics: FetchMetrics, *, gaps: ServedGaps | None = None,
                 complete_gaps: CompleteGaps | None = None) -> None:
        self.settings = settings
        self.store = store
        self.locator = locator
        self.quarantines = quarantines
        self.on_git_data = on_git_data
        self.metrics = metrics
        self.gaps = gaps
        self.complete_gaps = complete_gaps
        self._processing = asyncio.Semaphore(settings.sync_process_concurrency)

    def now(self) -> float:
        return time.monotonic()

    async def _waiting(self, identifier: str) -> list[HeldEntry]:
        """Held events that promise objects (announcements wait on their states)."""
        return [e for e in await self.store.held(identifier) if e.event.kind in _DATA_KINDS]

    def _has_gap(self, identifier: str) -> bool:
        return self.gaps is not None and self.gaps.has(identifier, self.now())

    async def has_pending(self, identifier: str) -> bool:
        return self._has_gap(identifier) or bool(await self._waiting(identifier))

    async def needed_oids(self, identifier: str) -> set[str]:
        wanted: set[str] = set()
        for entry in await self._waiting(identifier):
            wanted |= release.needed_oids(entry.event)
        if self.gaps is not None:
            wanted |= self.gaps.needed(identifier, self.now())
        if not wanted:
            return wanted
        paths = self.locator.sources(identifier)
        return await asyncio.to_thread(self.locator.still_missing, paths, wanted)

    async def clone_urls(self, identifier: str) -> list[str]:
        urls: list[str] = []
        for ann in self.locator.announcements(identifier).events:
            urls += nip34.clone_urls(ann)
        for entry in await self._waiting(identifier):
            if entry.event.kind in (nip34.PR, nip34.PR_UPDATE):
                urls += nip34.clone_urls(entry.event)
        return list(dict.fromkeys(urls))

    async def fetch(self, identifier: str, url: str, oids: frozenset[str]) -> FetchOutcome:
        """One fetch session, connecting only to the addresses the outbound check approved (the
        scheme, http or https, is part of the check). A refusal because the server lacks one
        of the objects is returned as is: the sync logic asks again per object, each in a
        throttle slot of its own, so the domain's limits count every request."""
        check = await check_clone_url(url, self.settings.outbound_allow_private)
        if check.refusal is not None:
            log.info("fetch.blocked", identifier=identifier, url=url, reason=check.refusal)
            self.metrics.sync_fetch(domain_of(url) or "invalid", "blocked", 0.0)
            return FetchOutcome.failure("error", f"blocked: {check.refusal}")
        dest = await self.quarantines.ensure(identifier, self.locator.served_paths(identifier))
        started = time.monotonic()
        outcome = await fetch.fetch_oids(url, dest, oids, self.settings.fetch_timeout_s, check.addresses)
        self.metrics.sync_fetch(domain_of(url) or "invalid", outcome.kind, time.monotonic() - started)
        if not await self.has_pending(identifier):  # expired or released by a push meanwhile
            await self.quarantines.drop(identifier)
        return outcome

    async def process_new_data(self, identifier: str) -> None:
        # releases after fetches come in bursts (a throttle window opening on many domains
        # at once); a few lanes keep them from crowding websocket work off the event loop
        async with self._processing:
            if self._has_gap(identifier) and self.complete_gaps is not None:
                await self.complete_gaps(identifier)
            # the release drops the quarantine when nothing is held: not while a gap still
            # waits for objects part of which may be there already
            if not self._has_gap(identifier) or await self._waiting(identifier):
                await self.on_git_data(identifier)


_DATA_KINDS = frozenset({nip34.STATE, nip34.PR, nip34.PR_UPDATE})
