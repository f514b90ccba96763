"""Sync selection, fetching and the SyncService loops, driven by a fake SyncContext.

The fake plays the store (pending entries, needed OIDs, clone URLs) and the upstream servers
(which OIDs each URL serves, failures, how long a fetch takes), and records what the upstream
saw. Its clock is `time.monotonic`, the clock asyncio sleeps on, with short settings so the
loop tests take well under a second each.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
import structlog

from config.settings import Settings
from purgatory.sync.context import FetchKind, FetchOutcome
from purgatory.sync.loops import SyncService
from purgatory.sync.steps import (
    SyncRuntime,
    fetch_holding_slot,
    from_url,
    next_url,
    select_url,
    split_after_refusal,
    sync_identifier,
)
from purgatory.sync.throttle import ThrottleManager, domain_of
from tests.daemon import wait_for

A1, A2 = "https://a.example/r.git", "https://a.example/mirror/r.git"
B1 = "https://b.example/r.git"
OWN = "https://relay.example/npub1me/r.git"


class FakeContext:
    def __init__(self) -> None:
        self.urls: dict[str, list[str]] = {}
        self.needed: dict[str, set[str]] = {}  # pending identifiers -> OIDs their events need
        self.repo: defaultdict[str, set[str]] = defaultdict(set)  # OIDs we already hold
        self.serves: dict[str, set[str]] = {}  # upstream URL -> OIDs it has
        self.failures: dict[str, FetchKind] = {}
        self.fail_once: set[str] = set()
        self.raise_on: set[str] = set()
        self.refuse_missing = False  # answer "not our ref" when the URL lacks a wanted OID
        self.fetch_delay = 0.0
        self.fetches: list[tuple[float, str, str]] = []  # (start, identifier, url)
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_in_flight = self.peak_total = 0
        self.processed: Counter[str] = Counter()

    def add(self, identifier: str, urls: list[str], needed: set[str]) -> None:
        self.urls[identifier] = urls
        self.needed[identifier] = needed

    def fetched_urls(self, identifier: str | None = None) -> list[str]:
        return [u for _, i, u in self.fetches if identifier in (None, i)]

    def now(self) -> float:
        return time.monotonic()

    async def has_pending(self, identifier: str) -> bool:
        return identifier in self.needed

    async def needed_oids(self, identifier: str) -> set[str]:
        return self.needed.get(identifier, set()) - self.repo[identifier]

    async def clone_urls(self, identifier: str) -> list[str]:
        return list(self.urls.get(identifier, []))

    async def fetch(self, identifier: str, url: str, oids: frozenset[str]) -> FetchOutcome:
        domain = domain_of(url) or ""
        self.fetches.append((self.now(), identifier, url))
        self.in_flight[domain] += 1
        self.total_in_flight += 1
        self.peak[domain] = max(self.peak[domain], self.in_flight[domain])
        self.peak_total = max(self.peak_total, self.total_in_flight)
        try:
            await asyncio.sleep(self.fetch_delay)
        finally:
            self.in_flight[domain] -= 1
            self.total_in_flight -= 1
        if url in self.raise_on:
            raise RuntimeError("broken adapter")
        if url in self.failures:
            kind = self.failures[url]
            if url in self.fail_once:
                del self.failures[url]
            return FetchOutcome.failure(kind, "fake failure")
        if self.refuse_missing and oids - self.serves.get(url, set()):
            return FetchOutcome.failure("not-our-ref", "fake: lacks a wanted object")
        self.repo[identifier] |= self.serves.get(url, set()) & oids
        return FetchOutcome.success()

    async def process_new_data(self, identifier: str) -> None:
        self.processed[identifier] += 1
        if identifier in self.needed and not await self.needed_oids(identifier):
            del self.needed[identifier]


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "domain": "relay.example", "sync_backoff_base_s": 30, "sync_backoff_max_s": 60,
        "throttle_max_concurrent": 5, "throttle_max_per_minute": 30, "throttle_window_s": 60,
        "fetch_cooloff_s": 60, "fetch_timeout_s": 5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def runtime(ctx: FakeContext, **overrides: object) -> SyncRuntime:
    settings = make_settings(**overrides)
    return SyncRuntime(settings, ctx, ThrottleManager.from_settings(settings))


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """wait_for at the fine grain these fast fake-clock runs need."""
    await wait_for(condition, "the condition", timeout, every=0.005)


# --- next_url (the seed's cases and more) -------------------------------------------------


async def test_next_url_no_pending_events() -> None:
    ctx = FakeContext()
    ctx.urls["test"] = [A1]
    assert await next_url(runtime(ctx), "test", None, set()) is None


async def test_next_url_no_oids_needed() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], set())
    assert await next_url(runtime(ctx), "test", None, set()) is None


async def test_next_url_returns_non_throttled() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"abc123"})
    assert await next_url(runtime(ctx), "test", None, set()) == A1


async def test_next_url_skips_tried_and_none_when_all_tried() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, B1], {"abc123"})
    rt = runtime(ctx)
    assert await next_url(rt, "test", None, {A1}) == B1
    assert await next_url(rt, "test", None, {A1, B1}) is None


async def test_next_url_specific_domain() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, B1], {"abc123"})
    rt = runtime(ctx)
    assert await next_url(rt, "test", "b.example:443", set()) == B1
    assert await next_url(rt, "test", "a.example:443", {A1}) is None
    assert await next_url(rt, "test", "c.example:443", set()) is None


async def test_next_url_never_offers_our_own_origin() -> None:
    ctx = FakeContext()
    ctx.add("test", [OWN, "http://RELAY.example/x.git", B1], {"abc123"})
    rt = runtime(ctx)
    assert await next_url(rt, "test", None, set()) == B1
    assert await next_url(rt, "test", "relay.example:443", set()) is None


async def test_next_url_skips_throttled_domain_unless_asked_for_it() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, B1], {"abc123"})
    rt = runtime(ctx, throttle_max_concurrent=1)
    assert rt.throttles.try_acquire("a.example:443", ctx.now())
    assert await next_url(rt, "test", None, set()) == B1
    assert await next_url(rt, "test", "a.example:443", set()) == A1


def test_select_url_ignores_duplicates_and_unusable_urls() -> None:
    urls = ["not a url", "git@a.example:r.git", A1, A1, B1]
    assert select_url(urls, None, set(), lambda d: False, "relay.example") == A1
    assert select_url(urls, None, {A1}, lambda d: False, "relay.example") == B1
    assert select_url(urls, None, set(), lambda d: d == "a.example:443", "relay.example") == B1


# --- from_url and sync_identifier -------------------------------------------------------------


async def test_from_url_fetches_and_processes() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"abc123"})
    ctx.serves[A1] = {"abc123"}
    rt = runtime(ctx)
    outcome = await from_url(rt, "test", A1)
    assert outcome == FetchOutcome.success()
    assert ctx.processed["test"] == 1 and "test" not in ctx.needed
    assert rt.throttles.get("a.example:443").in_flight == 0  # type: ignore[union-attr]
    assert ctx.fetched_urls() == [A1]
    assert rt.stats.fetch_outcomes == Counter(ok=1)


async def test_from_url_skips_when_nothing_is_needed() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], set())
    assert await from_url(runtime(ctx), "test", A1) is None
    assert ctx.fetches == []


async def test_full_sync_with_two_servers() -> None:
    ctx = FakeContext()
    ctx.add("test", ["https://server1.com/r.git", "https://server2.com/r.git"], {"abc123"})
    ctx.serves["https://server2.com/r.git"] = {"abc123"}
    assert await sync_identifier(runtime(ctx), "test") is True
    assert ctx.fetched_urls() == ["https://server1.com/r.git", "https://server2.com/r.git"]
    assert ctx.processed["test"] == 1 and "test" not in ctx.needed


async def test_sync_completes_as_soon_as_nothing_is_needed() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, B1, "https://c.example/r.git"], {"x", "y"})
    ctx.serves[A1] = {"x", "y"}
    assert await sync_identifier(runtime(ctx), "test") is True
    assert ctx.fetched_urls() == [A1]


async def test_sync_without_fetching_when_data_already_arrived() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.repo["test"] = {"x"}  # a push brought it meanwhile
    assert await sync_identifier(runtime(ctx), "test") is True
    assert ctx.fetches == [] and ctx.processed["test"] == 1


async def test_sync_tries_each_url_once_then_reports_not_done() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, A2, B1], {"x"})
    rt = runtime(ctx)
    assert await sync_identifier(rt, "test") is False
    assert sorted(ctx.fetched_urls()) == sorted([A1, A2, B1])
    assert rt.stats.handed_to_domains == 0 and ctx.processed["test"] == 0


async def test_sync_hands_identifier_to_throttled_domains() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, A2, B1], {"x"})
    rt = runtime(ctx, throttle_max_per_minute=1)
    assert await sync_identifier(rt, "test") is False
    # A1 used a.example's only request of the window, so A2 waits in a.example's queue,
    # remembering that A1 was tried; b.example has nothing left to try.
    assert ctx.fetched_urls() == [A1, B1]
    a = rt.throttles.get("a.example:443")
    assert a is not None and a.waiting_count == 1 and a.tried_urls("test") == {A1}
    assert not rt.throttles.get("b.example:443").has_waiting  # type: ignore[union-attr]


async def test_network_failure_cools_the_domain_off() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, A2, B1], {"x"})
    ctx.failures[A1] = "refused"
    rt = runtime(ctx, fetch_cooloff_s=60)
    assert await sync_identifier(rt, "test") is False
    assert ctx.fetched_urls() == [A1, B1]  # A2 is not tried while a.example cools off
    assert rt.throttles.is_throttled("a.example:443", ctx.now())
    assert not rt.throttles.is_throttled("a.example:443", ctx.now() + 61)
    assert rt.throttles.get("a.example:443").tried_urls("test") == {A1}  # type: ignore[union-attr]
    assert rt.stats.fetch_outcomes == Counter(refused=1, ok=1)


@pytest.mark.parametrize("kind", ["not-our-ref", "http", "error"])
async def test_repository_level_failure_does_not_cool_off(kind: FetchKind) -> None:
    ctx = FakeContext()
    ctx.add("test", [A1, A2], {"x"})
    ctx.failures[A1] = kind
    rt = runtime(ctx)
    assert await sync_identifier(rt, "test") is False
    assert ctx.fetched_urls() == [A1, A2]
    assert not rt.throttles.is_throttled("a.example:443", ctx.now())


async def test_broken_fetch_is_an_error_outcome_and_frees_the_slot() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.raise_on.add(A1)
    rt = runtime(ctx)
    outcome = await from_url(rt, "test", A1)
    assert outcome is not None and outcome.kind == "error" and "broken adapter" in outcome.detail
    assert rt.throttles.get("a.example:443").in_flight == 0  # type: ignore[union-attr]


async def test_fetch_timeout_frees_the_slot_and_cools_off() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.fetch_delay = 30
    rt = runtime(ctx, fetch_timeout_s=0.05)
    outcome = await from_url(rt, "test", A1)
    assert outcome is not None and outcome.kind == "timeout"
    throttle = rt.throttles.get("a.example:443")
    assert throttle is not None and throttle.in_flight == 0 and throttle.cooling_off(ctx.now())


# --- per-object retries after "not our ref" (each a request of its own) ----------------------


def test_split_after_refusal_only_for_a_refused_multi_object_fetch() -> None:
    refused = FetchOutcome.failure("not-our-ref")
    assert split_after_refusal(frozenset({"b", "a"}), refused) == [frozenset({"a"}), frozenset({"b"})]
    assert split_after_refusal(frozenset({"a"}), refused) == []
    assert split_after_refusal(frozenset({"a", "b"}), FetchOutcome.failure("http")) == []
    assert split_after_refusal(frozenset({"a", "b"}), FetchOutcome.success()) == []


async def test_per_object_retries_each_take_a_slot() -> None:
    """A server lacking one of three objects refuses the fetch; the three one-object fetches
    that follow are three more requests, and the domain's window counts all four."""
    ctx = FakeContext()
    ctx.refuse_missing = True
    ctx.add("test", [A1], {"x", "y", "z"})
    ctx.serves[A1] = {"x", "z"}
    rt = runtime(ctx)
    outcome = await from_url(rt, "test", A1)
    assert outcome is not None and outcome.ok
    assert ctx.fetched_urls() == [A1] * 4
    throttle = rt.throttles.get("a.example:443")
    assert throttle is not None and throttle.window_count(ctx.now()) == 4 and throttle.in_flight == 0
    assert await ctx.needed_oids("test") == {"y"} and ctx.processed["test"] == 1
    assert rt.stats.fetch_outcomes == Counter({"not-our-ref": 2, "ok": 2})


async def test_per_object_retries_stop_at_the_window_and_resume_from_the_domain_queue() -> None:
    """Three requests per window: the refused fetch and two one-object fetches use them; the
    third object is owed, not dropped: the URL is not tried yet, so it waits in the domain's
    queue, and resuming asks for that object alone (not for everything again)."""
    ctx = FakeContext()
    ctx.refuse_missing = True
    ctx.add("test", [A1], {"x", "y", "z"})
    ctx.serves[A1] = {"x", "z"}
    rt = runtime(ctx, throttle_max_per_minute=3)
    assert await sync_identifier(rt, "test") is False
    # the refused fetch, then x (got) and y (lacking); z is owed
    assert len(ctx.fetches) == 3 and rt.stats.splits_cut == 1
    a = rt.throttles.get("a.example:443")
    assert a is not None and a.window_count(ctx.now()) == 3
    assert a.waiting_count == 1 and a.tried_urls("test") == set() and a.has_split("test", A1)
    assert await ctx.needed_oids("test") == {"y", "z"}
    a.max_per_window = 4  # stands for the oldest request leaving the window
    assert rt.throttles.try_acquire("a.example:443", ctx.now())
    outcome = await fetch_holding_slot(rt, "test", A1, "a.example:443", frozenset({"y", "z"}))
    assert outcome.ok and len(ctx.fetches) == 4 and not a.has_split("test", A1)
    assert a.window_count(ctx.now()) == 4 and a.in_flight == 0
    assert await ctx.needed_oids("test") == {"y"}


async def test_per_object_retries_hold_the_window_against_the_upstream() -> None:
    """Data spread over two domains, each lacking some objects, several identifiers: the
    fake upstreams never see more than 3 requests in a window (every one-object fetch
    counted), and everything still arrives (the main path backs off for 30 s, far past
    this test, so the domain queues do the rest)."""
    window = 0.4
    ctx = FakeContext()
    ctx.refuse_missing = True
    for n in range(3):
        a_url, b_url = f"https://a.example/r{n}.git", f"https://b.example/r{n}.git"
        ctx.add(f"id{n}", [a_url, b_url], {f"a{n}1", f"a{n}2", f"b{n}1", f"b{n}2"})
        ctx.serves[a_url] = {f"a{n}1", f"a{n}2"}
        ctx.serves[b_url] = {f"b{n}1", f"b{n}2"}
    service = await run_service(
        ctx, throttle_max_concurrent=2, throttle_max_per_minute=3, throttle_window_s=window
    )
    try:
        for n in range(3):
            service.trigger_immediate_sync(f"id{n}")
        await eventually(lambda: not ctx.needed, timeout=10)
        slack = window / 10
        for domain in ("a.example", "b.example"):
            starts = sorted(t for t, _, u in ctx.fetches if domain in u)
            for i, start in enumerate(starts):
                assert sum(1 for s in starts[i:] if s - start < window - slack) <= 3
        assert service.stats.splits_cut > 0  # the limit did bind on the one-object fetches
        assert service.stats.syncs_started == 3
    finally:
        await service.stop()


# --- SyncService loops ----------------------------------------------------------------------


async def run_service(ctx: FakeContext, **overrides: object) -> SyncService:
    service = SyncService(make_settings(**overrides), ctx)
    service.start()
    return service


async def test_service_syncs_enqueued_identifier_and_forgets_it() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.serves[A1] = {"x"}
    service = await run_service(ctx)
    try:
        service.enqueue("test", 0.05)
        assert service.queue_length == 1
        await eventually(lambda: service.queue_length == 0)
        assert ctx.processed["test"] == 1 and "test" not in ctx.needed
        assert service.stats.syncs_done == 1 and service.active_syncs == 0
    finally:
        await service.stop()


async def test_service_backs_off_and_retries_until_data_appears() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    service = await run_service(ctx, sync_backoff_base_s=0.02, sync_backoff_max_s=0.05)
    try:
        service.trigger_immediate_sync("test")
        await eventually(lambda: len(ctx.fetches) >= 3)  # each retry tries A1 afresh
        entry = service.queue.get("test")
        assert entry is not None and entry.attempt_count >= 2
        ctx.serves[A1] = {"x"}
        await eventually(lambda: service.queue_length == 0)
        assert "test" not in ctx.needed and service.stats.syncs_retried >= 2
    finally:
        await service.stop()


async def test_service_new_event_during_sync_runs_it_again() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.serves[A1] = {"x"}
    ctx.fetch_delay = 0.1
    service = await run_service(ctx)
    try:
        service.trigger_immediate_sync("test")
        await eventually(lambda: ctx.total_in_flight == 1)
        service.enqueue("test", 0)  # fresh start requested while the attempt runs
        await eventually(lambda: service.queue_length == 0)
        assert service.stats.syncs_started == 2 and service.stats.syncs_done == 2
    finally:
        await service.stop()


async def test_service_caps_concurrent_identifier_syncs() -> None:
    ctx = FakeContext()
    ctx.fetch_delay = 0.03
    for n in range(6):
        url = f"https://host{n}.example/r.git"  # distinct domains: only the global cap binds
        ctx.add(f"id{n}", [url], {f"oid{n}"})
        ctx.serves[url] = {f"oid{n}"}
    service = await run_service(ctx, sync_max_concurrent=2)
    try:
        for n in range(6):
            service.trigger_immediate_sync(f"id{n}")
        await eventually(lambda: not ctx.needed and service.queue_length == 0)
        assert ctx.peak_total == 2
    finally:
        await service.stop()


async def test_throttle_limits_hold_against_the_upstream() -> None:
    """Many identifiers on one domain: the fake upstream never sees more than 2 requests at
    once nor more than 10 starts in any window, and everything still completes through the
    domain's waiting queue (the main path backs off for 30 s, far past this test)."""
    window = 0.5
    ctx = FakeContext()
    ctx.fetch_delay = 0.02
    for n in range(6):
        urls = [f"https://a.example/m{m}/r{n}.git" for m in range(4)]
        ctx.add(f"id{n}", urls, {f"oid{n}"})
        ctx.serves[urls[-1]] = {f"oid{n}"}
    service = await run_service(
        ctx, throttle_max_concurrent=2, throttle_max_per_minute=10, throttle_window_s=window
    )
    try:
        for n in range(6):
            service.trigger_immediate_sync(f"id{n}")
        await eventually(lambda: not ctx.needed, timeout=10)
        starts = sorted(t for t, _, _ in ctx.fetches)
        assert len(starts) == 24
        assert ctx.peak["a.example:443"] == 2
        assert service.domain_stats()["a.example:443"].peak_in_flight == 2
        # Slack for the few microseconds between taking a slot and the upstream seeing it.
        slack = window / 10
        for i, start in enumerate(starts):
            assert sum(1 for s in starts[i:] if s - start < window - slack) <= 10
        assert service.stats.handed_to_domains > 0
    finally:
        await service.stop()


async def test_window_blocked_domain_wakes_by_itself() -> None:
    """13 URLs on one domain, only the last has the data, 10 requests per window: the domain
    must resume on its own when the oldest request leaves the window; nothing else wakes it."""
    window = 0.3
    ctx = FakeContext()
    urls = [f"https://a.example/m{m}/r.git" for m in range(13)]
    ctx.add("test", urls, {"x"})
    ctx.serves[urls[-1]] = {"x"}
    service = await run_service(
        ctx, throttle_max_concurrent=2, throttle_max_per_minute=10, throttle_window_s=window
    )
    try:
        service.trigger_immediate_sync("test")
        await eventually(lambda: not ctx.needed)
        starts = [t for t, _, _ in ctx.fetches]
        assert ctx.fetched_urls() == urls
        assert starts[10] - starts[0] >= window - window / 10
        assert service.stats.syncs_started == 1  # the main path did not retry meanwhile
    finally:
        await service.stop()


async def test_cooled_off_domain_is_retried_after_the_cool_off() -> None:
    cooloff = 0.2
    ctx = FakeContext()
    ctx.add("test", [A1, A2], {"x"})
    ctx.failures[A1] = "dns"
    ctx.serves[A2] = {"x"}
    service = await run_service(ctx, fetch_cooloff_s=cooloff)
    try:
        service.trigger_immediate_sync("test")
        await eventually(lambda: not ctx.needed)
        (t1, _, u1), (t2, _, u2) = ctx.fetches
        assert (u1, u2) == (A1, A2) and t2 - t1 >= cooloff
        assert service.stats.fetch_outcomes == Counter(dns=1, ok=1)
        assert service.stats.syncs_started == 1
    finally:
        await service.stop()


async def test_stop_cancels_running_work_and_frees_slots() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    ctx.fetch_delay = 30
    service = await run_service(ctx)
    service.trigger_immediate_sync("test")
    await eventually(lambda: ctx.total_in_flight == 1)
    await asyncio.wait_for(service.stop(), timeout=5)
    assert ctx.total_in_flight == 0
    assert service.domain_stats()["a.example:443"].in_flight == 0
    assert service.active_syncs == 0


async def test_disabled_sync_starts_no_loops() -> None:
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    service = SyncService(make_settings(sync_enabled=False), ctx)
    with structlog.testing.capture_logs() as logs:
        service.start()
    service.trigger_immediate_sync("test")
    # start() creates its loops at once, so their absence needs no waiting
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert [entry["event"] for entry in logs] == ["sync.disabled"]
    assert service.queue_length == 1  # queued, and nothing there to take it
    await service.stop()


async def test_handoff_survives_a_slot_freed_before_the_handoff() -> None:
    """a.example is full when next_url looks; a slot frees while the sync checks whether it
    is finished. The identifier must still wait in a.example's queue, not for its backoff."""
    ctx = FakeContext()
    ctx.add("test", [A1], {"x"})
    rt = runtime(ctx, throttle_max_concurrent=1)
    assert rt.throttles.try_acquire("a.example:443", ctx.now())
    original = ctx.has_pending
    calls = []

    async def has_pending_and_free_slot(identifier: str) -> bool:
        calls.append(identifier)
        if len(calls) == 2:  # next_url has looked (throttled); now the finished-check runs
            rt.throttles.release("a.example:443")
        return await original(identifier)

    ctx.has_pending = has_pending_and_free_slot  # type: ignore[method-assign]
    assert await sync_identifier(rt, "test") is False
    a = rt.throttles.get("a.example:443")
    assert a is not None and a.waiting_count == 1 and ctx.fetches == []


async def test_main_path_leaves_an_identifier_to_the_domain_queue_holding_it() -> None:
    """Once an identifier waits in a domain's queue, that domain's loop fetches it; the main
    path must not fetch it from the same domain too (two slots of one window for one repo)."""
    ctx = FakeContext()
    ctx.add("test", [A1, B1], {"x"})
    rt = runtime(ctx)
    rt.throttles.enqueue_identifier("a.example:443", "test", set(), ctx.now())
    assert await next_url(rt, "test", None, set()) == B1
    assert await next_url(rt, "test", "a.example:443", set()) == A1
