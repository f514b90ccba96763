"""What a SIGHUP reload may change in a running relay, and what it says about it.

A setting is reloadable only if the running relay really uses the new value afterwards:
`Relay.apply_reload` rebuilds what was derived from it (the policy's lists, the trusted
proxy networks, the connection limits, the NIP-01 limits, the log set-up) or the value is
read afresh on every request (NIP-11 fields). Everything else was captured by a component
at start (the listening socket, the store, the sync and peer services, git's limits), so a
change to it is reported as needing a restart instead of being half applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import Settings

#: the settings a reload applies; new websocket connections get the new NIP-01 limits and
#: per-connection rates, open ones keep those they started with
RELOADABLE: frozenset[str] = frozenset({
    "log_level",
    "archive_whitelist", "pubkey_blacklist",
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
