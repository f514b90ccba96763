"""Hold, release and expire events that wait for their git data.

Every held event is committed to the purgatory tables before its `OK`, so a `kill -9`
loses nothing; deadlines are absolute (wall clock) so they survive restarts too. One
function, `on_git_data(identifier)`, runs whenever data may have arrived (a push, a fetch,
a new event whose data is already here): it releases what is satisfied, oldest first,
aligns the repos and writes PR refs."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence
from urllib.parse import quote

import structlog

from config import Settings
from purgatory.integrity import compare as integrity
from purgatory import quarantine, release
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)


#: runs for each event the release moved into the served store, in list order (the broadcast)
AfterRelease = Callable[[Event], Awaitable[None]]
#: asks the sync service to look for an identifier's data after `delay` seconds
Enqueue = Callable[[str, float], None]


class Purgatory:
    """Built by relay/compose.py before the sync service: both share the sync queue, whose
    `enqueue` is given here, so neither needs the other and nothing is set afterwards."""

    def __init__(self, settings: Settings, store: Any, repos: RepoStore, metrics: Any, *,
                 after_release: Sequence[AfterRelease] = (), enqueue_sync: Enqueue | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.repos = repos
        self.after_release = tuple(after_release)
        self.metrics = metrics
        self.clock = clock
        self.walk = nip34.WalkLimits.of(settings)
        self.enqueue_sync = enqueue_sync  # None: no sync service (tests, sync disabled)
        self._locks: dict[str, asyncio.Lock] = {}
        self._intake = asyncio.Semaphore(settings.purgatory_intake_concurrency)
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.repos.remove_empty_pending()  # left by a crash between a claim and its removal
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    def quarantine_path(self, identifier: str) -> Path:
        """Fetched objects wait here, outside the served repos, until their event is released:
        protocol v2 serves any object of a repo by id, so unreleased data must not be in one."""
        return self.settings.data_dir / "quarantine" / f"{quote(identifier, safe='')}.git"

    async def ensure_quarantine(self, identifier: str) -> Path:
        """The quarantine, created if needed and linked to the identifier's served repos
        (afresh each time: a fetch negotiates with what is served now)."""
        path = self.quarantine_path(identifier)
        served = self.served_paths(identifier)
        await asyncio.to_thread(_prepare_quarantine, path, served)
        return path

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
            return None
        if event.kind == nip34.ANNOUNCEMENT:
            await asyncio.to_thread(self.repos.ensure, event.pubkey, identifier)
        if event.kind in (nip34.PR, nip34.PR_UPDATE):
            await self.store.remove_placeholder(event.id)
            await self._drop_contradicting_pr_refs(event)
        expires_at = self.clock() + self.settings.purgatory_expiry_s
        held = await self.store.hold(event, identifier, expires_at, source)
        if held:
            self.metrics.purgatory_event(event.kind, "held")
            log.info("purgatory_held", event_id=event.id, kind=event.kind, identifier=identifier)
        released = await self.on_git_data(identifier)
        if event.id in released:
            return ""
        if event.kind == nip34.ANNOUNCEMENT and await self._adopt_served_state(event, identifier):
            # its maintainers' served state now rules its repo: nothing left to wait for
            await self._release(identifier, [e for e in await self.store.held(identifier) if e.event.id == event.id])
            return ""
        if self.enqueue_sync is not None:
            delay = self.settings.sync_user_delay_s if source == "client" else self.settings.sync_synced_delay_s
            self.enqueue_sync(identifier, delay)
        return release.PURGATORY_MESSAGE

    async def adopt_announcement(self, announcement: Event) -> None:
        """A served announcement (an update, or a maintainer's) has its repo, with data; and
        it may change who maintains any repo of its identifier (a key confirms, steps down,
        is added or removed), so every served repo of the identifier follows its maintainers
        again (`_follow_maintainers`: forward only, never rolled back)."""
        identifier = announcement.d_tag
        await asyncio.to_thread(self.repos.ensure, announcement.pubkey, identifier)
        await self._adopt_served_state(announcement, identifier)
        states = await self._served_states(identifier)
        for owner in self.announcements(identifier).owners:
            if owner != announcement.pubkey and self.store.view.served_announcement(owner, identifier) is not None:
                await self._follow_maintainers(owner, identifier, states)

    async def _adopt_served_state(self, announcement: Event, identifier: str) -> bool:
        """A new owner whose maintainers already have a served state here gets that state's
        data at once: the state is authoritative for this owner's repo as well. True when
        the repo is at such a state afterwards."""
        return await self._follow_maintainers(announcement.pubkey, identifier, await self._served_states(identifier))

    async def _follow_maintainers(self, owner: str, identifier: str, served: list[Event]) -> bool:
        """Bring `owner`'s repo to the newest served state of its confirmed maintainers now,
        when the repo is empty or exactly at an older served state; True when the repo is at
        that state afterwards.

        Recomputed on every announcement that may change the set, with these limits (the
        issue's "do not roll back history on a membership change"): a repo exactly at a
        *newer* served state, set while its author was a maintainer, keeps its refs until a
        confirmed maintainer publishes a newer state (logged `state_kept`; the integrity pass
        leaves it alone for the same reason); a repo at no served state at all (a push whose
        state is being released, or refs moved behind our back) is left to the release and
        to the integrity pass. New states and pushes follow the new set at once anyway: each
        decision computes the set afresh."""
        if not self.repos.exists(owner, identifier):
            return False
        members = self.maintainer_set(owner, identifier)
        latest = next((s for s in served if s.pubkey in members), None)
        if latest is None:
            return False
        path = self.repos.path(owner, identifier)
        refs_now, head_now = self.repos.refs(path), self.repos.head(path)
        at = integrity.at_state(refs_now, head_now, served)
        if at is not None and at.id == latest.id:
            return True
        if at is not None and _newer(at, latest):
            log.info("state_kept", owner=owner, identifier=identifier, state=at.id, newest_of_maintainers=latest.id)
            return False
        if at is None and refs_now:
            return False
        refs, head = nip34.state_refs(latest)
        source = await self.locate(identifier, refs.values())
        if source is None:
            return False
        await self._align(source, path, refs, head)
        return True

    # --- release --------------------------------------------------------------------------
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
            anns = self.announcements(identifier)
            paths = self.sources(identifier, anns)
            authors = {e.event.pubkey for e in entries if e.event.kind == nip34.STATE}
            owners = {author: self._owners_of(author, anns) for author in authors}
            plan = await asyncio.to_thread(
                release.plan, entries, lambda oids: self.first_holding(paths, oids), owners.__getitem__
            )
            if not plan.entries:
                return set()
            # repos first, then the store: a crash in between leaves data whose events are
            # still held, and the next look (a restart enqueues every held identifier)
            # releases them; the other order could serve a state whose repo never got it
            await self._apply_states(identifier, plan.states)
            await self._write_pr_refs(identifier, plan.prs)
            await self._release(identifier, plan.entries)
            if not await self.store.held(identifier):
                await self.drop_quarantine(identifier)
            return set(plan.event_ids)

    async def _release(self, identifier: str, entries: list[Any]) -> None:
        """Move held entries into the served store (one transaction) and broadcast them."""
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
        served = await self._served_states(identifier)
        lookup = self._lookup(identifier)
        for owner in newest.owners:
            members = self.maintainer_set(owner, identifier, lookup)
            latest = next((s for s in served if s.pubkey in members), None)
            if latest is not None and _newer(latest, newest.event):
                log.info("state_superseded", event_id=newest.event.id, by=latest.id, owner=owner)
                continue
            if self.repos.exists(owner, identifier):
                await self._align(newest.source, self.repos.path(owner, identifier), newest.refs, newest.head)

    async def _align(self, source: Path, target: Path, refs: dict[str, str], head: str | None) -> None:
        async with self.repos.lock(target):  # never beside a push being checked
            if source != target:
                await self.repos.copy_objects_async(source, target, sorted(set(refs.values())))
            await self.repos.set_refs_async(target, refs, head)
        log.info("repo_aligned", repo=str(target), refs=len(refs), head=head)

    async def _write_pr_refs(self, identifier: str, prs: list[release.PrRelease]) -> None:
        """A released PR's ref goes into the served repos it names, with its objects; the
        pushes that waited for it in pending areas are then claimed (and removed)."""
        for pr in prs:
            name = nip34.PR_REF_PREFIX + pr.event.id
            for owner, ident in self._pr_repos(pr.event):
                if not self.repos.exists(owner, ident):
                    continue
                target = self.repos.path(owner, ident)
                async with self.repos.lock(target):
                    if pr.source != target:
                        await self.repos.copy_objects_async(pr.source, target, [pr.tip])
                    await asyncio.to_thread(self.repos.set_ref, target, name, pr.tip)
            await self._drop_pending(identifier, name)

    async def _drop_pending(self, identifier: str, name: str) -> None:
        """Remove a PR ref from every pending area of this identifier (claimed, contradicted
        or expired); a pending repo goes with its last ref, and the objects with it."""
        for owner in self.announcements(identifier).owners:
            if self.repos.pending_exists(owner, identifier):
                async with self.repos.lock(self.repos.path(owner, identifier)):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)

    async def expect_pr(self, event_id: str, owner: str, identifier: str, tip: str) -> None:
        """A `refs/nostr/<id>` was pushed before its event: keep it for as long as an event
        may wait in purgatory, then remove it, so pushes nobody signs do not stay served."""
        expires_at = self.clock() + self.settings.purgatory_expiry_s
        await self.store.add_placeholder(event_id, f"{owner}/{identifier}", tip, expires_at)

    async def _expire_placeholders(self) -> None:
        for event_id, repo, _tip in await self.store.placeholders_due(self.clock()):
            await self.store.remove_placeholder(event_id)
            if self.store.view.get_event(event_id) is not None:
                continue  # claimed meanwhile
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

    async def _drop_contradicting_pr_refs(self, event: Event) -> None:
        """A `refs/nostr/<id>` pushed before its event must hold the tip the event names;
        a different tip is removed so that the right one can be pushed or fetched."""
        tip = nip34.pr_tip(event)
        name = nip34.PR_REF_PREFIX + event.id
        for owner, identifier in self._pr_repos(event):
            served = self.repos.path(owner, identifier)
            pushed = self.repos.get_ref(served, name) if self.repos.exists(owner, identifier) else None
            waiting = self.repos.pending_refs(owner, identifier).get(name)
            if pushed in (None, tip) and waiting in (None, tip):
                continue
            async with self.repos.lock(served):
                if pushed not in (None, tip):
                    await asyncio.to_thread(self.repos.delete_ref, served, name)
                if waiting not in (None, tip):
                    await asyncio.to_thread(self.repos.drop_pending_ref, owner, identifier, name)
            log.info("pr_ref_removed", ref=name, repo=str(served), pushed=pushed, waiting=waiting, named=tip)

    def _pr_repos(self, event: Event) -> list[tuple[str, str]]:
        coords = nip34.pr_repo_coordinates(event)
        if not coords and event.kind == nip34.PR_UPDATE:
            root_id = nip34.pr_root(event)
            root = self.store.view.get_event(root_id) if root_id else None
            coords = nip34.pr_repo_coordinates(root) if root else []
        out = []
        for coord in coords:
            parsed = nip34.parse_coordinate(coord)
            if parsed is not None:
                out.append((parsed[1], parsed[2]))
        return out

    # --- expiry ---------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purgatory_sweep_s)
            try:
                await self.expire_due()
            except Exception as exc:  # keep sweeping; a failed sweep is retried next round
                log.error("purgatory_sweep_failed", error=str(exc))

    async def expire_due(self) -> int:
        await self._expire_placeholders()
        await self.store.forget_expired(self.clock() - self.settings.purgatory_expired_memory_s)
        due = await self.store.expired_due(self.clock())
        if not due:
            return 0
        await self.store.discard([e.event.id for e in due], "expired")
        for entry in due:
            self.metrics.purgatory_event(entry.event.kind, "expired")
            log.info("purgatory_expired", event_id=entry.event.id, kind=entry.event.kind,
                     identifier=entry.identifier)
            if entry.event.kind == nip34.ANNOUNCEMENT:
                await self._remove_if_unserved(entry.event.pubkey, entry.identifier)
        for identifier in {e.identifier for e in due}:
            if not await self.store.held(identifier):
                await self.drop_quarantine(identifier)
        return len(due)

    async def _remove_if_unserved(self, owner: str, identifier: str) -> None:
        if self.store.view.served_announcement(owner, identifier) is not None:
            return
        if self.repos.exists(owner, identifier) and not self.repos.refs(self.repos.path(owner, identifier)):
            await self.repos.remove_async(owner, identifier)
            log.info("repo_removed", owner=owner, identifier=identifier, reason="announcement expired")

    async def drop_quarantine(self, identifier: str) -> None:
        path = self.quarantine_path(identifier)
        if path.exists():
            await asyncio.to_thread(shutil.rmtree, path, True)

    # --- reading the world ----------------------------------------------------------------
    def announcements(self, identifier: str) -> "Announcements":
        """One read of an identifier's announcements, for all the questions one step asks
        (owners, maintainer sets, repo paths): each store read on the event loop costs far
        more under load than its query, as it gives up and waits to retake the GIL."""
        return Announcements(self.store.view.announcements_for(identifier))

    def _lookup(self, identifier: str) -> Callable[[str], Event | None]:
        return self.announcements(identifier).of

    def _owners_of(self, author: str, anns: "Announcements") -> list[str]:
        return nip34.owners_authorising(author, anns.events, anns.of, now=self.clock(), limits=self.walk)

    def maintainer_set(self, owner: str, identifier: str,
                       lookup: Callable[[str], Event | None] | None = None) -> frozenset[str]:
        """The confirmed maintainers of `owner`'s repo now (`nip34.walk_maintainers`)."""
        return nip34.maintainer_set(owner, identifier, lookup or self._lookup(identifier),
                                    now=self.clock(), limits=self.walk)

    def served_paths(self, identifier: str, anns: "Announcements | None" = None) -> list[Path]:
        anns = anns or self.announcements(identifier)
        return [self.repos.path(owner, identifier) for owner in anns.owners if self.repos.exists(owner, identifier)]

    def sources(self, identifier: str, anns: "Announcements | None" = None) -> list[Path]:
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

    async def _served_states(self, identifier: str) -> list[Event]:
        """Served 30618s for this identifier, newest first (tie: lowest id)."""
        from storage.nostr.filters import Filter

        states = Filter(kinds=frozenset({nip34.STATE}), tags=(("d", frozenset({identifier})),))
        found = await self.store.query([states], 1000)
        return sorted(found, key=lambda e: (-e.created_at, e.id))



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


def _prepare_quarantine(path: Path, served: list[Path]) -> None:
    if not (path / "HEAD").is_file():
        quarantine.init_quarantine(path)
    quarantine.link_served(path, served)


def _newer(a: Event, b: Event) -> bool:
    """Does a supersede b, as addressable events do: newer created_at, tie to the lowest id."""
    return (a.created_at, b.id) > (b.created_at, a.id)
