"""Per-domain rate limits and the per-domain waiting queues of identifiers.

A "domain" is the `host:port` of a clone URL, because that is the unit a remote server limits us
by. Each `DomainThrottle` holds the in-flight count, the start times of recent requests (sliding
window) and the identifiers waiting for capacity on that domain, each with the URLs of this
domain it has already tried. Time is always passed in; nothing here sleeps or does I/O, so the
limits are checked and taken in one synchronous step and can never be overshot by interleaving
coroutines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config.settings import Settings

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "git": 9418, "ssh": 22}


def _host_port(url: str) -> tuple[str, int | None, str] | None:
    """(lower-case host, explicit port or None, scheme) of a URL, None when it has no host."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or not parts.scheme:
        return None
    return host.lower(), port, parts.scheme.lower()


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def domain_of(url: str) -> str | None:
    """`host:port` of a URL (port from the scheme when absent); None if the URL is unusable."""
    parsed = _host_port(url)
    if parsed is None:
        return None
    host, port, scheme = parsed
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    return _join(host, port)


def is_own_origin(url: str, own_domain: str) -> bool:
    """Whether `url` points at this service. `own_domain` is the scheme-less `host[:port]` of
    settings.domain; without a port it matches the host on whatever default port the URL's
    scheme implies, since we may be reached over http or https."""
    parsed = _host_port(url)
    if parsed is None or not own_domain:
        return False
    host, port, scheme = parsed
    own = urlsplit("//" + own_domain.strip().lower())
    try:
        own_host, own_port = own.hostname, own.port
    except ValueError:
        return False
    if host != own_host:
        return False
    default = DEFAULT_PORTS.get(scheme)
    if own_port is None:
        return port is None or port == default
    return (port if port is not None else default) == own_port


@dataclass
class _Waiting:
    tried_urls: set[str] = field(default_factory=set)
    in_progress: bool = False
    since: float = 0.0  # when it was queued here, for the throttle-wait metric


class DomainThrottle:
    def __init__(
        self, domain: str, max_concurrent: int, max_per_window: int, window_s: float
    ) -> None:
        self.domain = domain
        self.max_concurrent = max_concurrent
        self.max_per_window = max_per_window
        self.window_s = window_s
        self.in_flight = 0
        self.peak_in_flight = 0
        self.cooloff_until = 0.0
        self._request_times: deque[float] = deque()
        self._open_starts: deque[float] = deque()
        self._queue: deque[str] = deque()
        self._waiting: dict[str, _Waiting] = {}
        # one-object fetches a refused multi-object fetch still owes, by (identifier, url):
        # kept here so that a domain out of slots resumes them instead of starting over
        self._splits: dict[tuple[str, str], list[frozenset[str]]] = {}

    # --- rate limiting ----------------------------------------------------------------

    def _prune(self, now: float) -> None:
        times = self._request_times
        while times and now - times[0] >= self.window_s:
            times.popleft()

    def window_count(self, now: float) -> int:
        self._prune(now)
        return len(self._request_times)

    def cooling_off(self, now: float) -> bool:
        return now < self.cooloff_until

    def has_capacity(self, now: float) -> bool:
        return (
            self.in_flight < self.max_concurrent
            and self.window_count(now) < self.max_per_window
            and not self.cooling_off(now)
        )

    def try_acquire(self, now: float) -> bool:
        """Check and take a slot in one step; the only way a request may start."""
        if not self.has_capacity(now):
            return False
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._request_times.append(now)
        self._open_starts.append(now)
        return True

    def release(self, ended: float | None = None) -> None:
        """Free a slot. With `ended`, the request counts in the window from when it ended, not
        when its slot was taken: the remote server sees a request a little after we start it,
        so dating it by its end keeps "at most N per window" true on the server's clock too."""
        self.in_flight = max(0, self.in_flight - 1)
        if ended is None or not self._open_starts:
            if self._open_starts:
                self._open_starts.popleft()
            return
        started = self._open_starts.popleft()
        try:
            self._request_times.remove(started)
        except ValueError:  # already left the window
            return
        self._request_times.append(ended)  # every stored time is <= now, so order holds

    def cool_off(self, until: float) -> None:
        self.cooloff_until = max(self.cooloff_until, until)

    def time_until_capacity(self, now: float) -> float | None:
        """0 when a request may start now; seconds until a timer can free capacity (window or
        cool-off); None when only a release can help, which wakes the loop by itself."""
        if self.in_flight >= self.max_concurrent:
            return None
        waits = [0.0]
        if self.window_count(now) >= self.max_per_window:
            waits.append(self._request_times[0] + self.window_s - now)
        if self.cooling_off(now):
            waits.append(self.cooloff_until - now)
        return max(waits)

    def idle(self, now: float) -> bool:
        return (
            self.in_flight == 0
            and not self._waiting
            and self.window_count(now) == 0
            and not self.cooling_off(now)
        )

    # --- waiting queue (round-robin) ----------------------------------------------------

    def is_waiting(self, identifier: str) -> bool:
        return identifier in self._waiting

    @property
    def has_waiting(self) -> bool:
        return bool(self._waiting)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    def enqueue_identifier(self, identifier: str, tried_urls: Iterable[str], now: float = 0.0) -> None:
        """Queue an identifier (or merge what it has tried, if already queued)."""
        state = self._waiting.get(identifier)
        if state is None:
            self._waiting[identifier] = _Waiting(set(tried_urls), since=now)
            self._queue.append(identifier)
        else:
            state.tried_urls.update(tried_urls)

    def queued_since(self, identifier: str) -> float | None:
        state = self._waiting.get(identifier)
        return state.since if state is not None else None

    def next_ready_identifier(self) -> str | None:
        """Next queued identifier not already being fetched, in round-robin order; it is marked
        in progress so one identifier never holds two slots of the same domain."""
        for _ in range(len(self._queue)):
            identifier = self._queue.popleft()
            self._queue.append(identifier)
            state = self._waiting[identifier]
            if not state.in_progress:
                state.in_progress = True
                return identifier
        return None

    def tried_urls(self, identifier: str) -> set[str]:
        state = self._waiting.get(identifier)
        return set(state.tried_urls) if state else set()

    def mark_url_tried(self, identifier: str, url: str) -> None:
        state = self._waiting.get(identifier)
        if state is not None:
            state.tried_urls.add(url)

    def mark_not_in_progress(self, identifier: str) -> None:
        state = self._waiting.get(identifier)
        if state is not None:
            state.in_progress = False

    def remove_identifier(self, identifier: str) -> None:
        if self._waiting.pop(identifier, None) is not None:
            self._queue.remove(identifier)
        for key in [k for k in self._splits if k[0] == identifier]:
            del self._splits[key]

    # --- one-object fetches left over ---------------------------------------------------

    def keep_split(self, identifier: str, url: str, parts: list[frozenset[str]]) -> None:
        self._splits[(identifier, url)] = list(parts)

    def take_split(self, identifier: str, url: str) -> list[frozenset[str]] | None:
        return self._splits.pop((identifier, url), None)

    def has_split(self, identifier: str, url: str) -> bool:
        return (identifier, url) in self._splits


@dataclass(frozen=True)
class DomainStats:
    in_flight: int
    window_count: int
    peak_in_flight: int
    waiting: int
    cooling_off: bool


class ThrottleManager:
    """All domain throttles. `on_change(domain)` is called whenever a domain may be able to make
    progress (slot freed, identifier queued or freed); the sync service uses it to wake or start
    that domain's loop, so nothing has to poll."""

    def __init__(
        self,
        max_concurrent: int,
        max_per_window: int,
        window_s: float,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_per_window = max_per_window
        self.window_s = window_s
        self.on_change = on_change
        self._throttles: dict[str, DomainThrottle] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottleManager:
        return cls(
            settings.throttle_max_concurrent,
            settings.throttle_max_per_minute,
            settings.throttle_window_s,
        )

    def _notify(self, domain: str) -> None:
        if self.on_change is not None:
            self.on_change(domain)

    def get(self, domain: str) -> DomainThrottle | None:
        return self._throttles.get(domain)

    def get_or_create(self, domain: str) -> DomainThrottle:
        throttle = self._throttles.get(domain)
        if throttle is None:
            throttle = DomainThrottle(
                domain, self.max_concurrent, self.max_per_window, self.window_s
            )
            self._throttles[domain] = throttle
        return throttle

    def domains(self) -> list[str]:
        return list(self._throttles)

    def is_throttled(self, domain: str, now: float) -> bool:
        throttle = self._throttles.get(domain)
        return throttle is not None and not throttle.has_capacity(now)

    def try_acquire(self, domain: str, now: float) -> bool:
        return self.get_or_create(domain).try_acquire(now)

    def release(self, domain: str, ended: float | None = None) -> None:
        throttle = self._throttles.get(domain)
        if throttle is not None:
            throttle.release(ended)
            self._notify(domain)

    def cool_off(self, domain: str, until: float) -> None:
        self.get_or_create(domain).cool_off(until)

    def holds(self, domain: str, identifier: str) -> bool:
        """Is the identifier waiting in this domain's queue (so that domain's loop owns it)?"""
        throttle = self._throttles.get(domain)
        return throttle is not None and throttle.is_waiting(identifier)

    def enqueue_identifier(self, domain: str, identifier: str, tried_urls: Iterable[str],
                           now: float = 0.0) -> None:
        self.get_or_create(domain).enqueue_identifier(identifier, tried_urls, now)
        self._notify(domain)

    def keep_split(self, domain: str, identifier: str, url: str, parts: list[frozenset[str]]) -> None:
        """Remember the one-object fetches of `url` the domain had no slot for."""
        self.get_or_create(domain).keep_split(identifier, url, parts)

    def take_split(self, domain: str, identifier: str, url: str) -> list[frozenset[str]] | None:
        """The one-object fetches of `url` still owed (forgotten once taken), or None."""
        throttle = self._throttles.get(domain)
        return None if throttle is None else throttle.take_split(identifier, url)

    def has_split(self, domain: str, identifier: str, url: str) -> bool:
        """Whether `url` still owes one-object fetches, so it does not count as tried yet."""
        throttle = self._throttles.get(domain)
        return throttle is not None and throttle.has_split(identifier, url)

    def mark_not_in_progress(self, domain: str, identifier: str) -> None:
        throttle = self._throttles.get(domain)
        if throttle is not None:
            throttle.mark_not_in_progress(identifier)
            self._notify(domain)

    def prune_idle(self, now: float) -> None:
        """Forget domains with nothing in flight, queued or remembered, so a stream of
        announcements naming many hosts cannot grow memory without bound."""
        for domain in [d for d, t in self._throttles.items() if t.idle(now)]:
            del self._throttles[domain]

    def stats(self, now: float) -> dict[str, DomainStats]:
        return {
            domain: DomainStats(
                t.in_flight, t.window_count(now), t.peak_in_flight, t.waiting_count,
                t.cooling_off(now),
            )
            for domain, t in self._throttles.items()
        }
