"""DomainThrottle / ThrottleManager: limits, sliding window, cool-off, round-robin waiting queue,
and what a "domain" is. Time is passed in, so every case is exact."""

from __future__ import annotations

import random

import pytest

from config.settings import Settings
from purgatory.sync.throttle import DomainThrottle, ThrottleManager, domain_of, is_own_origin


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://Example.COM/repo.git", "example.com:443"),
        ("http://example.com/repo.git", "example.com:80"),
        ("https://example.com:8443/repo.git", "example.com:8443"),
        ("http://127.0.0.1:8080/npub1x/repo.git", "127.0.0.1:8080"),
        ("https://[::1]/repo.git", "[::1]:443"),
        ("git://example.com/repo.git", "example.com:9418"),
        ("example.com/repo.git", None),  # no scheme
        ("git@example.com:me/repo.git", None),  # scp-like, not a URL
        ("ftp://example.com/repo.git", None),  # unknown default port
        ("https://example.com:99999/repo.git", None),  # invalid port
        ("https:///repo.git", None),
    ],
)
def test_domain_of(url: str, domain: str | None) -> None:
    assert domain_of(url) == domain


@pytest.mark.parametrize(
    ("url", "own", "expected"),
    [
        ("https://relay.example/npub/r.git", "relay.example", True),
        ("http://RELAY.example/npub/r.git", "relay.example", True),
        ("https://relay.example:443/npub/r.git", "relay.example", True),
        ("https://relay.example:8443/npub/r.git", "relay.example", False),
        ("http://relay.example:8080/npub/r.git", "relay.example:8080", True),
        ("http://relay.example/npub/r.git", "relay.example:8080", False),
        ("https://relay.example/npub/r.git", "relay.example:443", True),
        ("https://other.example/npub/r.git", "relay.example", False),
        ("https://relay.example.evil/npub/r.git", "relay.example", False),
        ("https://evil.example/relay.example/r.git", "relay.example", False),
    ],
)
def test_is_own_origin(url: str, own: str, expected: bool) -> None:
    assert is_own_origin(url, own) is expected


def test_concurrency_limit_and_release() -> None:
    throttle = DomainThrottle("a:443", max_concurrent=2, max_per_window=30, window_s=60)
    assert throttle.try_acquire(0) and throttle.try_acquire(0)
    assert not throttle.try_acquire(0)
    assert throttle.time_until_capacity(0) is None  # only a release can help
    throttle.release()
    assert throttle.time_until_capacity(0) == 0
    assert throttle.try_acquire(0)
    assert throttle.peak_in_flight == 2


def test_sliding_window_blocks_then_frees_when_oldest_leaves() -> None:
    throttle = DomainThrottle("a:443", max_concurrent=5, max_per_window=3, window_s=60)
    for t in (0, 1, 2):
        assert throttle.try_acquire(t)
        throttle.release()
    assert not throttle.try_acquire(3)
    assert throttle.window_count(3) == 3
    assert throttle.time_until_capacity(3) == 57
    assert not throttle.try_acquire(59.9)
    assert throttle.try_acquire(60)  # the request at t=0 left the window
    assert not throttle.try_acquire(60.5)
    assert throttle.time_until_capacity(60.5) == pytest.approx(0.5)


def test_cool_off_blocks_until_it_ends() -> None:
    throttle = DomainThrottle("a:443", max_concurrent=5, max_per_window=30, window_s=60)
    throttle.cool_off(until=100)
    assert not throttle.has_capacity(40)
    assert throttle.time_until_capacity(40) == 60
    throttle.cool_off(until=50)  # a shorter cool-off never shortens a running one
    assert not throttle.try_acquire(99)
    assert throttle.try_acquire(100)


def test_limits_never_exceeded_under_random_load() -> None:
    rng = random.Random(7)
    throttle = DomainThrottle("a:443", max_concurrent=3, max_per_window=10, window_s=5)
    now, starts = 0.0, []
    for _ in range(5000):
        now += rng.random() * 0.2
        if throttle.in_flight and rng.random() < 0.4:
            throttle.release()
        elif throttle.try_acquire(now):
            starts.append(now)
        assert throttle.in_flight <= 3
    assert len(starts) > 100  # the load really hit the limits
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s - start < 5) <= 10


def test_waiting_queue_round_robin() -> None:
    throttle = DomainThrottle("example.com:443", 5, 30, 60)
    for identifier in ("id1", "id2", "id3"):
        throttle.enqueue_identifier(identifier, set())
    order = []
    for _ in range(4):
        identifier = throttle.next_ready_identifier()
        assert identifier is not None
        order.append(identifier)
        throttle.mark_not_in_progress(identifier)
    assert order == ["id1", "id2", "id3", "id1"]


def test_waiting_queue_skips_in_progress() -> None:
    throttle = DomainThrottle("example.com:443", 5, 30, 60)
    throttle.enqueue_identifier("id1", set())
    throttle.enqueue_identifier("id2", set())
    assert throttle.next_ready_identifier() == "id1"
    assert throttle.next_ready_identifier() == "id2"
    assert throttle.next_ready_identifier() is None
    throttle.mark_not_in_progress("id1")
    assert throttle.next_ready_identifier() == "id1"


def test_waiting_queue_tried_urls_merge_and_removal() -> None:
    throttle = DomainThrottle("a:443", 5, 30, 60)
    throttle.enqueue_identifier("id1", {"https://a/1.git"})
    throttle.enqueue_identifier("id1", {"https://a/2.git"})  # queued again: merge, no duplicate
    assert throttle.waiting_count == 1
    throttle.mark_url_tried("id1", "https://a/3.git")
    tried = throttle.tried_urls("id1")
    assert tried == {"https://a/1.git", "https://a/2.git", "https://a/3.git"}
    tried.add("mutating the copy")
    assert "mutating the copy" not in throttle.tried_urls("id1")
    throttle.remove_identifier("id1")
    assert not throttle.has_waiting and throttle.next_ready_identifier() is None
    throttle.remove_identifier("id1")  # removing twice is harmless


def test_manager_notifies_when_progress_may_be_possible() -> None:
    calls: list[str] = []
    manager = ThrottleManager.from_settings(Settings(throttle_max_concurrent=1))
    manager.on_change = calls.append
    assert not manager.is_throttled("a:443", 0)  # unknown domain
    assert manager.try_acquire("a:443", 0)
    assert manager.is_throttled("a:443", 0) and calls == []
    manager.enqueue_identifier("a:443", "id1", set())
    manager.release("a:443")
    manager.mark_not_in_progress("a:443", "id1")
    assert calls == ["a:443", "a:443", "a:443"]


def test_manager_prunes_only_idle_domains() -> None:
    manager = ThrottleManager(max_concurrent=5, max_per_window=30, window_s=10)
    manager.try_acquire("busy:443", 0)
    manager.try_acquire("recent:443", 0)
    manager.release("recent:443")
    manager.enqueue_identifier("queued:443", "id1", set())
    manager.cool_off("cooling:443", until=100)
    manager.prune_idle(5)
    assert sorted(manager.domains()) == ["busy:443", "cooling:443", "queued:443", "recent:443"]
    manager.prune_idle(50)  # "recent" left its window
    assert sorted(manager.domains()) == ["busy:443", "cooling:443", "queued:443"]
    stats = manager.stats(50)
    assert stats["busy:443"].in_flight == 1 and stats["busy:443"].window_count == 0
    assert stats["queued:443"].waiting == 1 and stats["cooling:443"].cooling_off


def test_released_request_counts_in_the_window_from_its_end() -> None:
    throttle = DomainThrottle("a:443", max_concurrent=5, max_per_window=1, window_s=60)
    assert throttle.try_acquire(0.0)
    throttle.release(ended=5.0)  # the server saw it somewhere in [0, 5]
    assert not throttle.try_acquire(61.0)  # 60 s after its start is not enough
    assert throttle.try_acquire(65.0)  # 60 s after its end is
