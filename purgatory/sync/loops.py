"""The sync service's loops: the main loop over due identifiers and one loop per throttled
domain, both sleeping on an `asyncio.Event` with a timeout from the clock, so nothing polls.
The steps they run (`sync_identifier`, a fetch holding one slot) live in `sync.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from config.settings import Settings
from purgatory.sync.context import SyncContext, SyncStats
from purgatory.sync.queue import SyncQueue
from purgatory.sync.steps import SyncRuntime, candidate, fetch_holding_slot, sync_identifier
from purgatory.sync.throttle import DomainStats, ThrottleManager

log = structlog.get_logger(__name__)


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Until the event is set or `timeout` seconds pass (None: only the event)."""
    if timeout is not None and timeout <= 0:
        await asyncio.sleep(0)
        return
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


# --- the service ------------------------------------------------------------------------------


class SyncRequests:
    """The sync queue with the wake-up of the loop that serves it: the one object the
    purgatory (which enqueues on every hold) and the sync service (which reads it) share,
    built first by relay/compose.py so that neither is given the other. `clock` must be
    the sync context's `now`, the clock the queue's due times are on."""

    def __init__(self, queue: SyncQueue, clock: Callable[[], float]) -> None:
        self.queue = queue
        self.clock = clock
        self.wake = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> SyncRequests:
        return cls(SyncQueue.from_settings(settings), clock)

    def enqueue(self, identifier: str, delay_s: float) -> None:
        self.queue.enqueue(identifier, delay_s, self.clock())
        self.wake.set()


class SyncService:
    """Owns the queue, the throttles and the loops. Call `start()` inside the running event loop
    and `await stop()` at shutdown; everything else is synchronous and cheap, so the relay can
    call `enqueue` straight from its event handling."""

    def __init__(
        self,
        settings: Settings,
        context: SyncContext,
        *,
        requests: SyncRequests | None = None,
        on_throttle_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.context = context
        self.requests = requests or SyncRequests.from_settings(settings, context.now)
        self.queue = self.requests.queue
        self.throttles = ThrottleManager.from_settings(settings)
        self.throttles.on_change = self._domain_changed
        self.stats = SyncStats()
        self._rt = SyncRuntime(settings, context, self.throttles, self.stats)
        self._wake = self.requests.wake
        self._running = False
        self._main: asyncio.Task[None] | None = None
        self._syncing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._domain_tasks: dict[str, asyncio.Task[None]] = {}
        self._domain_events: dict[str, asyncio.Event] = {}
        #: Called with (domain, seconds) when an identifier queued on a throttled domain
        #: gets its slot: how long politeness made it wait.
        self.on_throttle_wait = on_throttle_wait

    # --- control ------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            return
        if not self.settings.sync_enabled:
            log.info("sync.disabled")
            return
        self._running = True
        self._main = asyncio.create_task(self._main_loop(), name="purgatory-sync-main")
        for domain in self.throttles.domains():
            self._domain_changed(domain)

    async def stop(self) -> None:
        self._running = False
        tasks = [t for t in (self._main, *self._domain_tasks.values(), *self._tasks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._main = None

    def enqueue(self, identifier: str, delay_s: float) -> None:
        self.requests.enqueue(identifier, delay_s)

    def trigger_immediate_sync(self, identifier: str) -> None:
        self.queue.trigger_immediate_sync(identifier, self.context.now())
        self._wake.set()

    def remove(self, identifier: str) -> None:
        """Forget an identifier (its entries were released or expired)."""
        self.queue.remove(identifier)

    # --- read-only stats for metrics ----------------------------------------------------

    @property
    def queue_length(self) -> int:
        return len(self.queue)

    @property
    def active_syncs(self) -> int:
        return len(self._syncing)

    def domain_stats(self) -> dict[str, DomainStats]:
        return self.throttles.stats(self.context.now())

    # --- main loop ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _main_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                timeout = self._start_ready()
            except Exception:  # a broken clock or context: pause rather than die or spin
                log.exception("sync.main_loop_error")
                timeout = self.settings.sync_backoff_base_s
            await _wait(self._wake, timeout)

    def _start_ready(self) -> float | None:
        """Start every due identifier the global cap allows; return how long to sleep."""
        cap = self.settings.sync_max_concurrent
        now = self.context.now()
        self.throttles.prune_idle(now)
        for identifier in self.queue.ready(now):
            if len(self._syncing) >= cap:
                break
            self.queue.mark_in_progress(identifier)
            self._syncing.add(identifier)
            self._spawn(self._run_sync(identifier), f"sync:{identifier}")
        due = self.queue.next_due()
        return None if len(self._syncing) >= cap or due is None else due - now

    async def _run_sync(self, identifier: str) -> None:
        done = False
        self.stats.syncs_started += 1
        try:
            done = await sync_identifier(self._rt, identifier)
        except Exception:
            log.exception("sync.failed", identifier=identifier)
        finally:
            self._syncing.discard(identifier)
            self.queue.on_sync_complete(identifier, done, self.context.now())
            self._wake.set()
        if done:
            self.stats.syncs_done += 1
            log.info("sync.done", identifier=identifier)
        else:
            self.stats.syncs_retried += 1
            entry = self.queue.get(identifier)
            log.debug("sync.retry_later", identifier=identifier,
                      attempts=entry.attempt_count if entry else None)

    # --- domain loops -------------------------------------------------------------------

    def _domain_changed(self, domain: str) -> None:
        """Wake the domain's loop, or start one if identifiers wait and none runs."""
        if not self._running:
            return
        if domain in self._domain_tasks:
            self._domain_events[domain].set()
            return
        throttle = self.throttles.get(domain)
        if throttle is not None and throttle.has_waiting:
            self._domain_events[domain] = asyncio.Event()
            self._domain_tasks[domain] = asyncio.create_task(
                self._domain_loop(domain), name=f"sync-domain:{domain}"
            )

    async def _domain_loop(self, domain: str) -> None:
        event = self._domain_events[domain]
        try:
            while True:
                event.clear()
                throttle = self.throttles.get(domain)
                if throttle is None or not throttle.has_waiting:
                    return
                wait = throttle.time_until_capacity(self.context.now())
                if wait != 0:
                    await _wait(event, wait)
                    continue
                identifier = throttle.next_ready_identifier()
                if identifier is None:
                    await _wait(event, None)
                    continue
                await self._serve(domain, identifier)
        finally:
            self._domain_tasks.pop(domain, None)
            self._domain_events.pop(domain, None)

    async def _serve(self, domain: str, identifier: str) -> None:
        """Pick this identifier's next URL on the domain; take a slot and fetch in the
        background, so the loop can fill the domain's other slots meanwhile."""
        throttle = self.throttles.get_or_create(domain)
        try:
            found = await candidate(self._rt, identifier, domain, throttle.tried_urls(identifier))
        except Exception:
            log.exception("sync.domain_select_failed", identifier=identifier, domain=domain)
            found = None
        if found is None:
            throttle.remove_identifier(identifier)
            return
        url, oids = found
        now = self.context.now()
        if not self.throttles.try_acquire(domain, now):
            throttle.mark_not_in_progress(identifier)
            return
        since = throttle.queued_since(identifier)
        if self.on_throttle_wait is not None and since is not None:
            self.on_throttle_wait(domain, now - since)
        self._spawn(self._queued_fetch(domain, identifier, url, oids), f"fetch:{url}")

    async def _queued_fetch(
        self, domain: str, identifier: str, url: str, oids: frozenset[str]
    ) -> None:
        try:
            await fetch_holding_slot(self._rt, identifier, url, domain, oids)
        finally:
            throttle = self.throttles.get(domain)
            if throttle is not None and not throttle.has_split(identifier, url):
                throttle.mark_url_tried(identifier, url)  # else one-object fetches are owed
            self.throttles.mark_not_in_progress(domain, identifier)
