"""Abuse limits as plain values: sliding-window counters keyed by connection or IP, the
connection tracker, and the client address behind trusted proxies. No I/O, so every limit
is unit-tested with a fake clock; the websocket and git layers only ask and answer."""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

#: The client address of the HTTP request being handled, for limits applied deep in the git
#: path (the push authoriser sees repo and ref updates, not the connection).
current_client: ContextVar[str] = ContextVar("current_client", default="")


@dataclass
class Window:
    """At most `limit` hits in any `period` seconds."""

    limit: int
    period: float
    hits: deque[float] = field(default_factory=deque)

    def count_or_wait(self, now: float) -> float:
        """Count a hit if allowed and return 0.0; otherwise count nothing and return the
        seconds until one is: a truthy result is a refusal."""
        while self.hits and now - self.hits[0] >= self.period:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return self.period - (now - self.hits[0])
        self.hits.append(now)
        return 0.0


@dataclass
class KeyedWindows:
    """One Window per key (an IP, a connection), forgetting idle keys so memory stays bounded."""

    limit: int
    period: float
    clock: Callable[[], float] = time.monotonic
    _windows: dict[Hashable, Window] = field(default_factory=dict)
    _last_prune: float = 0.0

    def count_or_wait(self, key: Hashable) -> float:
        """`Window.count_or_wait` for `key`'s window: 0.0 when counted, else the wait."""
        now = self.clock()
        if now - self._last_prune > self.period:
            self._prune(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = Window(self.limit, self.period)
        return window.count_or_wait(now)

    def _prune(self, now: float) -> None:
        self._last_prune = now
        idle = [k for k, w in self._windows.items() if not w.hits or now - w.hits[-1] >= self.period]
        for key in idle:
            del self._windows[key]


@dataclass
class ConnectionTracker:
    """Open websocket connections, in total and per IP."""

    max_total: int
    max_per_ip: int
    total: int = 0
    per_ip: dict[str, int] = field(default_factory=dict)

    def open(self, ip: str) -> str | None:
        """Count a new connection, or return why it is refused."""
        if self.total >= self.max_total:
            return f"rate-limited: the relay is at its limit of {self.max_total} connections"
        if self.per_ip.get(ip, 0) >= self.max_per_ip:
            return f"rate-limited: at most {self.max_per_ip} connections per address"
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def close(self, ip: str) -> None:
        self.total -= 1
        left = self.per_ip.get(ip, 1) - 1
        if left:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)


def parse_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def _trusted(address: str, networks: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: str, trusted: list[Any]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
    left were written by the client and can be forged)."""
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
