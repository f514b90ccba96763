"""The real `SyncContext`: the sync logic's window on the store, the repos and the network.

A thin adapter: the purgatory service knows which events wait and where objects may be
found, `fetch.py` moves bytes, and this class only translates between them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from config import Settings
from purgatory.fetch import objects as fetch
from purgatory import release
from purgatory.sync.context import FetchOutcome
from purgatory.fetch.outbound import check_clone_url
from purgatory.service import Purgatory
from purgatory.sync.throttle import domain_of
from storage.nostr import nip34

log = structlog.get_logger(__name__)


class StoreSyncContext:
    def __init__(self, settings: Settings, purgatory: Purgatory, metrics: Any) -> None:
        self.settings = settings
        self.purgatory = purgatory
        self.store = purgatory.store
        self.repos = purgatory.repos
        self.metrics = metrics
        self._processing = asyncio.Semaphore(settings.sync_process_concurrency)

    def now(self) -> float:
        return time.monotonic()

    async def _waiting(self, identifier: str) -> list[Any]:
        """Held events that promise objects (announcements wait on their states)."""
        return [e for e in await self.store.held(identifier) if e.event.kind in _DATA_KINDS]

    async def has_pending(self, identifier: str) -> bool:
        return bool(await self._waiting(identifier))

    async def needed_oids(self, identifier: str) -> set[str]:
        wanted: set[str] = set()
        for entry in await self._waiting(identifier):
            wanted |= release.needed_oids(entry.event)
        if not wanted:
            return wanted
        paths = self.purgatory.sources(identifier)
        return await asyncio.to_thread(self.purgatory.still_missing, paths, wanted)

    async def clone_urls(self, identifier: str) -> list[str]:
        urls: list[str] = []
        for ann in self.purgatory.announcements(identifier).events:
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
        dest = await self.purgatory.ensure_quarantine(identifier)
        started = time.monotonic()
        outcome = await fetch.fetch_oids(url, dest, oids, self.settings.fetch_timeout_s, check.addresses)
        self.metrics.sync_fetch(domain_of(url) or "invalid", outcome.kind, time.monotonic() - started)
        if not await self.has_pending(identifier):  # expired or released by a push meanwhile
            await self.purgatory.drop_quarantine(identifier)
        return outcome

    async def process_new_data(self, identifier: str) -> None:
        # releases after fetches come in bursts (a throttle window opening on many domains
        # at once); a few lanes keep them from crowding websocket work off the event loop
        async with self._processing:
            await self.purgatory.on_git_data(identifier)


_DATA_KINDS = frozenset({nip34.STATE, nip34.PR, nip34.PR_UPDATE})
