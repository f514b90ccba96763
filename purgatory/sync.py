"""The purgatory sync service: fetch the git data that waiting events need.

Two independent paths share the same two steps, as in the seed design:

- the main loop runs `sync_identifier` for each due identifier: it tries every untried URL of a
  domain that is not throttled right now, then hands the identifier to the waiting queue of each
  throttled domain that still has untried URLs for it, and returns (done, or back off);
- one loop per domain with waiting identifiers serves them round-robin whenever the domain has
  capacity again.

Both use `next_url` (selection) and a fetch that holds one throttle slot. All I/O is behind
`SyncContext`; every wait is an `asyncio.Event` with a timeout computed from the clock, so no
loop polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from config.settings import Settings
from purgatory.context import FetchOutcome, FetchRecord, SyncContext, SyncStats
from purgatory.queue import SyncQueue
from purgatory.throttle import DomainStats, ThrottleManager, domain_of, is_own_origin

log = structlog.get_logger(__name__)

IsThrottled = Callable[[str], bool]


# --- pure selection -------------------------------------------------------------------------


def _candidates(urls: Iterable[str], own_domain: str) -> list[tuple[str, str]]:
    """(url, domain) pairs in input order, without duplicates, unusable URLs or our origin."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for url in urls:
        domain = domain_of(url)
        if url in seen or domain is None or is_own_origin(url, own_domain):
            continue
        seen.add(url)
        out.append((url, domain))
    return out


def select_url(
    urls: Iterable[str],
    domain: str | None,
    tried: set[str],
    is_throttled: IsThrottled,
    own_domain: str,
) -> str | None:
    """`domain=None`: the first untried URL of a domain not throttled now; `domain=X`: the first
    untried URL of X (its own loop only asks when X has capacity)."""
    for url, url_domain in _candidates(urls, own_domain):
        if url in tried:
            continue
        if domain is None and not is_throttled(url_domain):
            return url
        if domain is not None and url_domain == domain:
            return url
    return None


def throttled_domains_with_untried(
    urls: Iterable[str], tried: set[str], is_throttled: IsThrottled, own_domain: str
) -> dict[str, set[str]]:
    """Throttled domains that still have an untried URL, each with the URLs of that domain
    already tried, so its waiting queue does not repeat them."""
    by_domain: dict[str, list[str]] = {}
    for url, url_domain in _candidates(urls, own_domain):
        by_domain.setdefault(url_domain, []).append(url)
    return {
        d: {u for u in d_urls if u in tried}
        for d, d_urls in by_domain.items()
        if is_throttled(d) and any(u not in tried for u in d_urls)
    }


# --- shared runtime and the two steps ---------------------------------------------------------


@dataclass
class SyncRuntime:
    """What both paths share: the context, the throttles, limits and counters."""

    settings: Settings
    ctx: SyncContext
    throttles: ThrottleManager
    stats: SyncStats = field(default_factory=SyncStats)
    observer: Callable[[FetchRecord], None] | None = None
    _locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    def is_throttled(self) -> IsThrottled:
        now = self.ctx.now()
        return lambda domain: self.throttles.is_throttled(domain, now)

    async def process(self, identifier: str) -> None:
        """Run process_new_data one at a time per identifier: both paths may finish fetches
        for the same repository at once."""
        lock, users = self._locks.get(identifier, (asyncio.Lock(), 0))
        self._locks[identifier] = (lock, users + 1)
        try:
            async with lock:
                await self.ctx.process_new_data(identifier)
        except Exception:
            log.exception("sync.process_failed", identifier=identifier)
        finally:
            lock, users = self._locks[identifier]
            if users <= 1:
                del self._locks[identifier]
            else:
                self._locks[identifier] = (lock, users - 1)


async def _candidate(
    rt: SyncRuntime, identifier: str, domain: str | None, tried: set[str]
) -> tuple[str, frozenset[str]] | None:
    if not await rt.ctx.has_pending(identifier):
        return None
    oids = await rt.ctx.needed_oids(identifier)
    if not oids:
        return None
    urls = await rt.ctx.clone_urls(identifier)
    url = select_url(urls, domain, tried, rt.is_throttled(), rt.settings.domain)
    return None if url is None else (url, frozenset(oids))


async def next_url(
    rt: SyncRuntime, identifier: str, domain: str | None, tried: set[str]
) -> str | None:
    """The next URL to try, or None: nothing pending, nothing needed, or no untried URL left
    (of a non-throttled domain for `domain=None`, of that domain otherwise)."""
    found = await _candidate(rt, identifier, domain, tried)
    return None if found is None else found[0]


async def fetch_holding_slot(
    rt: SyncRuntime, identifier: str, url: str, domain: str, oids: frozenset[str]
) -> FetchOutcome:
    """Fetch with a slot already taken; the slot is freed however the fetch ends, and a
    network-level failure cools the domain off before anyone may use the slot again. The new
    data is processed after the slot is freed, so slow processing never holds a slot."""
    started = rt.ctx.now()
    try:
        try:
            async with asyncio.timeout(rt.settings.fetch_timeout_s):
                outcome = await rt.ctx.fetch(identifier, url, oids)
        except TimeoutError:
            limit = rt.settings.fetch_timeout_s
            outcome = FetchOutcome.failure("timeout", f"no answer in {limit}s")
        except Exception as exc:  # a context that breaks its contract must not kill a loop
            outcome = FetchOutcome.failure("error", repr(exc))
        if outcome.network_failure:
            rt.throttles.cool_off(domain, rt.ctx.now() + rt.settings.fetch_cooloff_s)
    finally:
        rt.throttles.release(domain, rt.ctx.now())
    record = FetchRecord(identifier, url, domain, outcome, rt.ctx.now() - started)
    rt.stats.fetch_outcomes[outcome.kind] += 1
    log.debug("sync.fetched", identifier=identifier, url=url, kind=outcome.kind,
              detail=outcome.detail)
    if rt.observer is not None:
        try:
            rt.observer(record)
        except Exception:  # metrics must never break a sync
            log.exception("sync.observer_failed")
    if outcome.ok and await rt.ctx.needed_oids(identifier) != oids:
        await rt.process(identifier)  # only when the fetch brought something (as the seed)
    return outcome


async def from_url(rt: SyncRuntime, identifier: str, url: str) -> FetchOutcome | None:
    """Take a slot, fetch what is still missing, release, then process the new data. None when
    nothing was fetched: nothing is needed any more, or the domain became throttled."""
    domain = domain_of(url)
    if domain is None:
        return None
    oids = await rt.ctx.needed_oids(identifier)
    if not oids or not rt.throttles.try_acquire(domain, rt.ctx.now()):
        return None
    return await fetch_holding_slot(rt, identifier, url, domain, frozenset(oids))


async def _finished(rt: SyncRuntime, identifier: str) -> bool:
    if not await rt.ctx.has_pending(identifier):
        return True
    if not await rt.ctx.needed_oids(identifier):
        await rt.process(identifier)
        return True
    return False


async def sync_identifier(rt: SyncRuntime, identifier: str) -> bool:
    """One attempt of the main path; True when nothing is left to fetch for the identifier."""
    tried: set[str] = set()
    skipped: set[str] = set()  # lost a slot race: not tried, so still handed to the domain
    while (url := await next_url(rt, identifier, None, tried | skipped)) is not None:
        outcome = await from_url(rt, identifier, url)
        if outcome is None:
            skipped.add(url)
            continue
        tried.add(url)
        if await _finished(rt, identifier):
            return True
    if await _finished(rt, identifier):
        return True
    urls = await rt.ctx.clone_urls(identifier)
    throttled, raced = rt.is_throttled(), {domain_of(u) for u in skipped}
    handoff = throttled_domains_with_untried(
        urls, tried, lambda d: d in raced or throttled(d), rt.settings.domain
    )
    for domain, tried_here in handoff.items():
        rt.throttles.enqueue_identifier(domain, identifier, tried_here, rt.ctx.now())
        rt.stats.handed_to_domains += 1
    if handoff:
        log.debug("sync.handed_to_domains", identifier=identifier, domains=sorted(handoff))
    return False


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


class SyncService:
    """Owns the queue, the throttles and the loops. Call `start()` inside the running event loop
    and `await stop()` at shutdown; everything else is synchronous and cheap, so the relay can
    call `enqueue` straight from its event handling."""

    def __init__(
        self,
        settings: Settings,
        context: SyncContext,
        observer: Callable[[FetchRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self.context = context
        self.queue = SyncQueue.from_settings(settings)
        self.throttles = ThrottleManager.from_settings(settings)
        self.throttles.on_change = self._domain_changed
        self.stats = SyncStats()
        self._rt = SyncRuntime(settings, context, self.throttles, self.stats, observer)
        self._wake = asyncio.Event()
        self._running = False
        self._main: asyncio.Task[None] | None = None
        self._syncing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._domain_tasks: dict[str, asyncio.Task[None]] = {}
        self._domain_events: dict[str, asyncio.Event] = {}
        #: Called with (domain, seconds) when an identifier queued on a throttled domain
        #: gets its slot: how long politeness made it wait.
        self.on_throttle_wait: Callable[[str, float], None] | None = None

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
        self.queue.enqueue(identifier, delay_s, self.context.now())
        self._wake.set()

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
            found = await _candidate(self._rt, identifier, domain, throttle.tried_urls(identifier))
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
            if throttle is not None:
                throttle.mark_url_tried(identifier, url)
            self.throttles.mark_not_in_progress(domain, identifier)
