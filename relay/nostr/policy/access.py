"""Rules that refuse before the kind's own rules run: a blacklisted pubkey (every kind),
ephemeral events (this relay serves a repository graph at rest, not a general fan-out), and
anything about a blacklisted repository (its announcement, or an event tagging it)."""

from __future__ import annotations

from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.verdict import ReadView, Verdict, reject
from storage.nostr import nip34
from storage.nostr.event import Event

REPOSITORY_BLOCKED = "blocked: the operator does not accept repository"


def blacklist_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.pubkey in ctx.blacklist:
        return reject("blocked: this pubkey is not allowed to publish here")
    return None


def ephemeral_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.is_ephemeral:
        return reject("blocked: ephemeral events are not relayed by this GRASP server")
    return None



def repository_blacklist_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    """The repository blacklist beats every whitelist: an announcement it names is refused,
    and so is any event tagging such a repository (an `a`/`A`/`q` coordinate of an
    announcement or state). States are judged per owner by `state_rule`, since a
    maintainer's state names no owner."""
    if not ctx.repository_blacklist:
        return None
    named: list[tuple[str, str]] = []
    if event.kind == nip34.ANNOUNCEMENT:
        named.append((event.pubkey, event.d_tag))
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] in ("a", "A", "q"):
            parsed = nip34.parse_coordinate(tag[1])
            if parsed is not None and parsed[0] in (nip34.ANNOUNCEMENT, nip34.STATE):
                named.append((parsed[1], parsed[2]))
    for pubkey, identifier in named:
        if ctx.repository_blocked(pubkey, identifier):
            return reject(f"{REPOSITORY_BLOCKED} {nip34.hex_to_npub(pubkey)}/{identifier}")
    return None
