"""Prometheus metrics for the relay, served at GET /metrics.

Each `Metrics` owns its own `CollectorRegistry` instead of the process-global one, so tests
(and anything else) can build several apps in one process without "duplicated timeseries"
errors. Label values are bounded on purpose: an attacker choosing event kinds or announcing
clone URLs on random hosts must not be able to grow the series count without limit, and no
label ever holds an IP address or a pubkey.

The package: `labels` (the bounded label values), `sink` (the interface the relay calls and
its no-op), `prometheus` (the live implementation); the names importers use are re-exported
here.
"""

from __future__ import annotations

from relay.metrics.labels import DEFAULT_MAX_DOMAINS, DEFAULT_MAX_PEERS, GitService, kind_label, reason_label
from relay.metrics.prometheus import Metrics
from relay.metrics.sink import DisabledMetrics, MetricsSink

__all__ = ["DisabledMetrics", "GitService", "Metrics", "MetricsSink", "build_metrics", "kind_label",
           "reason_label"]


def build_metrics(enabled: bool, max_domains: int = DEFAULT_MAX_DOMAINS,
                  max_peers: int = DEFAULT_MAX_PEERS) -> MetricsSink:
    """Pick the live or the no-op implementation from `settings.metrics_enabled`."""
    return Metrics(max_domains=max_domains, max_peers=max_peers) if enabled else DisabledMetrics()
