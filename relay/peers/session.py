"""One connection to one peer relay: history first, then live subscriptions.

History for each layered filter is fetched by NIP-77 negentropy when the peer speaks it: a
NEG-OPEN with our own served events for that filter, the rounds until the Initiator is done,
then REQs for the ids we lack, in batches. A peer without NIP-77 (NEG-ERR, a NOTICE saying so,
or no answer in time) is asked by REQ pages instead, walking `until` back past whatever
`limit` cap it keeps, until a page brings nothing new. Then one set of live subscriptions with
`since` = the moment the history pass began (or the newest event stored from this peer, if
later) minus a small overlap: everything older has just been reconciled, so asking since the
newest event *fetched* would replay all that is newer than it when what was missing is old.

Values the connection has already fetched history for are not asked again when the plan
grows (an announcement or a new issue arrives); only the new ones are, and the live REQs are
sent again under the same ids, which replaces them (NIP-01). After a reconnect, the values
known from before are asked only `since` that same point, except once a day
(`full_sync_s`), when everything is reconciled afresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from relay.peers import frames
from relay.peers.frames import Frame, RateLimited, Unsupported
from relay.peers.plan import PeerPlan, chunks
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Initiator, Items
from storage.sqlite.reads import QueryBudgetExceeded

log = structlog.get_logger(__name__)

NEG_SUB = "grasp-neg"
FETCH_SUB = "grasp-fetch"
PAGE_SUB = "grasp-page"
LIVE_SUB = "grasp-live"

#: handles one event a peer sent: its created_at when it was stored (or already here)
Accept = Callable[[Any], Awaitable[int | None]]


class ItemReads(Protocol):
    async def negentropy_items(self, filters: list[Filter], max_records: int,
                               budget_s: float | None = None) -> Items | None: ...


class TooMany(Exception):
    """Our side or the peer's holds too many records for one negentropy session."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    values_per_filter: int
    filters_per_req: int
    page_limit: int
    request_timeout_s: float
    negentropy_timeout_s: float
    since_overlap_s: int
    full_sync_s: float
    frame_max_bytes: int
    max_records: int
    query_budget_s: float
    #: live REQs held open at once: a peer allows a few dozen subscriptions (ours: 50), and a
    #: plan that needs more leaves the rest to the next reconnect and the daily reconciliation
    live_max_reqs: int = 20

    @classmethod
    def from_settings(cls, s: Any) -> SessionLimits:
        return cls(s.peer_filter_values, s.peer_filters_per_req, s.peer_req_page_limit, s.peer_request_timeout_s,
                   s.peer_negentropy_timeout_s, s.peer_since_overlap_s, s.peer_full_sync_s,
                   s.negentropy_frame_max_bytes, s.negentropy_max_records, s.negentropy_query_budget_s,
                   s.peer_live_max_reqs)


@dataclass
class PeerProgress:
    """What a peer gave us, kept across its connections."""

    synced: PeerPlan = field(default_factory=PeerPlan)  # values whose history was fetched
    newest: int | None = None  # newest created_at stored from this peer
    reconciled_at: float | None = None  # start of the last history pass that completed
    last_full: float | None = None
    speaks_negentropy: bool | None = None

    def stored(self, created_at: int) -> None:
        if self.newest is None or created_at > self.newest:
            self.newest = created_at

    def since(self) -> int | None:
        """Before this, everything the peer had was reconciled (None: nothing yet)."""
        points = [p for p in (self.newest, self.reconciled_at) if p is not None]
        return int(max(points)) if points else None


@dataclass
class SessionHooks:
    accept: Accept
    on_synced: Callable[[], None]
    on_history: Callable[[str], None]  # "negentropy" or "req", once per filter
    on_bytes: Callable[[int], None]


class PeerSession:
    def __init__(self, url: str, ws: Any, limits: SessionLimits, reads: ItemReads, hooks: SessionHooks,
                 plan: Callable[[], PeerPlan], changed: asyncio.Event, progress: PeerProgress,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.ws = ws
        self.limits = limits
        self.reads = reads
        self.hooks = hooks
        self.plan = plan
        self.changed = changed
        self.progress = progress
        self.clock = clock
        self._live_reqs = 0

    async def run(self) -> None:
        """Until the connection fails (an exception) or the caller cancels."""
        progress, limits = self.progress, self.limits
        first = True
        while True:
            full = progress.last_full is None or self.clock() - progress.last_full >= limits.full_sync_s
            if full:
                progress.synced = PeerPlan()
            self.changed.clear()
            plan = self.plan()
            new = plan.minus(progress.synced)
            began = self.clock()
            known = progress.since()
            since = None if known is None else known - limits.since_overlap_s
            await self._history(new.filters(limits.values_per_filter))
            if first and not full:  # after a reconnect: what is known, only since the newest
                await self._history(plan.minus(new).filters(limits.values_per_filter, since))
            progress.synced = progress.synced.union(new)
            progress.reconciled_at = began
            if full:
                progress.last_full = self.clock()
            first = False
            await self._subscribe(plan)
            self.hooks.on_synced()
            await self._live()

    # --- history ------------------------------------------------------------------------
    async def _history(self, filters: list[dict[str, Any]]) -> None:
        for filt in filters:
            if self.progress.speaks_negentropy is not False:
                try:
                    await self._by_negentropy(filt)
                    self.progress.speaks_negentropy = True
                    self.hooks.on_history("negentropy")
                    continue
                except Unsupported as exc:
                    log.info("peer_without_negentropy", peer=self.url, reason=str(exc)[:200])
                    self.progress.speaks_negentropy = False
                except TooMany as exc:
                    log.info("peer_negentropy_too_many", peer=self.url, reason=str(exc)[:200])
            await self._by_pages(filt)
            self.hooks.on_history("req")

    async def _by_negentropy(self, filt: dict[str, Any]) -> None:
        try:
            items = await self.reads.negentropy_items([Filter.from_dict(filt)], self.limits.max_records,
                                                      self.limits.query_budget_s)
        except QueryBudgetExceeded:
            raise TooMany("reading our side of the filter takes more than GRASP_NEGENTROPY_QUERY_BUDGET_S") from None
        if items is None:
            raise TooMany("more served events here than GRASP_NEGENTROPY_MAX_RECORDS")
        initiator = Initiator(items, self.limits.frame_max_bytes)
        await self._send(["NEG-OPEN", NEG_SUB, filt, initiator.initiate().hex()])
        first = True
        while True:
            try:
                frame = await self._control(self.limits.negentropy_timeout_s)
            except asyncio.TimeoutError:
                if first and self.progress.speaks_negentropy is None:
                    raise Unsupported("no answer to NEG-OPEN") from None
                raise
            if frame.kind == "NEG-MSG" and frame.sub_id == NEG_SUB and frame.body:
                first = False
                try:
                    step = initiator.reconcile(bytes.fromhex(str(frame.body[0])))
                except ValueError as exc:  # NegentropyError too: the peer's message is bad
                    await self._send(["NEG-CLOSE", NEG_SUB])
                    raise Unsupported(f"bad negentropy message: {exc}") from None
                if step.message is None:
                    await self._send(["NEG-CLOSE", NEG_SUB])
                    break
                await self._send(["NEG-MSG", NEG_SUB, step.message.hex()])
            elif frames.refuses_negentropy(frame, NEG_SUB):
                said = frames.text(frame)
                if frame.kind == "NEG-ERR" and said.startswith("blocked:"):
                    raise TooMany(said)
                raise Unsupported(said)
        await self._fetch_ids(sorted(i.hex() for i in initiator.need))

    async def _fetch_ids(self, ids: list[str]) -> None:
        for batch in chunks(ids, self.limits.values_per_filter):
            await self._request(FETCH_SUB, {"ids": batch, "limit": len(batch)})

    async def _by_pages(self, filt: dict[str, Any]) -> None:
        """REQ pages walking `until` back (inclusive, so events sharing a second are not
        lost); ends when a page brings no id not seen before."""
        seen: set[str] = set()
        until: int | None = None
        while True:
            page = {**filt, "limit": self.limits.page_limit} | ({} if until is None else {"until": until})
            got = await self._request(PAGE_SUB, page)
            fresh = [(ts, i) for ts, i in got if i not in seen]
            if not fresh:
                return
            seen.update(i for _, i in fresh)
            until = min(ts for ts, _ in got)

    async def _request(self, sub_id: str, filt: dict[str, Any]) -> list[tuple[int, str]]:
        """One REQ up to its EOSE (or CLOSED): the (created_at, id) of what it brought."""
        await self._send(["REQ", sub_id, filt])
        got: list[tuple[int, str]] = []
        while True:
            frame = await self._control(self.limits.request_timeout_s, collect=(sub_id, got))
            if frame.sub_id != sub_id:
                continue
            if frame.kind == "EOSE":
                await self._send(["CLOSE", sub_id])
                return got
            if frame.kind == "CLOSED":
                log.info("peer_req_closed", peer=self.url, reason=frames.text(frame)[:200])
                return got

    # --- live ----------------------------------------------------------------------------
    async def _subscribe(self, plan: PeerPlan) -> None:
        known = self.progress.since()
        since = known if known is not None else int(self.clock())
        filters = plan.filters(self.limits.values_per_filter, since - self.limits.since_overlap_s)
        reqs = chunks_of(filters, self.limits.filters_per_req)
        if len(reqs) > self.limits.live_max_reqs:
            left = sum(len(group) for group in reqs[self.limits.live_max_reqs:])
            reqs = reqs[:self.limits.live_max_reqs]
            log.info("peer_live_truncated", peer=self.url, filters_left_to_history=left)
        for n, group in enumerate(reqs):
            await self._send(["REQ", f"{LIVE_SUB}-{n}", *group])
        for n in range(len(reqs), self._live_reqs):
            await self._send(["CLOSE", f"{LIVE_SUB}-{n}"])
        self._live_reqs = len(reqs)
        log.info("peer_subscribed", peer=self.url, filters=len(filters), since=since)

    async def _live(self) -> None:
        """Read live events until the plan changes or the daily full reconciliation is due."""
        due = (self.progress.last_full or self.clock()) + self.limits.full_sync_s
        wake = asyncio.ensure_future(self.changed.wait())
        try:
            while True:
                recv = asyncio.ensure_future(self.ws.recv())
                done, _ = await asyncio.wait({recv, wake}, timeout=max(0.0, due - self.clock()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()  # safe: websockets keeps the message for the next recv
                    return
                frame = self._parse(recv.result())
                if frame is not None:
                    await self._dispatch(frame)
        finally:
            wake.cancel()

    # --- frames ---------------------------------------------------------------------------
    async def _send(self, message: list[Any]) -> None:
        import json

        await self.ws.send(json.dumps(message, separators=(",", ":")))

    def _parse(self, message: str | bytes) -> Frame | None:
        self.hooks.on_bytes(len(message))
        return frames.parse(message)

    async def _control(self, timeout: float,
                       collect: tuple[str, list[tuple[int, str]]] | None = None) -> Frame:
        """The next frame that is not an event, handling events on the way (those of `collect`'s
        subscription also noted there). Raises RateLimited when the peer says so."""
        while True:
            frame = self._parse(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame is None:
                continue
            if frame.kind == "EVENT" or _live_closed(frame):
                key = await self._dispatch(frame)
                if collect is not None and key is not None and frame.sub_id == collect[0]:
                    collect[1].append(key)
                continue
            if frames.is_rate_limited(frame):
                raise RateLimited(frames.text(frame))
            return frame

    async def _dispatch(self, frame: Frame) -> tuple[int, str] | None:
        """An event for one of our subscriptions goes to `accept`; returns its (created_at, id)
        when it looks like an event at all. A rate-limit notice during live reading ends it."""
        if frame.kind != "EVENT":
            # a live REQ the peer closed (too many subscriptions, say) is lost until the next
            # re-plan; it is no reason to pause the whole peer, whose history goes on
            if _live_closed(frame):
                log.info("peer_live_closed", peer=self.url, sub_id=frame.sub_id, reason=frames.text(frame)[:200])
                return None
            if frames.is_rate_limited(frame):
                raise RateLimited(frames.text(frame))
            return None
        if not frame.sub_id.startswith("grasp-") or not frame.body:
            return None
        raw = frame.body[0]
        key = None
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and type(raw.get("created_at")) is int:
            key = (raw["created_at"], raw["id"])
        stored_at = await self.hooks.accept(raw)
        if stored_at is not None:
            self.progress.stored(stored_at)
        return key


def _live_closed(frame: Frame) -> bool:
    return frame.kind == "CLOSED" and frame.sub_id.startswith(LIVE_SUB)


def chunks_of(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
