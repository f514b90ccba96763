"""The Prometheus implementation of the metrics interface, served at GET /metrics.

Each `Metrics` owns its own `CollectorRegistry` instead of the process-global one, so tests
(and anything else) can build several apps in one process without "duplicated timeseries"
errors."""

from __future__ import annotations

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

from relay.metrics.labels import (
    BUDGET_ACTIONS,
    BUDGETS,
    DEFAULT_MAX_DOMAINS,
    DEFAULT_MAX_PEERS,
    FETCH_BUCKETS,
    GIT_SERVICES,
    INTEGRITY_KINDS,
    OTHER,
    PEER_EVENT_OUTCOMES,
    PEER_HISTORY_METHODS,
    PEER_STATES,
    PURGATORY_OUTCOMES,
    REQ_BUCKETS,
    WAIT_BUCKETS,
    GitService,
    PurgatoryOutcome,
    kind_label,
    reason_label,
)


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
