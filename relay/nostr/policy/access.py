"""Rules that refuse before any kind is looked at: a blacklisted pubkey (every kind) and
ephemeral events (this relay serves a repository graph at rest, not a general fan-out)."""

from __future__ import annotations

from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.verdict import ReadView, Verdict, reject
from storage.nostr.event import Event


def blacklist_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.pubkey in ctx.blacklist:
        return reject("blocked: this pubkey is not allowed to publish here")
    return None


def ephemeral_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.is_ephemeral:
        return reject("blocked: ephemeral events are not relayed by this GRASP server")
    return None

