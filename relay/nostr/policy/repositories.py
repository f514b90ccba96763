"""Announcements (30617) and states (30618): who may announce a repository here and whose
states count for it. Both read the maintainer walk (`nip34.standing`) with this relay's
bounds and clock; the package docstring gives the choices."""

from __future__ import annotations

from collections.abc import Callable

from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.verdict import ReadView, Verdict, accept, reject
from storage.nostr import nip34
from storage.nostr.event import Event


def announcement_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.ANNOUNCEMENT:
        return None
    identifier = event.d_tag
    problem = nip34.identifier_problem(identifier)
    if problem is not None:
        return reject(f"invalid: {problem}")
    already_served = view.served_announcement(event.pubkey, identifier) is not None
    if ctx.hosts(event):
        return accept("store" if already_served else "purgatory", identifier, [event.pubkey])
    via = _maintainer_exception(event, view, ctx)
    if via is not None:
        live = already_served or view.served_announcement(via, identifier) is not None
        return accept("store" if live else "purgatory", identifier, [event.pubkey])
    clone_ok, relay_ok = nip34.announcement_lists_us(event, ctx.domain)
    if clone_ok and relay_ok:  # only the curation whitelist keeps it out
        return reject(NOT_WHITELISTED)
    return reject(_missing_listing_message(event, ctx.domain, clone_ok, relay_ok))


#: an announcement listing us that the operator's repository whitelist does not name
NOT_WHITELISTED = ("blocked: this server hosts only the repositories its operator lists, and this one "
                   "is not among them (see the curation field of its NIP-11 document)")


def _maintainer_exception(event: Event, view: ReadView, ctx: PolicyContext) -> str | None:
    """The owner of another accepted announcement (same identifier) hosted here (listing us
    or whitelisted: a mirror does not vouch for others) whose maintainer walk names the
    author (confirmed, invited or stepped down), preferring a served one; None if there is
    none. The walk reads this very announcement as the author's: it is the one that
    confirms an invited key (by naming a maintainer back) or records that they left, so it
    must be accepted for the chain to resolve; a key nobody names gets no exception."""
    identifier = event.d_tag
    others = [a for a in view.announcements_for(identifier) if a.pubkey != event.pubkey and _hosted_here(a, ctx)]
    found = nip34.standing(event.pubkey, others, _lookup(view, identifier, event), now=ctx.clock(),
                           limits=ctx.walk)
    owners = [*found.confirmed_by, *found.invited_by, *found.left]
    for owner in owners:
        if view.served_announcement(owner, identifier) is not None:
            return owner
    return owners[0] if owners else None


def _missing_listing_message(event: Event, domain: str, clone_ok: bool, relay_ok: bool) -> str:
    clone_hint = f"http(s)://{domain}/{nip34.hex_to_npub(event.pubkey)}/{event.d_tag}.git"
    relay_hint = f"ws(s)://{domain}"
    if not clone_ok and not relay_ok:
        return (
            "blocked: announcement must list this server in its clone tag "
            f"({clone_hint}) and its relays tag ({relay_hint})"
        )
    if not clone_ok:
        return f"blocked: announcement must list this server in its clone tag ({clone_hint})"
    return f"blocked: announcement must list this server in its relays tag ({relay_hint})"


def state_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.STATE:
        return None
    identifier = event.d_tag
    problem = nip34.identifier_problem(identifier)
    if problem is not None:
        return reject(f"invalid: {problem}")
    announcements = view.announcements_for(identifier)
    if not announcements:
        return reject(
            f"invalid: no repository announcement for '{identifier}' here; "
            "send the announcement (kind 30617) first"
        )
    found = nip34.standing(event.pubkey, announcements, _lookup(view, identifier), now=ctx.clock(),
                           limits=ctx.walk)
    owners = list(found.confirmed_by)
    if owners and all(ctx.repository_blocked(owner, identifier) for owner in owners):
        return reject(f"blocked: the operator does not accept repository '{identifier}' of "
                      f"{', '.join(nip34.hex_to_npub(o) for o in owners[:3])}")
    owners = [owner for owner in owners if not ctx.repository_blocked(owner, identifier)]
    if owners == [event.pubkey] and not _hosted_here(view.announcement(event.pubkey, identifier), ctx):
        # only the author's own mirror, kept here because others name them: it does not
        # make their states count on its own (else stepping down would change nothing)
        owners = []
    if not owners:
        return reject(_not_a_maintainer_message(identifier, found))
    if event.pubkey in owners:  # the author's own repo is the one it speaks for first
        owners.remove(event.pubkey)
        owners.insert(0, event.pubkey)
    return accept("purgatory", identifier, owners)


def _hosted_here(announcement: Event | None, ctx: PolicyContext) -> bool:
    """Did this announcement's author ask this relay to host the repo, and may it (see
    `PolicyContext.hosts`), rather than get in through the maintainer exception?"""
    return announcement is not None and ctx.hosts(announcement)


def _not_a_maintainer_message(identifier: str, found: nip34.Standing) -> str:
    """Why a state counts for no repo: say what would make it count."""
    if found.invited_by:
        who = ", ".join(nip34.hex_to_npub(owner) for owner in found.invited_by[:3])
        return (
            f"invalid: you are only invited as a maintainer of '{identifier}' (by {who}): your own "
            f"repository announcement (kind 30617, d '{identifier}') must name a maintainer back "
            "before your states count"
        )
    if found.left:
        return (
            f"invalid: your own repository announcement of '{identifier}' steps you down as a "
            "maintainer, so your states count for no repository here"
        )
    return f"invalid: you are not a maintainer of any repository '{identifier}' announced here"


def _lookup(view: ReadView, identifier: str, incoming: Event | None = None) -> Callable[[str], Event | None]:
    """Announcement lookup for one decision, memoised: several owners' maintainer sets
    usually share members, and each lookup is a store query. `incoming`, an announcement
    being decided, stands for its author's (as it would once accepted)."""
    cache: dict[str, Event | None] = {} if incoming is None else {incoming.pubkey: incoming}

    def announcement_of(pubkey: str) -> Event | None:
        if pubkey not in cache:
            cache[pubkey] = view.announcement(pubkey, identifier)
        return cache[pubkey]

    return announcement_of

