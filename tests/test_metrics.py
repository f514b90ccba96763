"""relay.metrics: values land in the right series, labels stay bounded and anonymous, and
the disabled variant offers the same interface."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.metrics import DisabledMetrics, Metrics, MetricsSink, build_metrics, kind_label, reason_label


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.event_received(1621)
    a.event_received(1621)
    b.event_received(1621)
    assert value(a, "grasp_events_received_total", kind="1621") == 2
    assert value(b, "grasp_events_received_total", kind="1621") == 1


def test_kind_labels_are_bounded_to_known_nip34_kinds() -> None:
    m = Metrics(process_metrics=False)
    for kind in (30617, 1617, 1, 4, 9999, 31234):
        m.event_accepted(kind)
    assert value(m, "grasp_events_accepted_total", kind="30617") == 1
    assert value(m, "grasp_events_accepted_total", kind="1617") == 1
    assert value(m, "grasp_events_accepted_total", kind="other") == 4
    kinds = {dict(labels).get("kind") for (name, labels) in samples(m) if name == "grasp_events_accepted_total"}
    assert kinds == {"30617", "1617", "other"}
    assert kind_label(1621) == "1621" and kind_label(7) == "other"


def test_rejections_are_labelled_by_reason_prefix_only() -> None:
    m = Metrics(process_metrics=False)
    m.event_rejected(1621, "blocked: no accepted repository for 30617:abcd:repo")
    m.event_rejected(1621, "blocked")
    m.event_rejected(1, "invalid: bad signature")
    m.event_rejected(1, "something nobody defined: 1.2.3.4")
    assert value(m, "grasp_events_rejected_total", kind="1621", reason="blocked") == 2
    assert value(m, "grasp_events_rejected_total", kind="other", reason="invalid") == 1
    assert value(m, "grasp_events_rejected_total", kind="other", reason="other") == 1
    body = m.render()[0].decode()
    assert "1.2.3.4" not in body and "abcd" not in body
    assert reason_label("rate-limited: slow down") == "rate-limited"


def test_connection_and_subscription_gauges_go_up_and_down() -> None:
    m = Metrics(process_metrics=False)
    m.connection_opened()
    m.connection_opened()
    m.connection_closed()
    for _ in range(5):
        m.subscription_opened()
    m.subscriptions_closed(3)
    m.subscriptions_closed()
    assert value(m, "grasp_connections") == 1
    assert value(m, "grasp_subscriptions") == 1


def test_purgatory_outcomes() -> None:
    m = Metrics(process_metrics=False)
    m.purgatory_event(30617, "held")
    m.purgatory_event(30617, "released")
    m.purgatory_event(1618, "expired")
    m.set_purgatory_pending(7)
    assert value(m, "grasp_purgatory_events_total", kind="30617", outcome="held") == 1
    assert value(m, "grasp_purgatory_events_total", kind="30617", outcome="released") == 1
    assert value(m, "grasp_purgatory_events_total", kind="1618", outcome="expired") == 1
    assert value(m, "grasp_purgatory_pending") == 7
    with pytest.raises(ValueError):
        m.purgatory_event(30617, "lost")  # type: ignore[arg-type]


def test_sync_fetch_domains_fold_into_other_past_the_cap() -> None:
    m = Metrics(max_domains=2, process_metrics=False)
    m.sync_fetch("a.example", "ok", 0.3)
    m.sync_fetch("B.example", "timeout", 120.0)
    m.sync_fetch("c.example", "ok", 1.0)
    m.sync_fetch("a.example", "ok", 0.2)
    assert value(m, "grasp_sync_fetches_total", domain="a.example", outcome="ok") == 2
    assert value(m, "grasp_sync_fetches_total", domain="b.example", outcome="timeout") == 1
    assert value(m, "grasp_sync_fetches_total", domain="other", outcome="ok") == 1
    assert value(m, "grasp_sync_fetch_seconds_count", outcome="ok") == 3
    assert value(m, "grasp_sync_fetch_seconds_sum", outcome="timeout") == 120.0
    m.throttle_wait("a.example", 2.5)
    assert value(m, "grasp_throttle_waits_total", domain="a.example") == 1
    assert value(m, "grasp_throttle_wait_seconds_sum") == 2.5


def test_git_operations_bytes_and_push_authorisation() -> None:
    m = Metrics(process_metrics=False)
    m.git_operation("upload-pack", "ok", bytes_in=100, bytes_out=5000)
    m.git_operation("receive-pack", "refused", bytes_in=10)
    m.push_authorisation(True)
    m.push_authorisation(False)
    m.push_authorisation(False)
    assert value(m, "grasp_git_operations_total", service="upload-pack", outcome="ok") == 1
    assert value(m, "grasp_git_bytes_total", service="upload-pack", direction="out") == 5000
    assert value(m, "grasp_git_bytes_total", service="receive-pack", direction="in") == 10
    assert value(m, "grasp_push_authorisations_total", result="refused") == 2
    assert value(m, "grasp_push_authorisations_total", result="accepted") == 1
    with pytest.raises(ValueError):
        m.git_operation("upload-archive", "ok")  # type: ignore[arg-type]


def test_req_latency_histogram() -> None:
    m = Metrics(process_metrics=False)
    m.req_served(0.004)
    m.req_served(0.2)
    assert value(m, "grasp_req_seconds_count") == 2
    assert value(m, "grasp_req_seconds_bucket", le="0.005") == 1
    assert value(m, "grasp_req_seconds_bucket", le="+Inf") == 2


def test_process_metrics_are_in_the_dedicated_registry() -> None:
    names = {name for name, _ in samples(Metrics())}
    assert "python_info" in names


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_") and name != "domain_label"
    }


def test_disabled_variant_has_the_same_interface_and_does_nothing() -> None:
    assert public_methods(DisabledMetrics) == public_methods(Metrics)
    protocol_methods = {n for n in vars(MetricsSink) if not n.startswith("_") and callable(getattr(MetricsSink, n))}
    assert protocol_methods == set(public_methods(Metrics))
    off = build_metrics(False)
    assert isinstance(off, DisabledMetrics) and off.enabled is False
    off.event_rejected(1, "blocked: x")
    off.git_operation("upload-pack", "ok", 1, 2)
    body, content_type = off.render()
    assert b"disabled" in body and content_type.startswith("text/plain")
    on = build_metrics(True)
    assert isinstance(on, Metrics) and on.enabled is True
