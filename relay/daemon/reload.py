"""What a SIGHUP reload may change in a running relay, and what it says about it.

A setting is reloadable only if the running relay really uses the new value afterwards:
`Live.apply` rebuilds what was derived from it (the policy's curation lists and archive modes, the trusted
proxy networks, the connection limits, the NIP-01 limits, the log set-up) or the value is
read afresh on every request (NIP-11 fields). Everything else was captured by a component
at start (the listening socket, the store, the sync and peer services, git's limits), so a
change to it is reported as needing a restart instead of being half applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import Settings
from relay import ratelimit
from relay.nostr import policy
from relay.nostr.protocol import Limits

#: the settings a reload applies; new websocket connections get the new NIP-01 limits and
#: per-connection rates, open ones keep those they started with
RELOADABLE: frozenset[str] = frozenset({
    "log_level",
    "archive_whitelist", "archive_all", "archive_grasp_services", "archive_read_only", "pubkey_blacklist",
    "repository_whitelist", "repository_blacklist",
    "relay_name", "relay_description", "relay_contact", "owner_npub",
    "trusted_proxies",
    "max_connections", "max_connections_per_ip",
    "events_per_minute_per_conn", "events_per_minute_per_ip", "reqs_per_minute_per_conn",
    "max_subscriptions", "max_filters", "max_limit", "default_limit", "max_event_tags",
    "max_content_bytes", "max_created_at_future_s", "max_subid_length",
})


def env_name(field: str) -> str:
    return f"GRASP_{field.upper()}"


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Which changed settings are applied now and which wait for a restart (field names)."""

    applied: tuple[str, ...]
    restart_needed: tuple[str, ...]

    def log_fields(self) -> dict[str, Any]:
        return {
            "applied": [env_name(name) for name in self.applied],
            "restart_needed": [env_name(name) for name in self.restart_needed],
        }


def plan(running: Settings, fresh: Settings) -> ReloadPlan:
    """Compare field by field; only what differs is listed."""
    changed = [name for name in type(running).model_fields if getattr(running, name) != getattr(fresh, name)]
    return ReloadPlan(tuple(sorted(n for n in changed if n in RELOADABLE)),
                      tuple(sorted(n for n in changed if n not in RELOADABLE)))


class Live:
    """The values the running relay derives from reloadable settings, in one place so that a
    reload replaces them for every reader at once: the ingest path reads the policy context
    per event, connections their limits when they open and the per-address window per event,
    peers the limits per event, the app the proxies and connection caps per request. The
    settings object itself is shared and updated in place."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy_context = policy.PolicyContext.from_settings(settings)
        self.limits = Limits.from_settings(settings)
        self.trusted_proxies = ratelimit.parse_networks(settings.trusted_proxies)
        self.connection_limits = ratelimit.ConnectionTracker(settings.max_connections, settings.max_connections_per_ip)
        self.events_per_ip = ratelimit.KeyedWindows(settings.events_per_minute_per_ip, 60.0)

    def apply(self, fresh: Settings, names: tuple[str, ...]) -> None:
        """Copy the reloadable settings in and rebuild what was derived from them."""
        settings = self.settings
        for name in names:
            setattr(settings, name, getattr(fresh, name))
        self.policy_context = policy.PolicyContext.from_settings(settings)
        self.limits = Limits.from_settings(settings)  # new connections and peers' events
        self.trusted_proxies = ratelimit.parse_networks(settings.trusted_proxies)
        self.connection_limits.max_total = settings.max_connections
        self.connection_limits.max_per_ip = settings.max_connections_per_ip
        if "events_per_minute_per_ip" in names:  # the windows start afresh at the new rate
            self.events_per_ip = ratelimit.KeyedWindows(settings.events_per_minute_per_ip, 60.0)
