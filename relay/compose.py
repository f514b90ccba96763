"""The composition root: every long-lived part of a daemon, built in dependency order and
handed only what it uses (a view, a `publish`, a broadcaster, the metrics sink, the
settings), so that no part holds the app and nothing is wired by setting attributes after
construction.

    settings ─ live (what a reload replaces) ─ metrics, subscriptions, outbox budget, repos
    store (opened here: SQLite, the writer thread, the read view)
    purgatory parts (purgatory/lifecycle.py): locator (view, query, repos), quarantines,
        placeholders (store, view, repos) ─> release (store, repos; after-release hooks)
        ─> adoption (repos, locator) ─> holding (store, release, adoption, placeholders)
    sync requests (queue + wake-up) ─┬─> holding (enqueues)
                                     ├─> sync service (reads) <── store sync context
                                     │   (held, locator, quarantines, release.on_git_data,
                                     │    served gaps, served-data check.complete)
                                     └─> served-data check (hourly; records gaps, enqueues)
    ingest (view, save, policy via live, holding.accept, after-store hooks)
    push gate (view, held, repos, placeholders.expect_pr / release.on_git_data) ─> git smart HTTP
    GRASP-06, when on: contributor repos (a second RepoStore) ─> placeholders, release;
        their pushes (view, placeholders.expect_prs_pr, release.on_git_data) ─> /prs/ smart HTTP
    peer sync (store, live limits, ingest.publish; its after_store is an after-store hook)
    connection parts (store, ingest.publish, ...)

Hooks are explicit lists, run in order, as khatru keeps them: `after_store` runs after an
event was saved and before its OK, `after_release` for each event the purgatory released.
`Components.start()` and `close()` run the lifecycle in the order the parts depend on."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pygit2
import structlog

from config import Settings
from purgatory.adopt import Adoption
from purgatory.apply import AfterRelease, Release
from purgatory.holding import Holding
from purgatory.integrity.served_data import ServedDataCheck
from purgatory.integrity.sweep import StartupIntegrity
from purgatory.locate import Locator
from purgatory.placeholders import Placeholders
from purgatory.quarantine import Quarantines
from purgatory.sync.loops import SyncRequests, SyncService
from purgatory.sync.served_gaps import ServedGaps
from purgatory.sync.store_context import StoreSyncContext
from relay.daemon.reload import Live
from relay.git.prs import PrsPushes
from relay.git.push_gate import PushGate
from relay.git.smart_http import GitHttp
from relay.metrics import MetricsSink, build_metrics
from relay.nostr import orphans
from relay.nostr.ingest import AfterStore, Ingest, Outcome
from relay.nostr.outbox import OutboxTotals
from relay.nostr.subscriptions import Subscriptions
from relay.nostr.websocket import ConnectionParts
from relay.peers.sync import PeerSync
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore
from storage.sqlite.events import EventStore

log = structlog.get_logger(__name__)

DELETION = 5


@dataclass(frozen=True)
class Components:
    """What one daemon owns once its store is open; the ASGI app routes requests to these."""

    settings: Settings
    live: Live
    metrics: MetricsSink
    subscriptions: Subscriptions
    repos: RepoStore
    store: EventStore
    holding: Holding
    sync: SyncService
    ingest: Ingest
    pushes: PushGate
    git: GitHttp
    peers: PeerSync
    integrity: StartupIntegrity
    served_data: ServedDataCheck
    connection_parts: ConnectionParts
    after_store: tuple[AfterStore, ...]
    after_release: tuple[AfterRelease, ...]
    #: GRASP-06 `/prs/` smart HTTP (None: off, the paths answer 404)
    prs_git: GitHttp | None = None

    async def start(self) -> None:
        """Start the background work: the purgatory's sweeper (in `holding`), the sync loops, the peers;
        every identifier with waiting events is looked at once; the integrity pass runs in
        the background while the port opens."""
        self.holding.start()
        self.sync.start()
        self.peers.start()
        for identifier in await self.store.held_identifiers():
            self.sync.enqueue(identifier, 0)
        log.info("relay_started", domain=self.settings.domain, data_dir=str(self.settings.data_dir))
        self.integrity.start(self.store.view)
        self.served_data.start()

    async def close(self) -> None:
        """Stop in reverse dependency order; the store closes last, when nothing writes."""
        await self.served_data.stop()
        await self.integrity.stop()
        await self.peers.stop()
        await self.sync.stop()
        await self.holding.stop()
        await self.store.close()


async def open_components(settings: Settings, live: Live) -> Components:
    """Open the store and build every part on it, nothing started yet. `live` comes from
    the app, which owns reloads (a SIGHUP may arrive before the store is open)."""
    metrics = build_metrics(settings.metrics_enabled, max_peers=settings.peer_metrics_max_peers)
    subscriptions = Subscriptions()
    repos = RepoStore(settings.repos_dir, settings.git_binary, settings.pending_dir)
    integrity = StartupIntegrity(settings, repos, metrics)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.repos_dir.mkdir(parents=True, exist_ok=True)
    store = await EventStore.open(settings.db_path, settings)

    async def broadcast(event: Event) -> None:
        subscriptions.broadcast(event)

    # the clock is StoreSyncContext.now's: the queue's due times are monotonic
    requests = SyncRequests.from_settings(settings, time.monotonic)
    async def peers_after_release(event: Event) -> None:
        """A released announcement or root changes what the peers are asked for, as a stored one does."""
        await peers.after_store(event)

    after_release: tuple[AfterRelease, ...] = (broadcast, peers_after_release)
    quarantines = Quarantines(settings.data_dir / "quarantine")
    locator = Locator(repos, store.view, store, quarantines.path, nip34.WalkLimits.of(settings))
    prs_repos = open_contributor_repos(settings)
    placeholders = Placeholders(store, store.view, repos, lambda ident: locator.announcements(ident).owners,
                                metrics, settings.purgatory_expiry_s, prs=prs_repos, domain=settings.domain)
    releases = Release(store, repos, locator, placeholders, quarantines.drop, metrics, after_release=after_release)
    adoption = Adoption(repos, locator, store.view)
    holding = Holding(settings, store, store.view, repos, metrics, on_git_data=releases.on_git_data,
                      release_entries=releases.release_entries, adopt_served_state=adoption.adopt_served_state,
                      pr_event_arrived=placeholders.event_arrived, pr_event_expired=placeholders.event_expired,
                      expire_placeholders=placeholders.expire_due,
                      drop_quarantine=quarantines.drop, enqueue_sync=requests.enqueue)
    # served repos lacking their state's objects: found hourly, fetched by the same sync
    gaps = ServedGaps(settings.served_data_max_gaps, 2 * settings.served_data_check_s)
    served_data = ServedDataCheck(settings, store.view, repos, locator, gaps, requests.enqueue, metrics)
    sync_context = StoreSyncContext(settings, store, locator, quarantines, releases.on_git_data, metrics,
                                    gaps=gaps, complete_gaps=served_data.complete)
    sync = SyncService(settings, sync_context, requests=requests, on_throttle_wait=metrics.throttle_wait)

    async def adopt_announcement(event: Event) -> None:
        """A served announcement (an update, or a maintainer's) has a repo, aligned with its
        maintainers' served state."""
        if event.kind == nip34.ANNOUNCEMENT:
            await adoption.adopt_announcement(event)

    async def drop_orphans(event: Event) -> None:
        """What rested only on the deleted events goes with them."""
        if event.kind == DELETION:
            await orphans.drop_orphans(event, store.view, live.policy_context, store.query, store.remove_orphans)

    # peer sync's events go through ingest, and its after-store hook (re-plan on a new
    # announcement or root, retry what waited for this event) is one of ingest's hooks
    async def publish_synced(event: Event, source: str) -> Outcome:
        return await ingest.publish(event, source)

    peers = PeerSync(settings, live, store, metrics, publish_synced)

    async def hold(event: Event, identifier: str | None, source: str) -> str | None:
        """The purgatory's intake; a held announcement's relays are followed too."""
        message = await holding.accept(event, identifier, source)
        if message is not None:
            peers.after_hold(event)
        return message

    after_store: tuple[AfterStore, ...] = (broadcast, adopt_announcement, drop_orphans, peers.after_store)
    ingest = Ingest(store.view, store.save, live, metrics, hold, after_store)
    pushes = PushGate(settings, store.view, store, repos, metrics, placeholders.expect_pr, releases.on_git_data,
                      context=lambda: live.policy_context)
    git = GitHttp(repos, settings, plan=pushes.plan, admit=pushes.admit, on_pushed=pushes.on_pushed,
                  metrics=metrics)
    prs_git = None
    if prs_repos is not None:
        prs_pushes = PrsPushes(settings, store.view.get_event, prs_repos, placeholders.expect_prs_pr,
                               releases.on_git_data)
        prs_git = GitHttp(prs_repos, settings, plan=prs_pushes.plan, admit=pushes.admit,
                          on_pushed=prs_pushes.on_pushed, metrics=metrics, empty=settings.prs_empty_repo)
    outbox_totals = OutboxTotals(settings.outbox_total_max_bytes)  # every connection's outbox
    parts = ConnectionParts(settings, live, store, ingest.publish, subscriptions, outbox_totals, metrics)
    return Components(settings, live, metrics, subscriptions, repos, store, holding, sync, ingest, pushes, git,
                      peers, integrity, served_data, parts, after_store, after_release, prs_git)


def open_contributor_repos(settings: Settings) -> RepoStore | None:
    """GRASP-06 contributor repos, when on: their store, the one empty repo unknown paths
    answer as, and the start-up clean-up of repos and pending areas left with no ref."""
    if not settings.grasp06_enabled:
        return None
    prs_repos = RepoStore(settings.prs_dir, settings.git_binary, settings.prs_pending_dir)
    if not (settings.prs_empty_repo / "HEAD").is_file():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pygit2.init_repository(str(settings.prs_empty_repo), bare=True, initial_head="main")
    removed = prs_repos.remove_empty_pending() + prs_repos.remove_empty_repos()
    if removed:
        log.info("prs_repos_removed", count=removed, reason="no ref left")
    return prs_repos

