"""After a NIP-09 deletion, what was stored only because of the deleted events goes too.

Only served events anchor others (relay/nostr/policy/graph.py's graph rule): an issue is stored because
it tags a served announcement, a comment because it tags a served issue. When the author
deletes that announcement, the issues resting on it would stay served with nothing to
belong to, which is the same junk the anchor rule keeps out. So after a deletion every
event that tags what was deleted is judged again by the acceptance policy, and refused ones
are removed; then the same for what tagged those, a bounded number of rounds.

Judged again, an event counts only what it tags, not what tags it: an issue and its comments
must not keep each other served once their repository is gone (the "is tagged by" direction
of the rule is for events that arrive before what names them). Announcements, states and
deletions have rules of their own and are never removed here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from relay.nostr import policy
from storage.nostr import nip34
from storage.nostr.event import Event, is_hex
from storage.nostr.filters import Filter

log = structlog.get_logger(__name__)

#: Rounds of "what tagged the removed ones" followed, and events judged per round.
MAX_ROUNDS = 4
MAX_PER_ROUND = 5000
_OWN_RULES = frozenset({nip34.ANNOUNCEMENT, nip34.STATE, nip34.DELETION, nip34.GRASP_LIST})

Query = Callable[[list[Filter], int], Awaitable[list[Event]]]
Remove = Callable[[list[str]], Awaitable[list[str]]]


class _ForwardOnly:
    """The read view as the policy sees it, minus "is tagged by a served event"."""

    def __init__(self, view: Any) -> None:
        self._view = view

    def is_referenced_by_served(self, event_id: str, coordinate: str | None) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


def deleted_targets(deletion: Event) -> tuple[set[str], set[str]]:
    """(ids, coordinates) a kind 5 names that are its own author's to delete."""
    ids = {v for v in deletion.tag_values("e") if is_hex(v, 64)}
    coords = set()
    for value in deletion.tag_values("a"):
        parsed = nip34.parse_coordinate(value)
        if parsed is not None and parsed[1] == deletion.pubkey:
            coords.add(value)
    return ids, coords


def _tagging(ids: set[str], coords: set[str]) -> list[Filter]:
    filters = []
    if coords:
        values = frozenset(coords)
        filters += [Filter(tags=((name, values),)) for name in ("a", "A", "q")]
    if ids:
        values = frozenset(ids)
        filters += [Filter(tags=((name, values),)) for name in ("e", "E", "q")]
    return filters


async def drop_orphans(deletion: Event, view: Any, ctx: policy.PolicyContext, query: Query,
                       remove: Remove) -> list[str]:
    """Remove what the deletion left without a served anchor; returns the ids removed."""
    ids, coords = deleted_targets(deletion)
    judge = _ForwardOnly(view)
    removed: list[str] = []
    for _ in range(MAX_ROUNDS):
        filters = _tagging(ids, coords)
        if not filters:
            break
        candidates = [e for e in await query(filters, MAX_PER_ROUND) if e.kind not in _OWN_RULES]
        orphans = [e for e in candidates if not policy.decide(e, judge, ctx).accepted]
        if not orphans:
            break
        gone = await remove([e.id for e in orphans])
        removed += gone
        ids = set(gone)
        coords = {e.coordinate for e in orphans if e.coordinate and e.id in ids}
    if removed:
        log.info("orphans_removed", deletion=deletion.id, events=len(removed))
    return removed
