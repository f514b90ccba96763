"""The asyncio side of one Nostr websocket: moves frames between the ASGI connection and the
sans-IO `Session`, runs the requests it yields, and queues outgoing frames on one writer task
so that live broadcasts, OKs and query results never interleave mid-frame."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable

import structlog

from relay import ordering, protocol
from relay.protocol import Count, Publish, Reply, Session, Subscribe, Unsubscribe
from relay.ratelimit import Window

if TYPE_CHECKING:
    from relay.app import Relay

log = structlog.get_logger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

MAX_EVENTS_IN_FLIGHT = 512  # per connection; past this the reader waits (backpressure)
MAX_OUTBOX = 20000  # frames queued for a slow reader before it is disconnected
_ids = itertools.count(1)


class Connection:
    """One websocket client. Hashable by identity so the subscription registry can key on it."""

    def __init__(self, relay: "Relay", send: Send, client_ip: str) -> None:
        self.relay = relay
        self.id = next(_ids)
        self.ip = client_ip
        self.session = Session(limits=relay.limits)
        self._send = send
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._in_flight: deque[asyncio.Task[None]] = deque()
        self._providers: dict[Hashable, asyncio.Task[None]] = {}  # see relay/ordering.py
        self._event_window = Window(relay.settings.events_per_minute_per_conn, 60.0)
        self._req_window = Window(relay.settings.reqs_per_minute_per_conn, 60.0)
        self.closed = False

    # --- outgoing ---------------------------------------------------------------------
    def send_nowait(self, text: str) -> None:
        if self.closed:
            return
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("slow_consumer_dropped", conn=self.id)
            self.closed = True
            self._outbox.put_nowait(None)
            return
        self._outbox.put_nowait(text)

    async def _writer(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None:
                break
            await self._send({"type": "websocket.send", "text": text})
        await self._send({"type": "websocket.close", "code": 1008})

    # --- incoming ---------------------------------------------------------------------
    async def run(self, receive: Receive) -> None:
        writer = asyncio.create_task(self._writer())
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
        finally:
            self.closed = True
            self.relay.metrics.subscriptions_closed(self.relay.subscriptions.drop(self))
            for task in self._in_flight:
                if not task.done():
                    await asyncio.wait([task], timeout=self.relay.settings.shutdown_timeout_s)
            self._outbox.put_nowait(None)
            writer.cancel()

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
        elif isinstance(request, (Subscribe, Count)) and self._req_window.take(time.monotonic()):
            self.session.subscriptions.discard(request.sub_id)
            limit = self.relay.settings.reqs_per_minute_per_conn
            self.send_nowait(protocol.closed(request.sub_id, f"rate-limited: more than {limit} REQs per minute"))
        elif isinstance(request, Unsubscribe):
            if self.relay.subscriptions.remove(self, request.sub_id):
                self.relay.metrics.subscriptions_closed(1)
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
        else:
            total = await self.relay.store.count(list(request.filters))
            self.send_nowait(protocol.count_reply(request.sub_id, total))

    def _event_refusal(self) -> str | None:
        settings = self.relay.settings
        if self._event_window.take(time.monotonic()):
            return f"rate-limited: more than {settings.events_per_minute_per_conn} events per minute on this connection"
        if self.relay.events_per_ip.take(self.ip):
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
            outcome = await self.relay.ingest.publish(event, source="client")
        except Exception:  # a bug must cost one event an OK false, never the connection
            log.exception("publish_failed", event_id=event.id)
            self.send_nowait(protocol.ok(event.id, False, "error: internal error while storing the event"))
            return
        self.send_nowait(protocol.ok(event.id, outcome.accepted, outcome.message))

    async def _subscribe(self, request: Subscribe) -> None:
        relay = self.relay
        filters = [f for f in request.filters if not f.is_empty_result]
        started = asyncio.get_running_loop().time()
        rows = await relay.store.query_raw(filters, relay.settings.default_limit) if filters else []
        for raw in rows:
            self.send_nowait(protocol.event_frame(request.sub_id, raw))
        self.send_nowait(protocol.eose(request.sub_id))
        relay.metrics.req_served(asyncio.get_running_loop().time() - started)
        if request.sub_id in self.session.subscriptions:
            if relay.subscriptions.add(self, request.sub_id, request.filters):
                relay.metrics.subscription_opened()
