"""Prometheus metrics for the relay, served at GET /metrics.

Each `Metrics` owns its own `CollectorRegistry` instead of the process-global one, so tests
(and anything else) can build several apps in one process without "duplicated timeseries"
errors. Label values are bounded on purpose: an attacker choosing event kinds or announcing
clone URLs on random hosts must not be able to grow the series count without limit, and no
label ever holds an IP address or a pubkey."""

from __future__ import annotations

from typing import Literal, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from storage.nostr.nip34 import NIP34_KINDS

# NIP-34 kinds (and the NIP-22 comments / NIP-09 deletions that ride along with them) get
# their own label value; every other kind is counted as "other".
KNOWN_KINDS: frozenset[int] = NIP34_KINDS
OTHER = "other"

# NIP-01 machine-readable prefixes of OK/CLOSED messages.
REASON_PREFIXES: frozenset[str] = frozenset(
    {"duplicate", "pow", "blocked", "rate-limited", "invalid", "restricted", "mute", "error",
     "auth-required", "unsupported"}
)

PurgatoryOutcome = Literal["held", "released", "expired"]
GitService = Literal["upload-pack", "receive-pack"]
GIT_SERVICES: frozenset[str] = frozenset({"upload-pack", "receive-pack"})
PURGATORY_OUTCOMES: frozenset[str] = frozenset({"held", "released", "expired"})
INTEGRITY_KINDS: frozenset[str] = frozenset({"unsigned", "moved", "missing", "head"})
#: which budget a client ran out of, and what the relay did about it (relay/nostr/websocket.py)
BUDGETS: frozenset[str] = frozenset({"outbox", "outbox_total", "query"})
BUDGET_ACTIONS: frozenset[str] = frozenset({"req_closed", "count_closed", "subscription_closed",
                                            "connection_dropped"})

DEFAULT_MAX_DOMAINS = 200
DEFAULT_MAX_PEERS = 50
#: GRASP-02 peer relays (relay/peers/): what became of an event a peer sent, how history came
PEER_EVENT_OUTCOMES: frozenset[str] = frozenset({"accepted", "rejected", "invalid", "deferred"})
PEER_HISTORY_METHODS: frozenset[str] = frozenset({"negentropy", "req"})
PEER_STATES: tuple[str, ...] = ("ok", "backoff", "cooling", "parked")
DISABLED_BODY = b"# metrics disabled (GRASP_METRICS_ENABLED=false)\n"
DISABLED_CONTENT_TYPE = "text/plain; charset=utf-8"

REQ_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def kind_label(kind: int) -> str:
    return str(kind) if kind in KNOWN_KINDS else OTHER


def reason_label(reason: str) -> str:
    """Accept either a bare prefix ("blocked") or a whole OK message ("blocked: no repo")."""
    prefix = reason.split(":", 1)[0].strip().lower()
    return prefix if prefix in REASON_PREFIXES else OTHER


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


class Metrics:
    """The live metrics of one relay instance."""

    enabled = True

    def __init__(self, max_domains: int = DEFAULT_MAX_DOMAINS, process_metrics: bool = True,
                 max_peers: int = DEFAULT_MAX_PEERS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._max_domains = max_domains
        self._domains: set[str] = set()
        self._max_peers = max_peers
        self._peers: set[str] = set()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.connections = Gauge("grasp_connections", "Open websocket connections", registry=r)
        self.subscriptions = Gauge("grasp_subscriptions", "Open REQ subscriptions", registry=r)
        self.events_received = Counter(
            "grasp_events_received", "EVENT messages received", ["kind"], registry=r
        )
        self.events_accepted = Counter(
            "grasp_events_accepted", "Events answered OK true", ["kind"], registry=r
        )
        self.events_rejected = Counter(
            "grasp_events_rejected", "Events answered OK false", ["kind", "reason"], registry=r
        )
        self.purgatory_events = Counter(
            "grasp_purgatory_events", "Purgatory transitions", ["kind", "outcome"], registry=r
        )
        self.purgatory_pending = Gauge(
            "grasp_purgatory_pending", "Events currently held in purgatory", registry=r
        )
        self.sync_fetches = Counter(
            "grasp_sync_fetches", "Fetches from other servers", ["domain", "outcome"], registry=r
        )
        self.sync_fetch_seconds = Histogram(
            "grasp_sync_fetch_seconds", "Duration of one fetch", ["outcome"],
            buckets=FETCH_BUCKETS, registry=r,
        )
        self.throttle_waits = Counter(
            "grasp_throttle_waits", "Fetches that waited for a domain's throttle", ["domain"], registry=r
        )
        self.throttle_wait_seconds = Histogram(
            "grasp_throttle_wait_seconds", "Time spent waiting for a throttle slot",
            buckets=WAIT_BUCKETS, registry=r,
        )
        self.served_data_checked_repos = Counter(
            "grasp_served_data_repos_checked", "Served repos whose state's objects the hourly check "
            "looked up", registry=r)
        self.served_data_missing = Gauge(
            "grasp_served_data_repos_missing", "Served repos known to lack objects of their state", registry=r)
        self.served_data_recovered_objects = Counter(
            "grasp_served_data_objects_recovered", "State tip objects brought back into served repos",
            registry=r)
        self.git_operations = Counter(
            "grasp_git_operations", "git smart HTTP operations", ["service", "outcome"], registry=r
        )
        self.git_bytes = Counter(
            "grasp_git_bytes", "git smart HTTP body bytes", ["service", "direction"], registry=r
        )
        self.push_authorisations = Counter(
            "grasp_push_authorisations", "Push authorisation decisions", ["result"], registry=r
        )
        self.req_seconds = Histogram(
            "grasp_req_seconds", "REQ to EOSE latency", buckets=REQ_BUCKETS, registry=r
        )
        self.integrity_repairs = Counter(
            "grasp_integrity_repairs", "Refs and HEADs the integrity pass put back where the signed "
            "state says", ["kind"], registry=r
        )
        self.budgets_exceeded = Counter(
            "grasp_budget_exceeded", "Client requests cut short by a budget (outbox bytes per "
            "connection or in all, query time), by what was done", ["budget", "action"], registry=r
        )

        self.peer_states = Gauge(
            "grasp_peer_state", "Peer relays in each health state (relay/peers/health.py), by peer "
            "(1 for its current state)", ["peer", "state"], registry=r)
        self.peer_events = Counter(
            "grasp_peer_events", "Events peer relays sent, by what became of them", ["peer", "outcome"], registry=r)
        self.peer_bytes_in = Counter("grasp_peer_bytes", "Bytes of frames received from peer relays", ["peer"],
                                     registry=r)
        self.peer_last_success = Gauge(
            "grasp_peer_last_success", "Unix time a peer's sync last reached its live subscriptions", ["peer"],
            registry=r)
        self.peer_histories = Counter(
            "grasp_peer_history", "Filters whose history was fetched from a peer, by NIP-77 negentropy or REQ "
            "paging", ["peer", "method"], registry=r)

    # --- label bounding ---------------------------------------------------------------
    def _peer_label(self, url: str) -> str:
        """A peer relay's host[:port]: the first `max_peers` distinct ones get their own label,
        later ones are "other" (announcements choose the relays)."""
        from urllib.parse import urlsplit

        try:
            host = (urlsplit(url).netloc or url).lower()[:200]
        except ValueError:
            return OTHER
        if host in self._peers:
            return host
        if len(self._peers) < self._max_peers and host:
            self._peers.add(host)
            return host
        return OTHER

    def domain_label(self, domain: str) -> str:
        """The first `max_domains` distinct domains get their own label; later ones are
        folded into "other", since clone URLs are chosen by whoever announces a repo."""
        domain = domain.strip().lower()
        if domain in self._domains:
            return domain
        if len(self._domains) < self._max_domains and domain:
            self._domains.add(domain)
            return domain
        return OTHER

    # --- websocket --------------------------------------------------------------------
    def connection_opened(self) -> None:
        self.connections.inc()

    def connection_closed(self) -> None:
        self.connections.dec()

    def subscription_opened(self) -> None:
        self.subscriptions.inc()

    def subscriptions_closed(self, count: int = 1) -> None:
        """`count` lets a closing connection drop all its subscriptions at once."""
        if count:
            self.subscriptions.dec(count)

    def event_received(self, kind: int) -> None:
        self.events_received.labels(kind_label(kind)).inc()

    def event_accepted(self, kind: int) -> None:
        self.events_accepted.labels(kind_label(kind)).inc()

    def event_rejected(self, kind: int, reason: str) -> None:
        self.events_rejected.labels(kind_label(kind), reason_label(reason)).inc()

    def req_served(self, seconds: float) -> None:
        self.req_seconds.observe(seconds)

    # --- purgatory and sync -------------------------------------------------------------
    def purgatory_event(self, kind: int, outcome: PurgatoryOutcome) -> None:
        if outcome not in PURGATORY_OUTCOMES:
            raise ValueError(f"unknown purgatory outcome {outcome!r}")
        self.purgatory_events.labels(kind_label(kind), outcome).inc()

    def set_purgatory_pending(self, count: int) -> None:
        self.purgatory_pending.set(count)

    def sync_fetch(self, domain: str, outcome: str, seconds: float) -> None:
        """`outcome` is a short fixed word chosen by the caller (ok, timeout, error, ...)."""
        self.sync_fetches.labels(self.domain_label(domain), outcome).inc()
        self.sync_fetch_seconds.labels(outcome).observe(seconds)

    def throttle_wait(self, domain: str, seconds: float) -> None:
        self.throttle_waits.labels(self.domain_label(domain)).inc()
        self.throttle_wait_seconds.observe(seconds)

    def served_data_checked(self, repos: int) -> None:
        self.served_data_checked_repos.inc(repos)

    def set_served_data_missing(self, repos: int) -> None:
        self.served_data_missing.set(repos)

    def served_data_recovered(self, objects: int) -> None:
        self.served_data_recovered_objects.inc(objects)

    # --- git --------------------------------------------------------------------------------
    def git_operation(self, service: GitService, outcome: str, bytes_in: int = 0, bytes_out: int = 0) -> None:
        if service not in GIT_SERVICES:
            raise ValueError(f"unknown git service {service!r}")
        self.git_operations.labels(service, outcome).inc()
        if bytes_in:
            self.git_bytes.labels(service, "in").inc(bytes_in)
        if bytes_out:
            self.git_bytes.labels(service, "out").inc(bytes_out)

    def push_authorisation(self, accepted: bool) -> None:
        self.push_authorisations.labels("accepted" if accepted else "refused").inc()

    def integrity_repair(self, kind: str) -> None:
        """`kind`: unsigned, moved, missing or head (purgatory.integrity.compare.DIFF_KINDS)."""
        self.integrity_repairs.labels(kind if kind in INTEGRITY_KINDS else OTHER).inc()

    def budget_exceeded(self, budget: str, action: str) -> None:
        self.budgets_exceeded.labels(budget if budget in BUDGETS else OTHER,
                                     action if action in BUDGET_ACTIONS else OTHER).inc()

    # --- peer relays ------------------------------------------------------------------------
    def peer_state(self, peer: str, state: str) -> None:
        label = self._peer_label(peer)
        if label == OTHER:  # many peers share it: count them, not one peer's state
            return
        for name in PEER_STATES:
            self.peer_states.labels(label, name).set(1 if name == state else 0)

    def peer_event(self, peer: str, outcome: str) -> None:
        self.peer_events.labels(self._peer_label(peer), outcome if outcome in PEER_EVENT_OUTCOMES else OTHER).inc()

    def peer_bytes(self, peer: str, count: int) -> None:
        self.peer_bytes_in.labels(self._peer_label(peer)).inc(count)

    def peer_success(self, peer: str, when: float) -> None:
        self.peer_last_success.labels(self._peer_label(peer)).set(when)

    def peer_history(self, peer: str, method: str) -> None:
        self.peer_histories.labels(self._peer_label(peer), method if method in PEER_HISTORY_METHODS else OTHER).inc()

    # --- exposition -----------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_metrics(enabled: bool, max_domains: int = DEFAULT_MAX_DOMAINS,
                  max_peers: int = DEFAULT_MAX_PEERS) -> MetricsSink:
    """Pick the live or the no-op implementation from `settings.metrics_enabled`."""
    return Metrics(max_domains=max_domains, max_peers=max_peers) if enabled else DisabledMetrics()
