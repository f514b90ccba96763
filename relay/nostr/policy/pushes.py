"""Operator rules on git pushes, before the signed-state rules (`relay.git.push_auth`) look
at the refs: a blacklisted repository takes no push, and while GRASP-05 archiving is
read-only an archived repository (one whose owner's announcement does not list us) takes
none either, as its data comes only by sync from the servers it lists. One message each."""

from __future__ import annotations

from relay.nostr.policy.context import PolicyContext
from storage.nostr import nip34
from storage.nostr.event import Event

READ_ONLY_ARCHIVE = ("this repository is a read-only archive here (GRASP-05): its data comes only by sync "
                     "from the servers its announcement lists; push there")


def blacklisted_push(owner: str, identifier: str, ctx: PolicyContext) -> str | None:
    if ctx.repository_blocked(owner, identifier):
        return f"the operator does not accept repository {nip34.hex_to_npub(owner)}/{identifier}"
    return None


def read_only_archive_push(announcement: Event | None, ctx: PolicyContext) -> str | None:
    if not ctx.archive_read_only or announcement is None:
        return None
    clone_ok, relay_ok = nip34.announcement_lists_us(announcement, ctx.domain)
    if clone_ok and relay_ok:
        return None  # hosted here at its owner's request: archiving does not change that
    return READ_ONLY_ARCHIVE if ctx.archives(announcement) else None


def push_refusal(owner: str, identifier: str, announcement: Event | None, ctx: PolicyContext) -> str | None:
    """The first operator rule that refuses a push to owner's repo, or None."""
    return blacklisted_push(owner, identifier, ctx) or read_only_archive_push(announcement, ctx)
