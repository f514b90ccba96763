"""The per-peer session (relay/peers/session.py) against an in-memory relay: history by
negentropy (our Initiator against the responder of storage/nostr/negentropy.py) or by REQ
pages past a limit cap, and the since rules of reconnects and the daily full reconciliation,
with a fake clock. The websocket is a pair of queues; everything else is the real code."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from relay.peers.plan import PeerPlan
from relay.peers.session import PeerProgress, PeerSession, SessionHooks, SessionLimits
from storage.nostr.event import Event, sign_event
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Items, respond

COORD = f"30617:{'ab' * 32}:repo"
PLAN = PeerPlan(coordinates=frozenset({COORD}))
LIMITS = SessionLimits(values_per_filter=100, filters_per_req=10, page_limit=40, request_timeout_s=5,
                       negentropy_timeout_s=5, since_overlap_s=10, full_sync_s=86400, frame_max_bytes=4096,
                       max_records=100_000, query_budget_s=2)


def issues(count: int, start: int = 1_600_000_000, per_second: int = 1) -> list[Event]:
    key = os.urandom(32).hex()
    return [sign_event(key, 1621, f"issue {n}", [["a", COORD]], start + n // per_second) for n in range(count)]


@dataclass
class MemoryRelay:
    """Answers REQ (newest first, at most `cap` per filter), and NEG-OPEN/NEG-MSG when `nip77`."""

    events: list[Event]
    nip77: bool = True
    cap: int = 10_000
    sent: list[list[Any]] = field(default_factory=list)
    out: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    closed: bool = False
    #: the CLOSED reason every live REQ gets (a relay short of subscription slots), or None
    live_refusal: str | None = None

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        self.sent.append(frame)
        if frame[0] == "REQ" and self.live_refusal is not None and frame[1].startswith("grasp-live"):
            self.out.put_nowait(json.dumps(["CLOSED", frame[1], self.live_refusal]))
        elif frame[0] == "REQ":
            for raw in frame[2:]:
                filt = Filter.from_dict({k: v for k, v in raw.items() if k != "limit"})
                found = sorted((e for e in self.events if filt.matches(e)), key=lambda e: (-e.created_at, e.id))
                for event in found[:min(raw.get("limit", self.cap), self.cap)]:
                    self.out.put_nowait(json.dumps(["EVENT", frame[1], event.to_dict()]))
            self.out.put_nowait(json.dumps(["EOSE", frame[1]]))
        elif frame[0] in ("NEG-OPEN", "NEG-MSG") and not self.nip77:
            self.out.put_nowait(json.dumps(["NOTICE", f"invalid: unsupported message type '{frame[0]}'"]))
        elif frame[0] == "NEG-OPEN":
            filt = Filter.from_dict(frame[2])
            self._items = Items.from_pairs((e.created_at, e.id) for e in self.events if filt.matches(e))
            self._neg(frame[1], frame[3])
        elif frame[0] == "NEG-MSG":
            self._neg(frame[1], frame[2])

    def _neg(self, sub_id: str, message: str) -> None:
        self.out.put_nowait(json.dumps(["NEG-MSG", sub_id, respond(self._items, bytes.fromhex(message), 4096).hex()]))

    async def recv(self) -> str:
        return await self.out.get()


@dataclass
class Ours:
    """Our side: the served events the session's negentropy items come from, and what it
    accepted (stored here too, as ingest would)."""

    events: list[Event] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def negentropy_items(self, filters: list[Filter], max_records: int,
                               budget_s: float | None = None) -> Items | None:
        return Items.from_pairs((e.created_at, e.id) for e in self.events if any(f.matches(e) for f in filters))

    async def accept(self, raw: Any) -> int | None:
        event = Event.from_dict(raw)
        event.verify()
        if event.id not in {e.id for e in self.events}:
            self.events.append(event)
            self.accepted.append(event.id)
        return event.created_at

    def hooks(self) -> SessionHooks:
        return SessionHooks(accept=self.accept, on_synced=self.synced.set, on_history=self.history.append,
                            on_bytes=lambda n: None)


async def run_until_synced(relay: MemoryRelay, ours: Ours, progress: PeerProgress, now: float = 1e9,
                           limits: SessionLimits = LIMITS, plan: PeerPlan = PLAN) -> None:
    session = PeerSession("ws://peer", relay, limits, ours, ours.hooks(), lambda: plan, asyncio.Event(), progress,
                          clock=lambda: now)
    ours.synced.clear()
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(ours.synced.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_history_by_negentropy_fetches_exactly_what_we_lack() -> None:
    theirs = issues(300)
    ours = Ours(events=theirs[::3] + issues(5, start=1_700_000_000))
    relay = MemoryRelay(theirs)
    progress = PeerProgress()
    await run_until_synced(relay, ours, progress)
    assert set(ours.accepted) == {e.id for e in theirs} - {e.id for e in theirs[::3]}
    assert set(ours.history) == {"negentropy"} and progress.speaks_negentropy is True
    fetched = [f for f in relay.sent if f[0] == "REQ" and f[1] == "grasp-fetch"]
    assert all(len(f[2]["ids"]) <= LIMITS.values_per_filter for f in fetched)
    assert progress.newest == max(e.created_at for e in theirs)
    live = [f for f in relay.sent if f[0] == "REQ" and f[1].startswith("grasp-live")]
    assert live and all(f["since"] == progress.newest - LIMITS.since_overlap_s for f in live[0][2:])


async def test_live_subscriptions_after_fetching_one_old_event_ask_since_the_reconciliation() -> None:
    """We lack only the peer's oldest event: once negentropy has reconciled everything, the
    live REQs ask since the pass began, not since that old event (which would replay every
    newer event the peer holds, all of them already here)."""
    theirs = issues(200)
    ours = Ours(events=theirs[1:])
    relay = MemoryRelay(theirs)
    progress = PeerProgress()
    now = 1_700_000_000.0
    await run_until_synced(relay, ours, progress, now=now)
    assert ours.accepted == [theirs[0].id]
    live = [f for f in relay.sent if f[0] == "REQ" and f[1].startswith("grasp-live")]
    assert live and all(f["since"] == int(now) - LIMITS.since_overlap_s for f in live[0][2:])
    assert progress.reconciled_at == now and progress.since() == int(now)


async def test_req_pages_walk_until_past_a_limit_cap_and_a_crowded_second() -> None:
    """The peer answers at most 25 events per REQ (less than our page limit of 40) and seven
    events share each second: paging by an inclusive until loses none of them."""
    theirs = issues(130, per_second=7)
    ours = Ours()
    relay = MemoryRelay(theirs, nip77=False, cap=25)
    progress = PeerProgress()
    await run_until_synced(relay, ours, progress)
    assert set(ours.accepted) == {e.id for e in theirs}
    assert progress.speaks_negentropy is False and "req" in ours.history
    assert len([f for f in relay.sent if f[0] == "NEG-OPEN"]) == 1


async def test_a_reconnect_asks_since_and_a_day_later_everything_again() -> None:
    theirs = issues(50)
    ours = Ours()
    relay = MemoryRelay(theirs, nip77=False)
    progress = PeerProgress()
    await run_until_synced(relay, ours, progress, now=1e9)
    assert progress.last_full == 1e9
    newest = progress.newest
    assert newest is not None

    def history_reqs(r: MemoryRelay) -> list[dict[str, Any]]:
        return [f for frame in r.sent if frame[0] == "REQ" and frame[1] == "grasp-page" for f in frame[2:]]

    again = MemoryRelay(theirs, nip77=False)
    await run_until_synced(again, ours, progress, now=1e9 + 3600)  # an hour later: since the newest
    assert history_reqs(again) and all(f["since"] == newest - LIMITS.since_overlap_s for f in history_reqs(again))
    day = MemoryRelay(theirs, nip77=False)
    await run_until_synced(day, ours, progress, now=1e9 + 86400)  # the daily full reconciliation
    assert history_reqs(day) and all("since" not in f for f in history_reqs(day))
    assert progress.last_full == 1e9 + 86400


async def test_a_plan_that_grows_fetches_only_the_new_values() -> None:
    theirs = issues(20)
    other = f"30617:{'cd' * 32}:other"
    more = [sign_event(os.urandom(32).hex(), 1621, "x", [["a", other]], 1_650_000_000)]
    relay = MemoryRelay(theirs + more)
    ours = Ours()
    plan = [PLAN]
    changed = asyncio.Event()
    session = PeerSession("ws://peer", relay, LIMITS, ours, ours.hooks(), lambda: plan[0], changed, PeerProgress())
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(ours.synced.wait(), 10)
        opened = len([f for f in relay.sent if f[0] == "NEG-OPEN"])
        ours.synced.clear()
        plan[0] = PeerPlan(coordinates=frozenset({COORD, other}))
        changed.set()
        await asyncio.wait_for(ours.synced.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert set(ours.accepted) == {e.id for e in theirs + more}
    new_opens = [f for f in relay.sent if f[0] == "NEG-OPEN"][opened:]
    assert new_opens and all(other in json.dumps(f[2]) and COORD not in json.dumps(f[2]) for f in new_opens)


async def test_a_live_req_the_peer_closes_for_lack_of_slots_does_not_pause_the_peer() -> None:
    """"rate-limited: too many subscriptions" on a live REQ loses that REQ until the next
    re-plan; it is no rate limit on the peer: the session goes on, and a plan that grows is
    still fetched (before, the session raised RateLimited and the peer cooled off for 300 s)."""
    theirs = issues(20)
    other = f"30617:{'cd' * 32}:other"
    more = [sign_event(os.urandom(32).hex(), 1621, "x", [["a", other]], 1_650_000_000)]
    relay = MemoryRelay(theirs + more, live_refusal="rate-limited: too many subscriptions (max 50)")
    ours = Ours()
    plan = [PLAN]
    changed = asyncio.Event()
    session = PeerSession("ws://peer", relay, LIMITS, ours, ours.hooks(), lambda: plan[0], changed, PeerProgress())
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(ours.synced.wait(), 10)
        ours.synced.clear()
        plan[0] = PeerPlan(coordinates=frozenset({COORD, other}))
        changed.set()
        await asyncio.wait_for(ours.synced.wait(), 10)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert set(ours.accepted) == {e.id for e in theirs + more}


async def test_live_reqs_stay_within_the_cap_however_big_the_plan() -> None:
    coords = frozenset(f"30617:{'ab' * 32}:repo{n}" for n in range(30))
    limits = replace(LIMITS, values_per_filter=1, filters_per_req=2, live_max_reqs=3)
    relay = MemoryRelay([])
    await run_until_synced(relay, Ours(), PeerProgress(), limits=limits, plan=PeerPlan(coordinates=coords))
    live = {f[1] for f in relay.sent if f[0] == "REQ" and f[1].startswith("grasp-live")}
    assert len(live) == 3
