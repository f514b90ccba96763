"""Unit tests of the abuse-limit values, with a fake clock."""

from __future__ import annotations

from relay.ratelimit import ConnectionTracker, KeyedWindows, Window, client_address, parse_networks


def test_window_allows_limit_then_says_how_long_to_wait() -> None:
    window = Window(limit=2, period=60)
    assert window.count_or_wait(0) == 0 and window.count_or_wait(1) == 0
    assert window.count_or_wait(2) == 58
    assert window.count_or_wait(60) == 0  # the first hit left the window


def test_keyed_windows_are_independent_and_pruned() -> None:
    now = [0.0]
    windows = KeyedWindows(1, 10, clock=lambda: now[0])
    assert windows.count_or_wait("a") == 0 and windows.count_or_wait("b") == 0
    assert windows.count_or_wait("a") > 0
    now[0] = 25
    assert windows.count_or_wait("c") == 0
    assert set(windows._windows) == {"c"}


def test_connection_tracker_limits_total_and_per_ip() -> None:
    tracker = ConnectionTracker(max_total=3, max_per_ip=2)
    assert tracker.open("1.1.1.1") is None and tracker.open("1.1.1.1") is None
    assert "per address" in tracker.open("1.1.1.1")
    assert tracker.open("2.2.2.2") is None
    assert "limit of 3" in tracker.open("3.3.3.3")
    tracker.close("1.1.1.1")
    assert tracker.open("3.3.3.3") is None and tracker.per_ip == {"1.1.1.1": 1, "2.2.2.2": 1, "3.3.3.3": 1}


def test_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_address("127.0.0.1", "6.6.6.6, 1.2.3.4, 10.1.1.1", trusted) == "1.2.3.4"
    assert client_address("127.0.0.1", "", trusted) == "127.0.0.1"
