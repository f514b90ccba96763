"""Which served repos lack the objects their signed state names: pure selection.

GRASP-02 asks a server to pull missing git data from the other clone URLs at least hourly.
A served repo can lack the objects of the state that rules it although nothing is waiting in
the purgatory: an owner's announcement adopted a served state whose data was nowhere here,
a pack was lost on disk, a backup restored only refs. The hourly check
(`purgatory/integrity/served_data.py`) reads each served repo's refs and looks up only its
state's ref tips in the object database (no walk); this module decides, from those values,
which state a repo must hold and whether the relay may bring it there on its own, so the
rule is tested without a repo or a store.

The relay only ever completes a repo towards a served state it already follows: a repo that
is exactly at its authoritative state (or, kept after a membership change, at a former
maintainer's newer one) gets that state's objects; an empty repo of an owner whose
maintainers have a served state gets that state, as adoption would have done. A repo at
anything else differs from its state and is the integrity pass's business; one exactly at a
newer held state is the purgatory's. So no ref is ever moved to a value no served state
names."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from purgatory.integrity import compare as integrity
from storage.nostr import nip34
from storage.nostr.event import Event

#: (npub, identifier): how the check orders and resumes the served repos
RepoKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Gap:
    """A served repo that lacks some of its state's tip objects: what the sync must fetch
    (`missing`) and the state whose refs the repo is completed with once they are here."""

    identifier: str
    owner: str
    path: Path
    state: Event
    missing: frozenset[str]

    @property
    def refs(self) -> dict[str, str]:
        return nip34.state_refs(self.state)[0]

    @property
    def head(self) -> str | None:
        return nip34.state_refs(self.state)[1]


def tips(state: Event) -> frozenset[str]:
    """The objects a state's branches and tags point at: all the check looks up."""
    return frozenset(nip34.state_refs(state)[0].values())


def target_state(refs: Mapping[str, str], head: str | None, choice: integrity.Choice) -> Event | None:
    """The served state whose objects this repo must hold and that the relay may complete it
    with, or None (no state, or the repo is not where a served state it follows puts it)."""
    state = choice.state
    if state is None:
        return None
    finding = integrity.check(refs, head, choice)
    if finding.pending_state_id is not None:
        return None  # a held state's data is here already: the purgatory releases it
    if finding.kept_state_id is not None:
        return next((s for s in choice.former if s.id == finding.kept_state_id), None)
    if not finding.differences:
        return state
    if not any(name.startswith(nip34.BRANCH_AND_TAG) for name in refs):
        return state  # adopted without data: the state adoption would have applied
    return None


def gap_of(identifier: str, owner: str, path: Path, state: Event | None, missing: set[str]) -> Gap | None:
    """A gap when the target state has tips this repo lacks."""
    if state is None or not missing:
        return None
    return Gap(identifier, owner, path, state, frozenset(missing))


def may_complete(refs: Mapping[str, str], head: str | None, state: Event, choice: integrity.Choice) -> bool:
    """Read again under the repo's lock, just before writing: is `state` still the one this
    repo follows? (A push or a new state may have come between the check and the fetch.)"""
    now = target_state(refs, head, choice)
    return now is not None and now.id == state.id


def batch_after(keys: Sequence[RepoKey], after: RepoKey | None, limit: int) -> list[RepoKey]:
    """Up to `limit` of the sorted `keys`, starting after `after` and wrapping around, so that
    rounds bounded to `limit` repos still reach every repo in turn, whatever comes and goes."""
    if not keys or limit <= 0:
        return []
    start = 0 if after is None else bisect.bisect_right(keys, after)
    start = 0 if start >= len(keys) else start
    ordered = list(keys[start:]) + list(keys[:start])
    return ordered[:limit]
