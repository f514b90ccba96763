"""GRASP-02 proactive sync of events: follow the other relays that accepted announcements
name (and the bootstrap relays), and pass what they have about those repositories through
exactly the path a client's events take (limits, id and signature, policy, purgatory with the
synced delay), with the peer's URL as the source.

`PeerSync` plans (relay/peers/plan.py), keeps one follower task per peer with its health
(relay/peers/health.py) and progress, and runs a session per connection
(relay/peers/session.py). It re-plans when an announcement or a new root event is stored
(`after_store`, one of compose's after-store hooks) and every `peer_refresh_s` as a backstop;
events the policy refused for want of a parent wait in a bounded cache
(relay/peers/retry.py) and are offered again when a parent is stored or at the next round."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
import websockets
from websockets.exceptions import InvalidHandshake, InvalidURI

from config import Settings
from purgatory.fetch.outbound import check_outbound
from relay.daemon.reload import Live
from relay.metrics import MetricsSink
from relay.nostr.ingest import Outcome
from relay.nostr.protocol import check_limits
from relay.peers import health as h
from relay.peers.frames import RateLimited
from relay.peers.health import HealthLimits, PeerHealth
from relay.peers.plan import COORDINATE_TAGS, PeerPlan, is_root_candidate, plan_peers, root_map
from relay.peers.retry import RetryCache, may_accept_later, provides
from relay.peers.session import PeerProgress, PeerSession, SessionHooks, SessionLimits
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Items
from storage.sqlite.records import HeldEntry

log = structlog.get_logger(__name__)

__all__ = ["PeerPlan", "PeerSync", "PeerReads", "plan_peers"]


class PeerReads(Protocol):
    """The store reads peer sync needs: served events (announcements, roots), held ones (a
    held announcement's relays are where its git data and states may come from), and the
    negentropy items of our side of a filter."""

    async def query(self, filters: list[Filter], default_limit: int) -> list[Event]: ...

    async def held(self, identifier: str | None = None) -> list[HeldEntry]: ...

    async def negentropy_items(self, filters: list[Filter], max_records: int,
                               budget_s: float | None = None) -> Items | None: ...


class OutboundRefused(Exception):
    """The outbound check refused the peer's URL (a private address, a bad scheme)."""


@dataclass
class _Peer:
    plan: PeerPlan
    health: PeerHealth
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    progress: PeerProgress = field(default_factory=PeerProgress)
    task: asyncio.Task[None] | None = None


class PeerSync:
    def __init__(self, settings: Settings, live: Live, store: PeerReads, metrics: MetricsSink,
                 publish: Callable[[Event, str], Awaitable[Outcome]]) -> None:
        self.settings = settings
        self.live = live
        self.store = store
        self.metrics = metrics
        self.publish = publish
        self.limits = SessionLimits.from_settings(settings)
        self.health_limits = HealthLimits.from_settings(settings)
        self.retry = RetryCache(settings.peer_retry_max_entries, settings.peer_retry_max_bytes,
                                settings.peer_retry_ttl_s)
        self._peers: dict[str, _Peer] = {}
        self._planner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._retrying: set[asyncio.Task[None]] = set()
        self._followed: frozenset[str] = frozenset()  # coordinates any plan follows

    def start(self) -> None:
        if self.settings.peer_sync_enabled:
            self._planner = asyncio.create_task(self._plan_forever(), name="peer-sync")

    async def stop(self) -> None:
        tasks = [p.task for p in self._peers.values() if p.task] + list(self._retrying)
        tasks += [self._planner] if self._planner else []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._peers.clear()

    # --- the after-store hook -------------------------------------------------------------
    async def after_store(self, event: Event) -> None:
        """Runs for every stored event (before its OK): cheap. A new announcement or a new
        root of a followed repository wakes the planner; cached events waiting on this one
        are offered to the policy again, in a task of their own."""
        if event.kind == nip34.ANNOUNCEMENT or (is_root_candidate(event) and any(
                len(t) >= 2 and t[0] in COORDINATE_TAGS and t[1] in self._followed for t in event.tags)):
            self._wake.set()
        if len(self.retry):
            waiting = self.retry.take(provides(event), time.time())
            if waiting:
                self._spawn_retry(waiting)

    def after_hold(self, event: Event) -> None:
        """An announcement entered the purgatory: its relays are where its states and git
        data may come from, so the peers are planned again."""
        if event.kind == nip34.ANNOUNCEMENT:
            self._wake.set()

    def _spawn_retry(self, waiting: list[tuple[Event, str, float]]) -> None:
        task = asyncio.create_task(self._retry(waiting))
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _retry(self, waiting: list[tuple[Event, str, float]]) -> None:
        for event, source, first_seen in waiting:
            await self._publish(event, source, first_seen)

    # --- planning ---------------------------------------------------------------------------
    async def _plan_forever(self) -> None:
        while True:
            try:
                self._apply(await self._plan())
                again = self.retry.take(None, time.time())
                if again:
                    self._spawn_retry(again)
            except Exception:  # a failed round is retried at the next wake-up
                log.exception("peer_plan_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.peer_refresh_s)
                # a burst of stored announcements and roots makes one re-plan, not one each
                await asyncio.sleep(self.settings.peer_replan_delay_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _plan(self) -> dict[str, PeerPlan]:
        store, s = self.store, self.settings
        served = await store.query([Filter(kinds=frozenset({nip34.ANNOUNCEMENT}))], s.max_limit)
        held = [e.event for e in await store.held() if e.event.kind == nip34.ANNOUNCEMENT]
        coordinates = frozenset(nip34.repo_coordinate(a.pubkey, a.d_tag) for a in served)
        roots: dict[str, frozenset[str]] = {}
        if coordinates:
            filters = [Filter(tags=((tag, coordinates),)) for tag in COORDINATE_TAGS]
            roots = root_map(await store.query(filters, s.peer_max_roots), coordinates)
        self._followed = coordinates
        return plan_peers(served + held, s.domain, s.max_peer_relays, frozenset(e.id for e in held), roots,
                          s.sync_bootstrap_relays)

    def _apply(self, plans: dict[str, PeerPlan]) -> None:
        for url in list(self._peers):
            if url not in plans:
                gone = self._peers.pop(url)
                if gone.task:
                    gone.task.cancel()
        for url, plan in plans.items():
            found = self._peers.get(url)
            if found is None:
                peer = self._peers[url] = _Peer(plan, PeerHealth(self.health_limits))
                self.metrics.peer_state(url, peer.health.state)
            else:
                peer = found
                if peer.plan != plan:
                    peer.plan = plan
                    peer.changed.set()
            if peer.task is None or peer.task.done():
                peer.task = asyncio.create_task(self._follow(url, peer), name=f"peer:{url}")

    # --- one peer -----------------------------------------------------------------------------
    async def _follow(self, url: str, peer: _Peer) -> None:
        """Connect, sync, and when the connection ends move the peer's health by the table
        and wait as long as its new state says."""
        while True:
            await asyncio.sleep(peer.health.wait(time.monotonic()))
            try:
                await self._connect_and_run(url, peer)
                trigger = h.FAILED  # the peer ended the connection
            except asyncio.CancelledError:
                raise
            except RateLimited as exc:
                trigger, why = h.RATE_LIMITED, str(exc)
            except (OutboundRefused, socket.gaierror, ssl.SSLError, InvalidHandshake, InvalidURI) as exc:
                trigger, why = h.UNREACHABLE, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # network errors, timeouts, a peer's nonsense
                trigger, why = h.FAILED, f"{type(exc).__name__}: {exc}"
            else:
                why = "connection closed"
            state = peer.health.on(trigger, time.monotonic(), random.random())
            self.metrics.peer_state(url, state)
            log.info("peer_disconnected", peer=url, trigger=trigger, state=state, error=why[:200],
                     retry_in=round(peer.health.wait(time.monotonic()), 3))

    async def _connect_and_run(self, url: str, peer: _Peer) -> None:
        check = await check_outbound(url, self.settings.outbound_allow_private)
        if check.refusal is not None:
            raise OutboundRefused(f"not following {url}: {check.refusal}")
        async with await self._connect(url, check.addresses) as ws:
            def synced() -> None:
                if peer.health.state != h.OK:
                    self.metrics.peer_state(url, peer.health.on(h.SYNCED, time.monotonic(), 0.0))
                else:
                    peer.health.on(h.SYNCED, time.monotonic(), 0.0)
                self.metrics.peer_success(url, time.time())
                log.info("peer_synced", peer=url, negentropy=peer.progress.speaks_negentropy,
                         newest=peer.progress.newest)

            hooks = SessionHooks(accept=lambda raw: self._accept(url, raw), on_synced=synced,
                                 on_history=lambda method: self.metrics.peer_history(url, method),
                                 on_bytes=lambda n: self.metrics.peer_bytes(url, n))
            session = PeerSession(url, ws, self.limits, self.store, hooks, lambda: peer.plan, peer.changed,
                                  peer.progress)
            await session.run()

    async def _connect(self, url: str, addresses: tuple[str, ...]) -> Any:
        """Open the websocket to one of the checked addresses, in turn (one may be an IPv6
        address this host cannot reach), or by name when there are none."""
        last: Exception | None = None
        for pinned in _pinned(url, addresses) or [{}]:
            try:
                return await websockets.connect(url, open_timeout=self.settings.peer_connect_timeout_s,
                                                max_size=self.settings.max_message_bytes, **pinned)
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        assert last is not None
        raise last

    # --- one event ------------------------------------------------------------------------------
    async def _accept(self, url: str, raw: Any) -> int | None:
        """The checks a client's EVENT gets, then ingest; the event's created_at when it is
        stored or held (or was already). Whatever is wrong with a frame, it is skipped and
        counted: the stream moves on."""
        try:
            event = Event.from_dict(raw)
            check_limits(event, self.live.limits, time.time())
            event.verify()
        except Exception as exc:  # noqa: BLE001 - EventError, or anything a hostile peer found
            self.metrics.peer_event(url, "invalid")
            self.metrics.event_rejected(-1, "invalid")
            log.info("peer_event_invalid", peer=url, error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        return await self._publish(event, url)

    async def _publish(self, event: Event, url: str, first_seen: float | None = None) -> int | None:
        try:
            outcome = await self.publish(event, url)
        except Exception:  # a bug costs this event, never the stream
            log.exception("peer_publish_failed", peer=url, event_id=event.id)
            self.metrics.peer_event(url, "rejected")
            return None
        finally:  # ingest names the event in the log context; this task goes on to others
            structlog.contextvars.unbind_contextvars("event_id")
        if outcome.accepted:
            self.metrics.peer_event(url, "accepted")
            return event.created_at
        if may_accept_later(outcome.message) and self.retry.add(event, url, time.time(), first_seen):
            self.metrics.peer_event(url, "deferred")
            log.debug("peer_event_deferred", peer=url, event_id=event.id, reason=outcome.message)
        else:
            self.metrics.peer_event(url, "rejected")
        return None


def _pinned(url: str, addresses: tuple[str, ...]) -> list[dict[str, Any]]:
    """Connection options for each address the outbound check approved, IPv4 first: the
    connection goes to that address while the URL still gives the Host header and the TLS
    name. Without addresses, websockets resolves the name itself."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    ordered = sorted(addresses, key=lambda address: ":" in address)
    return [{"host": address, "port": port, "proxy": None} for address in ordered]
