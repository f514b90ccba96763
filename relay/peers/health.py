"""The health of one peer relay, as one table (like purgatory/lifecycle.py): what state a
peer is in, what moves it, and how long it is left alone before the next connection.

Why four states: a peer that merely dropped a connection should be tried again soon and then
less and less often (`backoff`, exponential with jitter so that many relays restarting at
once do not all come back in step); one that told us we were too fast (`rate-limited:` in a
NOTICE or CLOSED) gets a fixed cool-off, since trying sooner only earns another refusal; and
one whose name does not resolve, whose TLS fails or that does not speak the protocol will not
heal in seconds, so it is `parked` for hours instead of being hammered. A session that reached
its live subscriptions makes the peer `ok` again and resets the backoff.

Pure: `PeerHealth.on(trigger, now, jitter)` returns the new state; the caller sleeps until
`retry_at`. Read a row as: in `state`, `trigger` moves the peer to `next_state`."""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"
BACKOFF = "backoff"
COOLING = "cooling"
PARKED = "parked"
STATES = (OK, BACKOFF, COOLING, PARKED)

SYNCED = "synced"              # history done, live subscriptions open
FAILED = "failed"              # the connection dropped, timed out or was refused
RATE_LIMITED = "rate_limited"  # a NOTICE or CLOSED starting "rate-limited:"
UNREACHABLE = "unreachable"    # DNS, TLS, a refused outbound check, not a websocket relay
TRIGGERS = (SYNCED, FAILED, RATE_LIMITED, UNREACHABLE)


@dataclass(frozen=True, slots=True)
class Transition:
    state: str
    trigger: str
    next_state: str


TABLE: tuple[Transition, ...] = tuple(
    Transition(state, trigger, nxt)
    for state in STATES
    for trigger, nxt in ((SYNCED, OK), (FAILED, BACKOFF), (RATE_LIMITED, COOLING), (UNREACHABLE, PARKED))
)

_NEXT: dict[tuple[str, str], str] = {(t.state, t.trigger): t.next_state for t in TABLE}


@dataclass(frozen=True, slots=True)
class HealthLimits:
    backoff_base_s: float
    backoff_max_s: float
    cooloff_s: float
    park_s: float

    @classmethod
    def from_settings(cls, settings: object) -> HealthLimits:
        return cls(getattr(settings, "peer_backoff_s"), getattr(settings, "peer_backoff_max_s"),
                   getattr(settings, "peer_cooloff_s"), getattr(settings, "peer_park_s"))


@dataclass
class PeerHealth:
    """One peer's state, its consecutive failures and when it may be tried again."""

    limits: HealthLimits
    state: str = OK
    failures: int = 0
    retry_at: float = 0.0
    last_success: float | None = None

    def on(self, trigger: str, now: float, jitter: float) -> str:
        """Apply `trigger` at `now`; `jitter` in [0, 1) spreads the backoff (a random
        fraction of it, drawn by the caller so that this stays deterministic to test)."""
        nxt = _NEXT.get((self.state, trigger))
        if nxt is None:
            raise ValueError(f"{trigger!r} does not apply to a {self.state!r} peer")
        self.state = nxt
        limits = self.limits
        if nxt == OK:
            self.failures = 0
            self.retry_at = now
            self.last_success = now
        elif nxt == BACKOFF:
            self.failures += 1
            delay = min(limits.backoff_max_s, limits.backoff_base_s * 2 ** (self.failures - 1))
            self.retry_at = now + delay * (0.5 + jitter / 2)  # "equal jitter": half fixed, half random
        elif nxt == COOLING:
            self.retry_at = now + limits.cooloff_s
        else:
            self.failures += 1
            self.retry_at = now + limits.park_s
        return nxt

    def wait(self, now: float) -> float:
        """Seconds until the next connection may be made."""
        return max(0.0, self.retry_at - now)
