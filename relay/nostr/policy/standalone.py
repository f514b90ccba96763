"""Kinds accepted on their own terms, without a repository to anchor them: GRASP server lists
(10317) are stored, and deletions (5) when they name a known event or address of their own
author (deleting is harmless; storing deletions of nothing would let anyone park kind-5
events here)."""

from __future__ import annotations

from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.verdict import ReadView, Verdict, accept, reject
from storage.nostr import nip34
from storage.nostr.event import Event, is_hex


def grasp_list_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    return accept("store", None, ()) if event.kind == nip34.GRASP_LIST else None


def deletion_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.DELETION:
        return None
    ids = [v for v in event.tag_values("e") if is_hex(v, 64)]
    coords = [v for v in event.tag_values("a") if nip34.parse_coordinate(v) is not None]
    if not ids and not coords:
        return reject("invalid: a deletion must name events (e tags) or addresses (a tags)")
    for event_id in ids:
        target = view.get_event(event_id)
        if target is not None and target.pubkey == event.pubkey:
            return accept("store", None, ())
    for coord in coords:
        parsed = nip34.parse_coordinate(coord)
        if parsed is not None and parsed[1] == event.pubkey and view.has_coordinate(coord):
            return accept("store", None, ())
    return reject("blocked: this deletion names none of your events stored here")

