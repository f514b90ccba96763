"""Does a served repo point exactly where its signed state says? Pure comparison and plan.

The relay's promise is that every branch and tag of `/<npub>/<identifier>.git` is where the
authoritative signed state puts it, and that nothing else is there. Pushes are checked
against signed states, but other things move refs too: an operator's `git update-ref`, a
restored backup, a disk copied from another host, a bug, a crash at the wrong moment. This
module says how a repo differs from its state and what a repair would do, without touching a
repo or the store, so that the rule is unit-tested on its own; `purgatory/integrity/sweep.py`
reads the repos and the store, takes each repo's lock and applies the plan.

Which state is authoritative for owner O's repo `identifier`: the newest *served* kind-30618
event with that `d` whose author is in `nip34.maintainer_set(O, identifier, ...)` (newest
`created_at`, tie to the lowest id), the rule the purgatory aligns repos by. Held (purgatory)
states are not authoritative. A served repo without such a state (an announcement released
before any state) must have no branches or tags at all, so everything there is unsigned.

Two exceptions keep the pass from undoing a legitimate update:

- "release pending": when the repo is *exactly* at a held state of the same maintainers
  that is newer than the served one, a push has just landed (or the relay stopped between
  landing a push and releasing its state) and the purgatory is about to release that state,
  since its data is here. Reported, and left alone.
- "kept": when the repo is *exactly* at a served state of this identifier that is newer
  than the authoritative one but whose author is not a confirmed maintainer any more. That
  is how a repo looks after a membership change (a co-maintainer stepped down, was removed,
  or their announcement stopped naming a maintainer back): the relay never rolls history
  back on a membership change, the refs stay where a state signed while its author had
  authority put them, until a confirmed maintainer publishes a newer state (which the
  purgatory then applies). From the events alone the pass cannot prove that such a state
  was authoritative for this very repo when it was applied, only that it is signed, served
  (it was accepted for some repo of this identifier) and newer than every state of the
  current maintainers; it reports these repos (`integrity_kept`, with the state) so an
  operator sees them. Pushes never put a repo there on their own: they need a state of the
  current maintainers.

Only `refs/heads/*`, `refs/tags/*` and HEAD are compared. `refs/nostr/*` refs are pull
request tips, kept by a separate mechanism (a PR event names each one, and unclaimed ones
expire in the purgatory), so this pass neither reports nor removes them.

Differences, and what a repair does with each:

- `unsigned`: a branch or tag the state does not list -> deleted;
- `moved`: a branch or tag at another commit than the state says -> reset to the state's;
- `missing`: a branch or tag of the state absent from the repo -> created;
- `head`: HEAD names another branch than the state's `HEAD` (or is detached) -> set.

A reset or a creation needs the state's object in the repo; when it is missing here the
difference is reported as not repairable and that ref is left as it is (deletions and HEAD
are still repaired): the pass never invents data, and never destroys a ref it cannot put
back where it belongs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping

from storage.nostr import nip34
from storage.nostr.event import Event

DiffKind = Literal["unsigned", "moved", "missing", "head"]
DIFF_KINDS: tuple[DiffKind, ...] = ("unsigned", "moved", "missing", "head")
HEAD = "HEAD"


@dataclass(frozen=True, slots=True)
class Authority:
    """What a repo must hold: the branches, tags and HEAD of one signed state, or (no state)
    nothing at all. `head` None means the state names no HEAD, and HEAD is not checked."""

    state_id: str | None
    refs: Mapping[str, str] = field(default_factory=dict)
    head: str | None = None

    @classmethod
    def of(cls, state: Event | None) -> "Authority":
        if state is None:
            return cls(None)
        refs, head = nip34.state_refs(state)
        return cls(state.id, refs, head)


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a repo differs from its authority. `ref` is a branch or tag name, or "HEAD".
    `found` is what the repo has (an oid; for HEAD the branch it names; None: absent or
    detached), `expected` what the state says (None: the ref must not exist)."""

    kind: DiffKind
    ref: str
    found: str | None
    expected: str | None

    def problem(self, state_id: str | None) -> str:
        """What is wrong, as a sentence fragment for operators."""
        said = f"signed state {state_id}" if state_id else "no signed state"
        if self.kind == "unsigned":
            if state_id is None:
                return f"{self.ref} at {self.found} is unsigned (the repo has no signed state yet)"
            return f"{self.ref} at {self.found} is unsigned ({said} does not list it)"
        if self.kind == "moved":
            return f"{self.ref} is at {self.found}, {said} lists {self.expected}"
        if self.kind == "missing":
            return f"{self.ref} is absent, {said} lists {self.expected}"
        return f"HEAD is {self.found or 'detached'}, {said} says {self.expected}"

    @property
    def action(self) -> str:
        """What a repair does, in the imperative ("--repair would ...")."""
        return {
            "unsigned": f"delete {self.ref}",
            "moved": f"reset {self.ref} to {self.expected}",
            "missing": f"create {self.ref} at {self.expected}",
            "head": f"point HEAD at {self.expected}",
        }[self.kind]

    @property
    def done(self) -> str:
        """What a repair did, in the past tense."""
        return {
            "unsigned": "deleted",
            "moved": f"reset to {self.expected}",
            "missing": f"created at {self.expected}",
            "head": f"HEAD now {self.expected}",
        }[self.kind]


@dataclass(frozen=True, slots=True)
class Choice:
    """The states that matter for one owner's repo: the authoritative served one (or None),
    the held ones of the same maintainers that are newer than it, and the served ones of
    other authors that are newer than it (`former`: a repo exactly at one is "kept", see the
    module docstring), each newest first."""

    state: Event | None
    newer_held: tuple[Event, ...] = ()
    former: tuple[Event, ...] = ()

    @property
    def authority(self) -> Authority:
        return Authority.of(self.state)


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of comparing one repo: its differences from the authoritative state, or
    (no differences then) the id of the held state it is exactly at, whose release is due."""

    state_id: str | None
    differences: tuple[Difference, ...] = ()
    pending_state_id: str | None = None
    #: The newer served state of a former maintainer the repo is exactly at (left alone).
    kept_state_id: str | None = None


@dataclass(frozen=True, slots=True)
class Repair:
    """What to write: `refs` are the branches and tags the repo keeps or gets (the input of
    `RepoStore.set_refs`), `head` the branch HEAD gets (None: leave HEAD). `fixes` are the
    differences this write repairs, `blocked` those it cannot (object missing here)."""

    refs: dict[str, str]
    head: str | None
    fixes: tuple[Difference, ...]
    blocked: tuple[Difference, ...]


def newest(states: Iterable[Event]) -> Event | None:
    """The state an addressable-event reader keeps: newest created_at, tie to the lowest id."""
    return min(states, key=lambda s: (-s.created_at, s.id), default=None)


def choose(owner: str, identifier: str, served: Iterable[Event], held: Iterable[Event],
           announcement_of: Callable[[str], Event | None], *, now: float,
           limits: nip34.WalkLimits = nip34.WalkLimits()) -> Choice:
    """Which served state rules `owner`'s repo `identifier`, and which held states of the
    same maintainers are newer. `announcement_of(pubkey)` is the lookup the purgatory and
    the push gate give `nip34.maintainer_set` (served announcement, else the newest held)."""
    members = nip34.maintainer_set(owner, identifier, announcement_of, now=now, limits=limits)
    served = [e for e in served if e.kind == nip34.STATE and e.d_tag == identifier]

    def ours(events: Iterable[Event]) -> list[Event]:
        return [e for e in events if e.kind == nip34.STATE and e.d_tag == identifier and e.pubkey in members]

    def after(events: Iterable[Event]) -> tuple[Event, ...]:
        later = [s for s in events if state is None or _newer(s, state)]
        return tuple(sorted(later, key=lambda s: (-s.created_at, s.id)))

    state = newest(ours(served))
    return Choice(state, after(ours(held)), after(s for s in served if s.pubkey not in members))


def compare(refs: Mapping[str, str], head: str | None, authority: Authority) -> list[Difference]:
    """How a repo's branches and tags (`RepoStore.refs`: unpeeled oids) and HEAD
    (`RepoStore.head`: the branch it names, None when detached) differ from `authority`.
    Refs outside refs/heads and refs/tags are ignored; so is HEAD when the state names none
    (or there is no state). Ordered by ref name, HEAD last."""
    out: list[Difference] = []
    want = authority.refs
    for name in sorted(set(refs) | set(want)):
        if not name.startswith(nip34.BRANCH_AND_TAG):
            continue
        found, expected = refs.get(name), want.get(name)
        if found == expected:
            continue
        kind: DiffKind = "unsigned" if expected is None else "missing" if found is None else "moved"
        out.append(Difference(kind, name, found, expected))
    if authority.state_id is not None and authority.head is not None and head != authority.head:
        out.append(Difference("head", HEAD, head, authority.head))
    return out


def check(refs: Mapping[str, str], head: str | None, choice: Choice) -> Finding:
    """Compare a repo with its authoritative state, unless it is exactly at a newer held
    state of the same maintainers (a release the purgatory has yet to make) or at a newer
    served state of a former maintainer (kept: no roll-back on a membership change)."""
    authority = choice.authority
    differences = compare(refs, head, authority)
    if not differences:
        return Finding(authority.state_id)
    for held in choice.newer_held:
        if not compare(refs, head, Authority.of(held)):
            return Finding(authority.state_id, (), held.id)
    kept = at_state(refs, head, choice.former)
    if kept is not None:
        return Finding(authority.state_id, (), kept_state_id=kept.id)
    return Finding(authority.state_id, tuple(differences))


def at_state(refs: Mapping[str, str], head: str | None, states: Iterable[Event]) -> Event | None:
    """The first of `states` whose branches, tags and HEAD the repo has exactly."""
    return next((s for s in states if not compare(refs, head, Authority.of(s))), None)


def plan_repair(refs: Mapping[str, str], differences: Iterable[Difference], missing: set[str]) -> Repair:
    """The write that repairs `differences` in a repo with these `refs`, given the oids
    whose objects are `missing` there. A ref whose signed object is missing keeps its
    current value (or stays absent) and is reported as blocked."""
    target = {name: oid for name, oid in refs.items() if name.startswith(nip34.BRANCH_AND_TAG)}
    head: str | None = None
    fixes: list[Difference] = []
    blocked: list[Difference] = []
    for diff in differences:
        if diff.kind == "unsigned":
            target.pop(diff.ref, None)
        elif diff.kind == "head":
            head = diff.expected
        elif diff.expected is None or diff.expected in missing:
            blocked.append(diff)
            continue
        else:
            target[diff.ref] = diff.expected
        fixes.append(diff)
    return Repair(target, head, tuple(fixes), tuple(blocked))


def _newer(a: Event, b: Event) -> bool:
    """Does a supersede b, as addressable events do: newer created_at, tie to the lowest id."""
    return (a.created_at, b.id) > (b.created_at, a.id)
