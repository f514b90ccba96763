"""GRASP-02 proactive sync of events: subscribe to the other relays that accepted
announcements name, and pass what they have about those repositories through our own
acceptance policy, as events "from other relays" (short sync delay in the purgatory).

`plan_peers` is pure: announcements in, one subscription per peer relay out. `PeerSync`
only keeps one websocket per peer open and feeds what arrives to the ingest path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
import websockets

from config import Settings
from purgatory.fetch.outbound import check_outbound
from relay.nostr.ingest import Outcome
from relay.metrics import MetricsSink
from relay.nostr.protocol import check_limits
from relay.daemon.reload import Live
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.sqlite.records import HeldEntry
from storage.nostr.filters import Filter

log = structlog.get_logger(__name__)

SUB_ID = "grasp-sync"
MAX_VALUES_PER_FILTER = 100


@dataclass(frozen=True)
class PeerPlan:
    """What to ask one peer relay for: the identifiers and repo addresses it should know."""

    identifiers: frozenset[str]
    coordinates: frozenset[str]

    def filters(self, since: int | None = None) -> list[dict[str, Any]]:
        """Announcements and states by identifier, and everything tagging the repositories;
        with `since` (a reconnect) only what is newer than what this peer already gave us."""
        out: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(self.identifiers)):
            out.append({"kinds": [nip34.ANNOUNCEMENT, nip34.STATE], "#d": chunk})
        for chunk in _chunks(sorted(self.coordinates)):
            out.append({"#a": chunk})
        if since is not None:
            out = [{**f, "since": since} for f in out]
        return out


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i:i + MAX_VALUES_PER_FILTER] for i in range(0, len(values), MAX_VALUES_PER_FILTER)]


def plan_peers(announcements: list[Event], own_domain: str, max_peers: int,
               waiting: frozenset[str] = frozenset()) -> dict[str, PeerPlan]:
    """Every other relay named by an accepted announcement, with what to ask it for. Relay
    URLs are taken as written (ws/wss only); at most `max_peers`, the most named first.

    An announcement still held in the purgatory (its id in `waiting`) adds its identifier
    (its states and the other maintainers' announcements bring the git data) but not its
    coordinate: events tagging it would be refused while it anchors nothing. Once it is
    served the plan differs, so that peer is asked afresh, from the start, for them."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for ann in announcements:
        coordinate = nip34.repo_coordinate(ann.pubkey, ann.d_tag)
        for url in nip34.relay_urls(ann):
            url = url.strip().rstrip("/")
            if not url.startswith(("ws://", "wss://")) or nip34.is_our_relay_url(url, own_domain):
                continue
            identifiers, coordinates = wanted.setdefault(url, (set(), set()))
            identifiers.add(ann.d_tag)
            if ann.id not in waiting:
                coordinates.add(coordinate)
    ranked = sorted(wanted, key=lambda u: (-len(wanted[u][1]), -len(wanted[u][0]), u))[:max_peers]
    return {u: PeerPlan(frozenset(wanted[u][0]), frozenset(wanted[u][1])) for u in ranked}


class AnnouncementReads(Protocol):
    """The two store reads peer planning needs: the served announcements and the held ones
    (a held announcement's relays are where its git data and states may come from)."""

    async def query(self, filters: list[Filter], default_limit: int) -> list[Event]: ...

    async def held(self, identifier: str | None = None) -> list[HeldEntry]: ...


class PeerSync:
    """One websocket per peer relay; re-planned every `peer_refresh_s`. Given the store to
    read announcements from, the live NIP-01 limits, and the ingest path's `publish`."""

    def __init__(self, settings: Settings, live: Live, store: AnnouncementReads, metrics: MetricsSink,
                 publish: Callable[[Event, str], Awaitable[Outcome]]) -> None:
        self.settings = settings
        self.live = live
        self.store = store
        self.metrics = metrics
        self.publish = publish
        self._peers: dict[str, tuple[PeerPlan, asyncio.Task[None]]] = {}
        self._planner: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.peer_sync_enabled:
            self._planner = asyncio.create_task(self._plan_forever(), name="peer-sync")

    async def stop(self) -> None:
        tasks = [t for _, t in self._peers.values()] + ([self._planner] if self._planner else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._peers.clear()

    async def _plan_forever(self) -> None:
        while True:
            try:
                announcements, waiting = await self._announcements()
                self._apply(plan_peers(announcements, self.settings.domain, self.settings.max_peer_relays,
                                       waiting))
            except Exception:  # a failed round is retried at the next refresh
                log.exception("peer_plan_failed")
            await asyncio.sleep(self.settings.peer_refresh_s)

    async def _announcements(self) -> tuple[list[Event], frozenset[str]]:
        """Accepted announcements (served, then held) and the ids of the held ones."""
        store = self.store
        served = await store.query([Filter(kinds=frozenset({nip34.ANNOUNCEMENT}))], self.settings.max_limit)
        held = [e.event for e in await store.held() if e.event.kind == nip34.ANNOUNCEMENT]
        return served + held, frozenset(e.id for e in held)

    def _apply(self, plans: dict[str, PeerPlan]) -> None:
        for url in list(self._peers):
            plan, task = self._peers[url]
            if plans.get(url) != plan or task.done():
                task.cancel()
                del self._peers[url]
        for url, plan in plans.items():
            if url not in self._peers:
                task = asyncio.create_task(self._follow(url, plan), name=f"peer:{url}")
                self._peers[url] = (plan, task)

    async def _follow(self, url: str, plan: PeerPlan) -> None:
        """Stay subscribed to one peer, reconnecting after a pause when it fails. A reconnect
        asks only for what is newer than the newest event this peer gave us that we stored
        (NIP-01 `since` is inclusive, and duplicates are answered as such), so one bad event
        or a flaky link never makes the peer replay its whole history."""
        progress = _Progress()
        while True:
            try:
                await self._session(url, plan, progress)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, protocol or peer errors: pause and retry
                log.info("peer_disconnected", peer=url, error=str(exc)[:200])
            await asyncio.sleep(self.settings.peer_backoff_s)

    async def _session(self, url: str, plan: PeerPlan, progress: "_Progress") -> None:
        check = await check_outbound(url, self.settings.outbound_allow_private)
        if check.refusal is not None:
            raise ConnectionRefusedError(f"not following {url}: {check.refusal}")
        async with await self._connect(url, check.addresses) as ws:
            await ws.send(json.dumps(["REQ", SUB_ID, *plan.filters(progress.since)]))
            log.info("peer_subscribed", peer=url, repos=len(plan.coordinates), since=progress.since)
            async for message in ws:
                stored_at = await self._handle(url, message)
                if stored_at is not None:
                    progress.stored(stored_at)

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

    async def _handle(self, url: str, message: str | bytes) -> int | None:
        """One frame from a peer; the created_at of the event when it was stored. A frame
        that is not a good event is skipped and counted, whatever is wrong with it: the
        stream moves on."""
        try:
            frame = json.loads(message)
        except (ValueError, RecursionError):
            return None
        if not isinstance(frame, list) or len(frame) < 3 or frame[0] != "EVENT" or frame[1] != SUB_ID:
            return None
        try:
            event = Event.from_dict(frame[2])
            check_limits(event, self.live.limits, time.time())
            event.verify()
        except Exception as exc:  # noqa: BLE001 - EventError, or anything a hostile peer found
            self.metrics.event_rejected(-1, "invalid")
            log.info("peer_event_invalid", peer=url, error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        outcome = await self.publish(event, "synced")
        log.debug("peer_event", peer=url, event_id=event.id, accepted=outcome.accepted, note=outcome.message)
        return event.created_at if outcome.accepted else None


@dataclass
class _Progress:
    """The newest created_at a peer gave us that we stored (per peer and plan)."""

    since: int | None = None

    def stored(self, created_at: int) -> None:
        if self.since is None or created_at > self.since:
            self.since = created_at


def _pinned(url: str, addresses: tuple[str, ...]) -> list[dict[str, Any]]:
    """Connection options for each address the outbound check approved, IPv4 first: the
    connection goes to that address while the URL still gives the Host header and the TLS
    name. Without addresses, websockets resolves the name itself."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    ordered = sorted(addresses, key=lambda address: ":" in address)
    return [{"host": address, "port": port, "proxy": None} for address in ordered]
