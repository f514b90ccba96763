"""Intake and expiry: events come into the purgatory here and leave it here when nobody
brought their data in time.

Every held event is committed to the purgatory tables before its `OK`, so a `kill -9`
loses nothing; deadlines are absolute (wall clock) so they survive restarts too. An event
whose data is already here is released at once by the same intake (its OK is then ""); an
announcement whose maintainers' state is served is released with that state's data. The
moves are the event rows of `purgatory.lifecycle`."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import structlog

from config import Settings
from purgatory import lifecycle, release
from purgatory.ports import HoldingStore, PurgatoryMetrics, ServedAnnouncement
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore
from storage.sqlite.records import HeldEntry

log = structlog.get_logger(__name__)

#: asks the sync service to look for an identifier's data after `delay` seconds
Enqueue = Callable[[str, float], None]
#: the release step: what the data here satisfies is released, the released ids returned
OnGitData = Callable[[str], Awaitable[set[str]]]
#: moves these held entries into the served store, for this lifecycle trigger
ReleaseEntries = Callable[[str, list[HeldEntry], str], Awaitable[None]]
#: brings a new owner's repo to its maintainers' served state; True when it is there
AdoptServedState = Callable[[Event, str], Awaitable[bool]]
#: a PR event came: its early-pushed ref stops waiting for a deadline (or goes, if contradicted)
PrEventArrived = Callable[[Event], Awaitable[None]]
#: a held PR event expired: its early-pushed ref goes too
PrEventExpired = Callable[[Event], Awaitable[None]]
Step = Callable[[], Awaitable[None]]
DropQuarantine = Callable[[str], Awaitable[None]]


class Holding:
    """Built by relay/compose.py from the release, adoption and placeholder steps it calls."""

    def __init__(self, settings: Settings, store: HoldingStore, view: ServedAnnouncement, repos: RepoStore,
                 metrics: PurgatoryMetrics, *, on_git_data: OnGitData, release_entries: ReleaseEntries,
                 adopt_served_state: AdoptServedState, pr_event_arrived: PrEventArrived,
                 pr_event_expired: PrEventExpired, expire_placeholders: Step, drop_quarantine: DropQuarantine,
                 enqueue_sync: Enqueue | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.view = view
        self.repos = repos
        self.metrics = metrics
        self.on_git_data = on_git_data
        self.release_entries = release_entries
        self.adopt_served_state = adopt_served_state
        self.pr_event_arrived = pr_event_arrived
        self.pr_event_expired = pr_event_expired
        self.expire_placeholders = expire_placeholders
        self.drop_quarantine = drop_quarantine
        self.enqueue_sync = enqueue_sync  # None: no sync service (tests, sync disabled)
        self.clock = clock
        self._intake = asyncio.Semaphore(settings.purgatory_intake_concurrency)
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.repos.remove_empty_pending()  # left by a crash between a claim and its removal
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    # --- intake ---------------------------------------------------------------------------
    async def accept(self, event: Event, identifier: str | None, source: str) -> str | None:
        """Hold an event the policy sent to the purgatory. Returns the OK message ("" when
        its data was already here and it is served now), or None when it expired earlier."""
        # holding takes several store and repo steps; a burst of pipelined announcements
        # goes through a few at a time so websocket work keeps its turn on the event loop
        async with self._intake:
            return await self._accept(event, identifier, source)

    async def _accept(self, event: Event, identifier: str | None, source: str) -> str | None:
        if identifier is None:
            identifier = event.d_tag
        if await self.store.is_expired(event.id):
            lifecycle.step(lifecycle.EXPIRED, lifecycle.HOLD)
            return None
        if event.kind == nip34.ANNOUNCEMENT:
            await asyncio.to_thread(self.repos.ensure, event.pubkey, identifier)
        if event.kind in (nip34.PR, nip34.PR_UPDATE):
            await self.pr_event_arrived(event)
        expires_at = self.clock() + self.settings.purgatory_expiry_s
        held = await self.store.hold(event, identifier, expires_at, source)
        lifecycle.step(lifecycle.NEW if held else lifecycle.HELD, lifecycle.HOLD)
        if held:
            self.metrics.purgatory_event(event.kind, "held")
            log.info("purgatory_held", event_id=event.id, kind=event.kind, identifier=identifier)
        released = await self.on_git_data(identifier)
        if event.id in released:
            return ""
        if event.kind == nip34.ANNOUNCEMENT and await self.adopt_served_state(event, identifier):
            # its maintainers' served state now rules its repo: nothing left to wait for
            mine = [e for e in await self.store.held(identifier) if e.event.id == event.id]
            await self.release_entries(identifier, mine, lifecycle.STATE_ADOPTED)
            return ""
        if self.enqueue_sync is not None:
            delay = self.settings.sync_user_delay_s if source == "client" else self.settings.sync_synced_delay_s
            self.enqueue_sync(identifier, delay)
        return release.PURGATORY_MESSAGE

    # --- expiry ---------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purgatory_sweep_s)
            try:
                await self.expire_due()
            except Exception as exc:  # keep sweeping; a failed sweep is retried next round
                log.error("purgatory_sweep_failed", error=str(exc))

    async def expire_due(self) -> int:
        """Expire what is past its deadline (PR-ref placeholders first), forget expiries older
        than the memory; returns how many events expired."""
        await self.expire_placeholders()
        if await self.store.forget_expired(self.clock() - self.settings.purgatory_expired_memory_s):
            lifecycle.step(lifecycle.EXPIRED, lifecycle.MEMORY_ELAPSED)
        due = await self.store.expired_due(self.clock())
        if not due:
            return 0
        for _ in due:
            lifecycle.step(lifecycle.HELD, lifecycle.DEADLINE)
        await self.store.discard([e.event.id for e in due], "expired")
        for entry in due:
            self.metrics.purgatory_event(entry.event.kind, "expired")
            log.info("purgatory_expired", event_id=entry.event.id, kind=entry.event.kind,
                     identifier=entry.identifier)
            if entry.event.kind == nip34.ANNOUNCEMENT:
                await self._remove_if_unserved(entry.event.pubkey, entry.identifier)
            elif entry.event.kind in (nip34.PR, nip34.PR_UPDATE):
                await self.pr_event_expired(entry.event)
        for identifier in {e.identifier for e in due}:
            if not await self.store.held(identifier):
                await self.drop_quarantine(identifier)
        return len(due)

    async def _remove_if_unserved(self, owner: str, identifier: str) -> None:
        """An expired announcement's repo goes too, if nothing else serves it and it is empty."""
        if self.view.served_announcement(owner, identifier) is not None:
            return
        if self.repos.exists(owner, identifier) and not self.repos.refs(self.repos.path(owner, identifier)):
            await self.repos.remove_async(owner, identifier)
            log.info("repo_removed", owner=owner, identifier=identifier, reason="announcement expired")
