"""The asyncio side of one Nostr websocket: moves frames between the ASGI connection and the
sans-IO `Session`, runs the requests it yields, and queues outgoing frames in a byte-counted
`Outbox` (relay/nostr/outbox.py) drained by one writer task, so that live broadcasts, OKs and query
results never interleave mid-frame and a client that does not read costs a bounded amount.

One query at a time per connection: the next frame is read only once the current REQ or COUNT
has its answer, so one client holds at most one reader thread, for at most its query budget.
A REQ re-sent with the id of an open subscription replaces it: the old one stops receiving
live events, and whatever of its results is still unsent is dropped before the new ones go
in, so re-sending a REQ never queues a second copy of a result."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from config import Settings
from relay.daemon.reload import Live
from relay.metrics import MetricsSink
from relay.nostr import ordering, protocol
from relay.nostr.ingest import Outcome
from relay.nostr.negentropy import ConnectionNegentropy, NegentropyBudget, NegentropyReads, NegLimits, NegSessions
from relay.nostr.outbox import Offer, Outbox, OutboxTotals
from relay.nostr.protocol import Count, NegClose, NegMsg, NegOpen, Publish, Reply, Session, Subscribe, Unsubscribe
from relay.nostr.subscriptions import Subscriptions
from relay.ratelimit import Window
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.sqlite.events import Deliver, QueryBudgetExceeded, StreamEnd

log = structlog.get_logger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

MAX_EVENTS_IN_FLIGHT = 512  # per connection; past this the reader waits (backpressure)
DROP_CLOSE_TIMEOUT_S = 1.0  # a dropped client gets a close frame if its socket takes one this fast
#: a frame whose write has waited this long means the client is not reading (its socket and
#: the kernel's buffers are full): its new REQs are refused before they cost a query
NOT_READING_S = 1.0
_ids = itertools.count(1)


class ClientReads(NegentropyReads, Protocol):
    """The store as a client sees it: REQ streams, COUNTs and NIP-77 items, each under a budget."""

    async def stream_raw(self, filters: list[Filter], default_limit: int, deliver: Deliver,
                         budget_s: float | None = None) -> StreamEnd: ...

    async def count(self, filters: list[Filter], budget_s: float | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class ConnectionParts:
    """What every connection shares, built once by relay/compose.py: the store for queries
    (COUNT, REQ), the ingest path's `publish`, the live subscription registry, the relay-wide
    outbox budget, the metrics sink, and the values a reload replaces (`live`)."""

    settings: Settings
    live: Live
    store: ClientReads
    publish: Callable[[Event, str], Awaitable[Outcome]]
    subscriptions: Subscriptions
    outbox_totals: OutboxTotals
    metrics: MetricsSink
    negentropy_budget: NegentropyBudget = field(default_factory=NegentropyBudget)  # one per relay


class Connection:
    """One websocket client. Hashable by identity so the subscription registry can key on it."""

    def __init__(self, parts: ConnectionParts, send: Send, client_ip: str) -> None:
        self.parts = parts
        self.id = next(_ids)
        self.ip = client_ip
        self.session = Session(limits=parts.live.limits)
        self._send = send
        settings = parts.settings
        self.outbox = Outbox(settings.outbox_max_bytes, parts.outbox_totals)
        self._wake = asyncio.Event()
        self._in_flight: deque[asyncio.Task[None]] = deque()
        self._providers: dict[Hashable, asyncio.Task[None]] = {}  # see relay/nostr/ordering.py
        self._event_window = Window(settings.events_per_minute_per_conn, 60.0)
        self._req_window = Window(settings.reqs_per_minute_per_conn, 60.0)
        self.negentropy = ConnectionNegentropy(NegSessions(NegLimits.from_settings(settings), parts.negentropy_budget),
                                               parts.store, self.send_nowait, self._req_window)
        self._writer_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._sending_since: float | None = None  # when the write under way started
        self.dropped: str | None = None  # why the relay dropped this client, if it did
        self.closed = False

    # --- outgoing ---------------------------------------------------------------------
    def send_nowait(self, text: str, sub_id: str | None = None) -> None:
        """Queue a control frame (OK, NOTICE, EOSE, CLOSED, COUNT): always taken, unless the
        client is so far behind that it is dropped instead (relay/nostr/outbox.py)."""
        if self.closed:
            return
        if not self.outbox.put(text, time.monotonic(), sub_id):
            self._drop("outbox_hard_cap")
            return
        self._wake.set()
        self._watch_stall()

    def send_event(self, sub_id: str, text: str) -> None:
        """A live event for an open subscription. If it does not fit, the subscription is
        closed with a reason rather than silently missing events."""
        if self.closed:
            return
        offer = self.outbox.offer(text, sub_id, time.monotonic())
        if offer == "queued":
            self._wake.set()
            return
        if self.parts.subscriptions.remove(self, sub_id):
            self.parts.metrics.subscriptions_closed(1)
        self.session.subscriptions.discard(sub_id)
        self._overflowed(offer, "subscription_closed")
        self.send_nowait(protocol.closed(sub_id, _OVERFLOW_LIVE[offer]), sub_id)

    def _overflowed(self, offer: Offer, action: str) -> None:
        self.parts.metrics.budget_exceeded("outbox" if offer == "connection_full" else "outbox_total", action)
        log.info("outbox_full", conn=self.id, budget=offer, action=action, queued=self.outbox.queued)
        self._watch_stall()

    def _watch_stall(self) -> None:
        if self.outbox.congested_since is not None and self._stall_timer is None and not self.closed:
            delay = self.parts.settings.outbox_stall_s
            self._stall_timer = asyncio.get_running_loop().call_later(delay, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_timer = None
        if self.closed:
            return
        limit = self.parts.settings.outbox_stall_s
        stalled = self.outbox.stalled_for(time.monotonic())
        if stalled >= limit:
            self._drop("outbox_stalled")
        elif self.outbox.congested_since is not None:  # congested again since: wait for the rest
            self._stall_timer = asyncio.get_running_loop().call_later(limit - stalled, self._check_stall)

    def _drop(self, why: str) -> None:
        """Stop serving a client that does not read: free its outbox now and end its task.
        The ASGI send of a close frame would wait for the socket to drain, which is exactly
        what such a client never lets happen, so the writer is cancelled instead."""
        if self.closed:
            return
        log.warning("slow_consumer_dropped", conn=self.id, ip=self.ip, why=why, queued=self.outbox.queued,
                    frames=len(self.outbox))
        self.parts.metrics.budget_exceeded("outbox", "connection_dropped")
        self.dropped = why
        self.closed = True
        self.outbox.clear()
        if self._writer_task is not None:
            self._writer_task.cancel()
        if self._run_task is not None:
            self._run_task.cancel()

    async def _writer(self) -> None:
        try:
            while True:
                text = self.outbox.pop()
                if text is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._sending_since = time.monotonic()
                await self._send({"type": "websocket.send", "text": text})
                self._sending_since = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client is gone (uvicorn's ClientDisconnected)
            log.debug("writer_stopped", conn=self.id, error=type(exc).__name__)
            self.closed = True

    # --- incoming ---------------------------------------------------------------------
    async def run(self, receive: Receive) -> None:
        self._run_task = asyncio.current_task()
        self._writer_task = asyncio.create_task(self._writer())
        try:
            while not self.closed:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive":
                    continue
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await self.handle(data)
        except asyncio.CancelledError:
            if self.dropped is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # our own drop, not a shutdown: end normally
        finally:
            self.closed = True
            self.parts.metrics.subscriptions_closed(self.parts.subscriptions.drop(self))
            self.negentropy.close()
            if self._stall_timer is not None:
                self._stall_timer.cancel()
            if self.dropped is None:
                for task in self._in_flight:
                    if not task.done():
                        await asyncio.wait([task], timeout=self.parts.settings.shutdown_timeout_s)
            self.outbox.clear()
            self._writer_task.cancel()
        if self.dropped is not None:
            await self._close_dropped()

    async def _close_dropped(self) -> None:
        try:
            await asyncio.wait_for(self._send({"type": "websocket.close", "code": 1008,
                                               "reason": "not reading fast enough"}), DROP_CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the socket stays full (timeout) or is gone: just go
            log.debug("close_frame_not_sent", conn=self.id, error=type(exc).__name__)

    async def handle(self, data: str | bytes) -> None:
        request = self.session.receive(data)
        if isinstance(request, Reply):
            self.send_nowait(request.text)
        elif isinstance(request, Publish):
            refusal = self._event_refusal()
            if refusal:
                self.send_nowait(protocol.ok(request.event.id, False, refusal))
            else:
                await self._publish(request)
        elif isinstance(request, (Subscribe, Count)) and self._req_window.count_or_wait(time.monotonic()):
            if isinstance(request, Subscribe):  # CLOSED: the id is no longer open, not even live
                self.session.subscriptions.discard(request.sub_id)
                if self.parts.subscriptions.remove(self, request.sub_id):
                    self.parts.metrics.subscriptions_closed(1)
                self.outbox.purge(request.sub_id)
            limit = self.parts.settings.reqs_per_minute_per_conn
            self.send_nowait(protocol.closed(request.sub_id, f"rate-limited: more than {limit} REQs per minute"))
        elif isinstance(request, (NegOpen, NegMsg, NegClose)):
            await self.negentropy.handle(request)
        elif isinstance(request, Unsubscribe):
            if self.parts.subscriptions.remove(self, request.sub_id):
                self.parts.metrics.subscriptions_closed(1)
            self.outbox.purge(request.sub_id)  # NIP-01: nothing more for a closed subscription
        else:
            try:
                await self._query(request)
            except Exception:  # the store failed this query; the connection goes on
                log.exception("query_failed", sub_id=request.sub_id)
                self.session.subscriptions.discard(request.sub_id)
                self.send_nowait(protocol.closed(request.sub_id, "error: the query failed, try again"))

    async def _query(self, request: Subscribe | Count) -> None:
        if isinstance(request, Subscribe):
            await self._subscribe(request)
            return
        try:
            total = await self.parts.store.count(list(request.filters), self.parts.settings.query_budget_s)
        except QueryBudgetExceeded:
            self._over_query_budget(request.sub_id, "count_closed")
            return
        self.send_nowait(protocol.count_reply(request.sub_id, total))

    def _over_query_budget(self, sub_id: str, action: str) -> None:
        budget = self.parts.settings.query_budget_s
        self.parts.metrics.budget_exceeded("query", action)
        log.info("query_over_budget", conn=self.id, sub_id=sub_id, budget_s=budget)
        self.session.subscriptions.discard(sub_id)
        self.send_nowait(protocol.closed(
            sub_id, f"error: this query needs more than the relay's query budget ({budget:g} s); "
                    "narrow it (kinds, authors, since/until, a rarer tag)"), sub_id)

    def _event_refusal(self) -> str | None:
        settings = self.parts.settings
        if self._event_window.count_or_wait(time.monotonic()):
            return f"rate-limited: more than {settings.events_per_minute_per_conn} events per minute on this connection"
        if self.parts.live.events_per_ip.count_or_wait(self.ip):
            return f"rate-limited: more than {settings.events_per_minute_per_ip} events per minute from your address"
        return None

    async def _publish(self, request: Publish) -> None:
        """Events are checked and stored concurrently (the store batches commits across them);
        a bounded number per connection keeps one client from queueing without limit."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()
        if len(self._in_flight) >= MAX_EVENTS_IN_FLIGHT:
            await self._in_flight.popleft()
        event = request.event
        waits = {self._providers[k] for k in ordering.depends_on(event) if k in self._providers}
        task = asyncio.create_task(self._publish_one(request, waits))
        self._in_flight.append(task)
        keys = ordering.provides(event)
        for key in keys:
            self._providers[key] = task
        task.add_done_callback(lambda done: self._forget(done, keys))

    def _forget(self, task: asyncio.Task[None], keys: set[Hashable]) -> None:
        for key in keys:
            if self._providers.get(key) is task:
                del self._providers[key]

    async def _publish_one(self, request: Publish, after: set[asyncio.Task[None]]) -> None:
        """Publish once the in-flight events this one depends on have been answered."""
        event = request.event
        if after:
            await asyncio.wait(after)
        try:
            outcome = await self.parts.publish(event, "client")
        except Exception:  # a bug must cost one event an OK false, never the connection
            log.exception("publish_failed", event_id=event.id)
            self.send_nowait(protocol.ok(event.id, False, "error: internal error while storing the event"))
            return
        self.send_nowait(protocol.ok(event.id, outcome.accepted, outcome.message))

    def not_reading(self, now: float) -> bool:
        """Is this client leaving what it asked for unread? Its outbox is full, or a write
        has been stuck for NOT_READING_S (the kernel's buffers take a few MB first)."""
        return self.outbox.congested_since is not None or (
            self._sending_since is not None and now - self._sending_since > NOT_READING_S)

    async def _subscribe(self, request: Subscribe) -> None:
        parts = self.parts
        sub_id = request.sub_id
        if parts.subscriptions.remove(self, sub_id):  # replaced: no live events for the old one
            parts.metrics.subscriptions_closed(1)
        self.outbox.purge(sub_id)  # nor its results still unsent
        if self.not_reading(time.monotonic()):
            # a client that reads nothing would have each REQ read and framed up to its
            # budget only to be cut: it is told so without a query
            self.session.subscriptions.discard(sub_id)
            parts.metrics.budget_exceeded("outbox", "req_closed")
            self.send_nowait(protocol.closed(sub_id, "error: this connection is not reading what it "
                                                     "asked for; read it, then ask again"), sub_id)
            return
        filters = [f for f in request.filters if not f.is_empty_result]
        started = asyncio.get_running_loop().time()
        refused: list[Offer] = []

        def deliver(batch: list[str]) -> bool:
            """On the event loop, while the reader thread fetches the next batch."""
            if self.closed:
                return False
            now = time.monotonic()
            for raw in batch:
                offer = self.outbox.offer(protocol.event_frame(sub_id, raw), sub_id, now)
                if offer != "queued":
                    refused.append(offer)
                    break
            self._wake.set()
            return not refused

        end = "done"
        if filters:
            end = await parts.store.stream_raw(filters, parts.settings.default_limit, deliver,
                                               parts.settings.query_budget_s)
        if self.closed:
            return
        if refused:
            self.session.subscriptions.discard(sub_id)
            self._overflowed(refused[0], "req_closed")
            self.send_nowait(protocol.closed(sub_id, _overflow_req(refused[0], self.outbox.limit)), sub_id)
            return
        if end == "budget":
            self._over_query_budget(sub_id, "req_closed")
            return
        if end == "stopped":  # the store is closing
            self.session.subscriptions.discard(sub_id)
            self.send_nowait(protocol.closed(sub_id, "error: the relay is shutting down"), sub_id)
            return
        self.send_nowait(protocol.eose(sub_id), sub_id)
        parts.metrics.req_served(asyncio.get_running_loop().time() - started)
        if sub_id in self.session.subscriptions and parts.subscriptions.add(self, sub_id, request.filters):
            parts.metrics.subscription_opened()


_OVERFLOW_LIVE: dict[Offer, str] = {
    "connection_full": "error: this connection is not reading fast enough; live events for this "
                       "subscription were dropped, subscribe again with since",
    "relay_full": "error: the relay is short of memory for output; live events for this subscription "
                  "were dropped, subscribe again with since",
}


def _overflow_req(offer: Offer, limit: int) -> str:
    """The REQ was answered as far as its events fit in the outbox: newest first, so a client
    can ask again with `until` set to the oldest created_at it got."""
    if offer == "relay_full":
        return "error: the relay is short of memory for output; results were cut, ask again later"
    return (f"error: results were cut at this connection's output budget ({limit} bytes waiting); "
            "read faster or ask again with until = the oldest created_at received")
