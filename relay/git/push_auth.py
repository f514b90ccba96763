"""Push authorisation rules. Pure: the caller gathers the repo's refs, the maintainers' state
events and the known PR tips; these functions only compare, and say what git may be given.

The promise they keep: a branch or tag moves only where a state event signed by a maintainer
says. A push to branches or tags is allowed when, with its changes applied, the repo's
branches and tags are exactly those of one such state: the signed state is the authority,
the push only delivers the objects. The rules are written against what git will really do,
not what the client hoped for:

- every command's `old` must be the ref's value here now (zero for a create), because git
  refuses a command whose `old` does not match, and a push that is partly applied is a
  push nobody authorised;
- a ref named twice is refused (git would apply one, the other, or both in turn);
- a command that changes nothing (`old == new`) counts as nothing: it neither authorises nor
  exempts, and git is not given it;
- git is run with `atomic`, so the commands it is given land all together or not at all.

PR refs (`refs/nostr/<id>`) are open to anyone, so they are not written into the served repo
at all: they land in the repo's pending area (never served) until a PR event claims them,
must not contradict a PR event we already know, and get the open-push limits (rate, size).
A push that changes no branch or tag is such an open push, whatever else it lists; one that
mixes refs/nostr with branch or tag changes is refused, as the two go to different places."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from relay.git.pktline import RefUpdate
from storage.nostr.event import is_hex
from storage.nostr.nip34 import BRANCH_AND_TAG, PR_REF_PREFIX, ZERO_OID

OTHER_NAMESPACE = "only refs/heads, refs/tags and refs/nostr/<event-id> may be pushed"
NO_STATE = "no state event from a maintainer lists these refs"
MIXED = "push refs/nostr/<event-id> refs on their own, not together with branches or tags"
NOSTR_DELETE = "refs/nostr/<event-id> refs cannot be deleted by a push"

StateCandidate = tuple[str, Mapping[str, str]]  # (event id, refs) newest first
Target = Literal["none", "served", "pending"]


@dataclass(frozen=True, slots=True)
class PushPlan:
    """The verdict on one push and, when allowed, exactly what git is to do.

    `reasons` has one entry per command the client sent (None: no objection of its own);
    `commands` are the effective ones git is given, in order, against the `target` repo
    (the served repo, its pending area for refs/nostr, or none at all when nothing changes);
    `before` and `expected` are that repo's complete ref maps before and after, which the
    caller compares with what git really left."""

    updates: tuple[RefUpdate, ...]
    reasons: tuple[str | None, ...]
    target: Target = "none"
    commands: tuple[RefUpdate, ...] = ()
    before: Mapping[str, str] = field(default_factory=dict)
    expected: Mapping[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return any(reason is not None for reason in self.reasons)

    @property
    def first_reason(self) -> str | None:
        return next((r for r in self.reasons if r is not None), None)

    @property
    def open_push(self) -> bool:
        """Changes no branch or tag: needs no signed state, so it gets the open-push limits."""
        return bool(self.updates) and self.target != "served"


def _short(event_id: str) -> str:
    return event_id[:8]


def is_branch_or_tag(ref: str) -> bool:
    return ref.startswith(BRANCH_AND_TAG)


def is_nostr(ref: str) -> bool:
    return ref.startswith(PR_REF_PREFIX)


def _changed(current: Mapping[str, str], commands: Sequence[RefUpdate]) -> dict[str, str]:
    after = dict(current)
    for command in commands:
        if command.is_delete:
            after.pop(command.ref, None)
        else:
            after[command.ref] = command.new
    return after


def apply_updates(current: Mapping[str, str], updates: Sequence[RefUpdate]) -> dict[str, str]:
    """The branches and tags the repo would have after these (effective) commands."""
    branches = {k: v for k, v in current.items() if is_branch_or_tag(k)}
    return _changed(branches, [u for u in updates if is_branch_or_tag(u.ref)])


# --- rules, one message each ----------------------------------------------------------------
def duplicate_ref(updates: Sequence[RefUpdate]) -> str | None:
    seen: set[str] = set()
    for update in updates:
        if update.ref in seen:
            return f"{update.ref} is named twice in one push"
        seen.add(update.ref)
    return None


def namespace_problem(update: RefUpdate) -> str | None:
    if is_branch_or_tag(update.ref):
        return None
    if is_nostr(update.ref) and is_hex(update.ref[len(PR_REF_PREFIX):], 64):
        return None
    return OTHER_NAMESPACE


def stale_old(update: RefUpdate, current: Mapping[str, str]) -> str | None:
    """git applies a command only if the ref is still at its `old`; say so before git does."""
    here = current.get(update.ref, ZERO_OID)
    if update.old == here:
        return None
    where = "absent" if here == ZERO_OID else f"at {here}"
    return f"{update.ref} is {where} here, not {update.old}: fetch, then push again"


def nostr_problem(update: RefUpdate, served: Mapping[str, str], pending: Mapping[str, str],
                  known_pr_tips: Mapping[str, str]) -> str | None:
    if update.is_delete:
        return NOSTR_DELETE
    event_id = update.ref[len(PR_REF_PREFIX):]
    tip = known_pr_tips.get(event_id)
    if tip is not None and tip != update.new:
        return f"PR event {_short(event_id)} names tip {tip}"
    for where, refs in (("is", served), ("waits", pending)):
        have = refs.get(update.ref)
        if have is not None and have != update.new:
            return f"{update.ref} {where} here at {have} already"
    return None


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


def state_mismatch(update: RefUpdate, after: Mapping[str, str],
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
    return _first_difference(after, event_id, refs) or NO_STATE


def _is_noop(update: RefUpdate, served: Mapping[str, str], pending: Mapping[str, str]) -> bool:
    if update.old == update.new:
        return True
    # a PR ref already holding exactly this tip (served, or waiting) is pushed again: nothing to do
    return is_nostr(update.ref) and update.new in (served.get(update.ref), pending.get(update.ref))


# --- the decision -----------------------------------------------------------------------------
def decide(
    served_refs: Mapping[str, str],
    updates: Sequence[RefUpdate],
    candidates: Sequence[StateCandidate],
    known_pr_tips: Mapping[str, str] | None = None,
    pending_refs: Mapping[str, str] | None = None,
) -> PushPlan:
    """The plan for one push.

    `served_refs` are all refs of the served repo now (branches, tags, refs/nostr),
    `pending_refs` those of its pending area; `candidates` are the maintainers' state events
    (held and latest served), newest first: the first whose refs equal the post-push branches
    and tags authorises them all."""
    tips = known_pr_tips or {}
    pending = dict(pending_refs or {})
    served = dict(served_refs)
    ups = tuple(updates)
    if not ups:
        return PushPlan(ups, ())
    twice = duplicate_ref(ups)
    if twice is not None:
        return PushPlan(ups, tuple(twice for _ in ups))
    reasons: list[str | None] = []
    effective: list[RefUpdate] = []
    for update in ups:
        noop = _is_noop(update, served, pending)
        reason = namespace_problem(update)
        if reason is None and is_nostr(update.ref):
            reason = nostr_problem(update, served, pending, tips)
        if reason is None and not noop:
            reason = stale_old(update, served)
        reasons.append(reason)
        if reason is None and not noop:
            effective.append(update)
    branch = [u for u in effective if is_branch_or_tag(u.ref)]
    nostr = [u for u in effective if is_nostr(u.ref)]
    if any(reasons):
        return PushPlan(ups, tuple(reasons))
    if branch and nostr:
        return PushPlan(ups, tuple(MIXED for _ in ups))
    if branch:
        current = {k: v for k, v in served.items() if is_branch_or_tag(k)}
        after = _changed(current, branch)
        if not any(dict(refs) == after for _, refs in candidates):
            return PushPlan(ups, tuple(
                state_mismatch(u, after, candidates) if u in branch else None for u in ups))
        return PushPlan(ups, tuple(reasons), "served", tuple(branch), served, _changed(served, branch))
    if nostr:
        # the pending area holds none of these refs yet (a ref it holds at this tip is a no-op,
        # at another tip a refusal), so git is told to create them there
        commands = tuple(RefUpdate(ZERO_OID, u.new, u.ref) for u in nostr)
        return PushPlan(ups, tuple(reasons), "pending", commands, pending, _changed(pending, commands))
    return PushPlan(ups, tuple(reasons))
