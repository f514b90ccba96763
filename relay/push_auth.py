"""Push authorisation rules. Pure: the caller gathers the repo's refs, the maintainers' state
events and the known PR tips; these functions only compare.

A push to branches or tags is allowed when, with all of its updates applied, the repo's
branches and tags are exactly those of one state event signed by a maintainer: the signed
state is the authority, the push only delivers the objects. PR refs (`refs/nostr/<id>`) are
open to anyone, but must not contradict a PR event we already know."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from relay.pktline import RefUpdate
from storage.event import is_hex
from storage.nip34 import BRANCH_AND_TAG

NOSTR_PREFIX = "refs/nostr/"
OTHER_NAMESPACE = "only refs/heads, refs/tags and refs/nostr/<event-id> may be pushed"
NO_STATE = "no state event from a maintainer lists these refs"

StateCandidate = tuple[str, Mapping[str, str]]  # (event id, refs) newest first


def _short(event_id: str) -> str:
    return event_id[:8]


def apply_updates(current: Mapping[str, str], updates: Sequence[RefUpdate]) -> dict[str, str]:
    """The branches and tags the repo would have after the push."""
    after = {k: v for k, v in current.items() if k.startswith(BRANCH_AND_TAG)}
    for update in updates:
        if not update.ref.startswith(BRANCH_AND_TAG):
            continue
        if update.is_delete:
            after.pop(update.ref, None)
        else:
            after[update.ref] = update.new
    return after


def _first_difference(after: Mapping[str, str], event_id: str, refs: Mapping[str, str]) -> str:
    """A one-line explanation of why `after` is not this state; the first ref by name."""
    for name in sorted(set(after) | set(refs)):
        have, want = after.get(name), refs.get(name)
        if have == want:
            continue
        if want is None:
            return f"state event {_short(event_id)} does not list {name}"
        if have is None:
            return f"state event {_short(event_id)} lists {name} at {want}, push leaves it absent"
        return f"state event {_short(event_id)} lists {name} at {want}, push has {have}"
    return ""


def _branch_tag_reason(update: RefUpdate, after: Mapping[str, str],
                       candidates: Sequence[StateCandidate]) -> str:
    """Why this command fails against the newest state: its own ref first, else the repo's."""
    if not candidates:
        return NO_STATE
    event_id, refs = candidates[0]
    want = refs.get(update.ref)
    if update.is_delete:
        if want is not None:
            return f"state event {_short(event_id)} lists {update.ref} at {want}, push deletes it"
    elif want is None:
        return f"state event {_short(event_id)} does not list {update.ref}"
    elif want != update.new:
        return f"state event {_short(event_id)} lists {update.ref} at {want}, push has {update.new}"
    return _first_difference(after, event_id, refs)


def _nostr_reason(update: RefUpdate, known_pr_tips: Mapping[str, str]) -> str | None:
    event_id = update.ref[len(NOSTR_PREFIX):]
    if not is_hex(event_id, 64):
        return OTHER_NAMESPACE
    if update.is_delete:
        return "refs/nostr/<event-id> refs cannot be deleted by a push"
    tip = known_pr_tips.get(event_id)
    if tip is not None and tip != update.new:
        return f"PR event {_short(event_id)} names tip {tip}"
    return None


def decide(
    current_refs: Mapping[str, str],
    updates: Sequence[RefUpdate],
    candidates: Sequence[StateCandidate],
    known_pr_tips: Mapping[str, str] | None = None,
) -> list[str | None]:
    """Per command: None when allowed, else the reason git shows the pusher.

    `candidates` are the maintainers' state events (purgatory and latest served), newest
    first; the first whose refs equal the post-push branches and tags authorises them all."""
    tips = known_pr_tips or {}
    current = {k: v for k, v in current_refs.items() if k.startswith(BRANCH_AND_TAG)}
    after = apply_updates(current, updates)
    branch_ok = after == current or any(dict(refs) == after for _, refs in candidates)
    out: list[str | None] = []
    for update in updates:
        if update.ref.startswith(BRANCH_AND_TAG):
            out.append(None if branch_ok else _branch_tag_reason(update, after, candidates))
        elif update.ref.startswith(NOSTR_PREFIX):
            out.append(_nostr_reason(update, tips))
        else:
            out.append(OTHER_NAMESPACE)
    return out
