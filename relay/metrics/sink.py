"""What the rest of the relay calls on its metrics: the interface, and the no-op kept when
`GRASP_METRICS_ENABLED=false` so callers never test for it."""

from __future__ import annotations

from typing import Protocol

from relay.metrics.labels import DISABLED_BODY, DISABLED_CONTENT_TYPE, GitService, PurgatoryOutcome


class MetricsSink(Protocol):
    """What the rest of the relay calls; satisfied by `Metrics` and `DisabledMetrics`."""

    enabled: bool

    def connection_opened(self) -> None: ...
    def connection_closed(self) -> None: ...
    def subscription_opened(self) -> None: ...
    def subscriptions_closed(self, count: int = 1) -> None: ...
    def event_received(self, kind: int) -> None: ...
    def event_accepted(self, kind: int) -> None: ...
    def event_rejected(self, kind: int, reason: str) -> None: ...
    def purgatory_event(self, kind: int, outcome: PurgatoryOutcome) -> None: ...
    def set_purgatory_pending(self, count: int) -> None: ...
    def sync_fetch(self, domain: str, outcome: str, seconds: float) -> None: ...
    def throttle_wait(self, domain: str, seconds: float) -> None: ...
    def served_data_checked(self, repos: int) -> None: ...
    def set_served_data_missing(self, repos: int) -> None: ...
    def served_data_recovered(self, objects: int) -> None: ...
    def git_operation(self, service: GitService, outcome: str, bytes_in: int = 0, bytes_out: int = 0) -> None: ...
    def push_authorisation(self, accepted: bool) -> None: ...
    def req_served(self, seconds: float) -> None: ...
    def integrity_repair(self, kind: str) -> None: ...
    def budget_exceeded(self, budget: str, action: str) -> None: ...
    def peer_state(self, peer: str, state: str) -> None: ...
    def peer_event(self, peer: str, outcome: str) -> None: ...
    def peer_bytes(self, peer: str, count: int) -> None: ...
    def peer_success(self, peer: str, when: float) -> None: ...
    def peer_history(self, peer: str, method: str) -> None: ...
    def render(self) -> tuple[bytes, str]: ...


class DisabledMetrics:
    """Same interface, does nothing: used when GRASP_METRICS_ENABLED=false so call sites
    need no `if metrics:` checks."""

    enabled = False

    def connection_opened(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def subscription_opened(self) -> None:
        pass

    def subscriptions_closed(self, count: int = 1) -> None:
        pass

    def event_received(self, kind: int) -> None:
        pass

    def event_accepted(self, kind: int) -> None:
        pass

    def event_rejected(self, kind: int, reason: str) -> None:
        pass

    def purgatory_event(self, kind: int, outcome: PurgatoryOutcome) -> None:
        pass

    def set_purgatory_pending(self, count: int) -> None:
        pass

    def sync_fetch(self, domain: str, outcome: str, seconds: float) -> None:
        pass

    def throttle_wait(self, domain: str, seconds: float) -> None:
        pass

    def served_data_checked(self, repos: int) -> None:
        pass

    def set_served_data_missing(self, repos: int) -> None:
        pass

    def served_data_recovered(self, objects: int) -> None:
        pass

    def git_operation(self, service: GitService, outcome: str, bytes_in: int = 0, bytes_out: int = 0) -> None:
        pass

    def push_authorisation(self, accepted: bool) -> None:
        pass

    def req_served(self, seconds: float) -> None:
        pass

    def integrity_repair(self, kind: str) -> None:
        pass

    def budget_exceeded(self, budget: str, action: str) -> None:
        pass

    def peer_state(self, peer: str, state: str) -> None:
        pass

    def peer_event(self, peer: str, outcome: str) -> None:
        pass

    def peer_bytes(self, peer: str, count: int) -> None:
        pass

    def peer_success(self, peer: str, when: float) -> None:
        pass

    def peer_history(self, peer: str, method: str) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        return DISABLED_BODY, DISABLED_CONTENT_TYPE
