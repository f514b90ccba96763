"""The release: the pure plan (purgatory/release.py: what is satisfied, in what order, which
owners' repos follow a state and which keep a newer one) and its apply step
(purgatory/apply.py, against fakes: repos aligned before the store commits, PR refs written
and claimed, quarantines dropped, hooks run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from purgatory import lifecycle, release
from purgatory.apply import Release
from purgatory.locate import Locator
from purgatory.placeholders import Placeholders
from storage.nostr import nip34
from storage.nostr.event import Event
from tests.purgatory_fakes import (
    ALICE,
    BOB,
    CAROL,
    OID,
    T0,
    FakeMetrics,
    FakeRepos,
    FakeStore,
    announcement,
    entry,
    pk,
    pr,
    state,
)

A, B, C = pk(ALICE), pk(BOB), pk(CAROL)
MAIN = "refs/heads/main"


def _locate(holding: dict[str, set[str]]):
    """A `release.Locate` over named places: the first that holds every object."""
    def locate(oids):
        wanted = set(oids)
        return next((Path(name) for name, objects in holding.items() if wanted <= objects), None)
    return locate


# --- the plan ------------------------------------------------------------------------------
def test_a_state_is_released_when_some_place_holds_all_its_objects() -> None:
    whole = state(ALICE, "r", {MAIN: OID[1], "refs/tags/v1": OID[2]})
    half = state(BOB, "r", {MAIN: OID[1], "refs/heads/dev": OID[3]})
    entries = [entry(whole, received_at=1), entry(half, received_at=2)]

    plan = release.plan(entries, _locate({"/a": {OID[1], OID[2]}, "/b": {OID[3]}}), lambda author: [author])

    assert plan.event_ids == [whole.id]  # OID[1] and OID[3] are never in one place
    [s] = plan.states
    assert (s.source, s.refs, s.head, s.owners) == (Path("/a"), {MAIN: OID[1], "refs/tags/v1": OID[2]},
                                                    MAIN, (A,))


def test_announcements_go_first_and_only_for_owners_a_released_state_authorises() -> None:
    ann_a, ann_c = announcement(ALICE, "r"), announcement(CAROL, "r")
    s = state(BOB, "r", {MAIN: OID[1]})
    entries = [entry(s, received_at=1), entry(ann_a, received_at=2), entry(ann_c, received_at=3)]

    plan = release.plan(entries, _locate({"/q": {OID[1]}}), {B: [A, B]}.__getitem__)

    assert plan.event_ids == [ann_a.id, s.id]  # clients see the repo before its state; Carol's waits
    assert plan.states[0].owners == (A, B)


def test_several_owners_and_the_newest_of_states_released_together() -> None:
    older, newer = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(BOB, "r", {MAIN: OID[2]}, t=T0 + 5)
    plan = release.plan([entry(newer, received_at=1), entry(older, received_at=2)],
                        _locate({"/q": {OID[1], OID[2]}}), {A: [A], B: [A, B]}.__getitem__)

    assert plan.event_ids == [newer.id, older.id]  # oldest received first
    newest = release.newest_state(plan.states)
    assert newest is not None and newest.event.id == newer.id and newest.owners == (A, B)
    assert release.newest_state([]) is None


def test_states_of_the_same_second_tie_to_the_lowest_id() -> None:
    one, two = state(ALICE, "r", {MAIN: OID[1]}), state(BOB, "r", {MAIN: OID[1]})
    low, high = sorted((one, two), key=lambda e: e.id)
    plan = release.plan([entry(high), entry(low)], _locate({"/q": {OID[1]}}), lambda a: [a])

    newest = release.newest_state(plan.states)
    assert newest is not None and newest.event.id == low.id
    assert release.newer(low, high) and not release.newer(high, low)


def test_prs_are_released_with_their_tip_and_need_nothing_else() -> None:
    ready, waiting = pr(BOB, A, "r", OID[4]), pr(CAROL, A, "r", OID[5])
    plan = release.plan([entry(ready, "r"), entry(waiting, "r")], _locate({"/pending": {OID[4]}}), lambda a: [])

    assert plan.event_ids == [ready.id] and plan.states == []
    assert [(p.event.id, p.tip, p.source) for p in plan.prs] == [(ready.id, OID[4], Path("/pending"))]
    assert release.needed_oids(ready) == {OID[4]} and release.needed_oids(announcement(ALICE, "r")) == set()


def test_a_state_naming_no_refs_is_never_released() -> None:
    empty = state(ALICE, "r", {})
    assert release.plan([entry(empty)], _locate({"/q": set()}), lambda a: [a]).entries == []


def test_alignment_skips_each_owner_whose_maintainers_have_a_newer_served_state() -> None:
    """Several owners: Alice's maintainers (Alice, Bob) served a newer state, Carol's (Carol,
    Bob) an older one, and Dave's repo has none: Alice's repo keeps its refs."""
    released = state(BOB, "r", {MAIN: OID[2]}, t=T0 + 10)
    newest = release.StateRelease(released, {MAIN: OID[2]}, MAIN, Path("/q"), (A, C, "dave"))
    served = [state(ALICE, "r", {MAIN: OID[3]}, t=T0 + 20), state(CAROL, "r", {MAIN: OID[1]}, t=T0)]
    members = {A: frozenset({A, B}), C: frozenset({C, B}), "dave": frozenset({"dave", B})}

    result = release.alignments(newest, served, members.__getitem__)

    assert result == [(A, served[0]), (C, None), ("dave", None)]


def test_alignment_against_an_equal_served_state_follows_the_tie_rule() -> None:
    one, two = state(ALICE, "r", {MAIN: OID[1]}), state(BOB, "r", {MAIN: OID[2]})
    low, high = sorted((one, two), key=lambda e: e.id)
    members = {A: frozenset({A, B})}.__getitem__

    as_high = release.StateRelease(high, {}, None, Path("/q"), (A,))
    as_low = release.StateRelease(low, {}, None, Path("/q"), (A,))
    assert release.alignments(as_high, [low], members) == [(A, low)]  # the lower id wins a tie
    assert release.alignments(as_low, [high], members) == [(A, None)]


# --- the apply step ------------------------------------------------------------------------
class World:
    """Alice owns `r` and names Bob; Bob's announcement names Alice back: both repos exist,
    both maintainer sets are {Alice, Bob}."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = FakeStore()
        self.log = self.store.calls  # repo writes and store writes, in one order
        self.repos = FakeRepos(tmp_path / "repos", self.log)
        self.metrics = FakeMetrics()
        self.quarantine = tmp_path / "quarantine"
        for secret, other in ((ALICE, B), (BOB, A)):
            ann = announcement(secret, "r", (other,))
            self.store.served[ann.id] = ann
            self.repos.add(pk(secret), "r")
        self.locator = Locator(self.repos, self.store, self.store, lambda i: self.quarantine / f"{i}.git",  # type: ignore[arg-type]
                               nip34.WalkLimits())
        self.placeholders = Placeholders(self.store, self.store, self.repos,  # type: ignore[arg-type]
                                         lambda i: self.locator.announcements(i).owners, self.metrics, 600.0)
        self.dropped: list[str] = []
        self.broadcast: list[str] = []

        async def drop(identifier: str) -> None:
            self.dropped.append(identifier)

        async def hook(event: Event) -> None:
            self.broadcast.append(event.id)

        self.release = Release(self.store, self.repos, self.locator, self.placeholders, drop,  # type: ignore[arg-type]
                               self.metrics, after_release=[hook])

    def hold(self, *events: Event) -> None:
        for n, event in enumerate(events):
            identifier = event.d_tag or "r"
            self.store.entries[event.id] = entry(event, identifier, received_at=n)


async def test_repos_are_aligned_before_the_store_serves_the_state(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.repos.add(A, "r", OID[1], OID[2])  # a push brought the data to Alice's repo
    s = state(BOB, "r", {MAIN: OID[1], "refs/heads/dev": OID[2]})
    world.hold(s)

    assert await world.release.on_git_data("r") == {s.id}

    a8, b8 = A[:4], B[:4]
    assert world.log[-1] == f"release {s.id[:8]}"  # the store last: a crash before leaves it held
    assert sorted(world.log[:-1]) == sorted([f"set_refs {a8}", f"copy {a8}->{b8} 2", f"set_refs {b8}"])
    assert world.log.index(f"copy {a8}->{b8} 2") < world.log.index(f"set_refs {b8}")
    for owner in (A, B):
        assert world.repos.served[(owner, "r")].refs == {MAIN: OID[1], "refs/heads/dev": OID[2]}
        assert world.repos.served[(owner, "r")].head == MAIN
    assert world.broadcast == [s.id] and world.metrics.purgatory == [(nip34.STATE, "released")]
    assert world.dropped == ["r"]  # nothing left held: the quarantine goes


async def test_a_state_superseded_by_a_newer_served_one_is_served_but_moves_no_repo(tmp_path: Path) -> None:
    world = World(tmp_path)
    current = state(ALICE, "r", {MAIN: OID[3]}, t=T0 + 50)
    world.store.served[current.id] = current
    world.repos.add(A, "r", OID[1], OID[3], refs={MAIN: OID[3]})
    late = state(BOB, "r", {MAIN: OID[1]}, t=T0 + 10)
    world.hold(late)

    assert await world.release.on_git_data("r") == {late.id}

    assert world.log == [f"release {late.id[:8]}"]
    assert world.repos.served[(A, "r")].refs == {MAIN: OID[3]}


async def test_of_states_released_together_only_the_newest_moves_the_repos(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.repos.add(A, "r", OID[1], OID[2])
    old, new = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(BOB, "r", {MAIN: OID[2]}, t=T0 + 1)
    world.hold(old, new)

    assert await world.release.on_git_data("r") == {old.id, new.id}

    assert world.repos.served[(A, "r")].refs == world.repos.served[(B, "r")].refs == {MAIN: OID[2]}
    assert world.log[-1] == f"release {old.id[:8]} {new.id[:8]}"


async def test_a_pr_ref_is_written_where_the_pr_points_and_claimed_before_the_store_commits(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    p = pr(CAROL, A, "r", OID[4])
    world.repos.add_pending(B, "r", {nip34.PR_REF_PREFIX + p.id: OID[4]})  # pushed to Bob's pending area
    world.hold(p)

    assert await world.release.on_git_data("r") == {p.id}

    name = nip34.PR_REF_PREFIX + p.id
    assert world.log == [f"copy {B[:4]}->{A[:4]} 1", f"set_ref {A[:4]} {name[:15]}",
                         f"drop_pending {B[:4]} {name[:15]}", f"release {p.id[:8]}"]
    assert world.repos.served[(A, "r")].refs == {name: OID[4]}
    assert not world.repos.pending_exists(B, "r")  # its last ref claimed, the area goes


async def test_nothing_satisfied_changes_nothing_and_keeps_the_quarantine(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.hold(state(BOB, "r", {MAIN: OID[9]}))

    assert await world.release.on_git_data("r") == set()
    assert world.log == [] and world.dropped == [] and world.broadcast == []


async def test_with_nothing_held_the_quarantine_goes(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert await world.release.on_git_data("r") == set()
    assert world.dropped == ["r"]


async def test_what_is_still_held_after_a_release_keeps_the_quarantine(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.repos.add(A, "r", OID[1])
    ready, waiting = state(BOB, "r", {MAIN: OID[1]}), pr(CAROL, A, "r", OID[8])
    world.hold(ready, waiting)

    assert await world.release.on_git_data("r") == {ready.id}
    assert world.dropped == [] and waiting.id in world.store.entries


@pytest.mark.parametrize("trigger", [lifecycle.DATA_HERE, lifecycle.STATE_ADOPTED])
async def test_released_entries_are_counted_and_only_stored_ones_broadcast(tmp_path: Path, trigger: str) -> None:
    world = World(tmp_path)
    ann = announcement(CAROL, "r")
    world.hold(ann)
    gone = entry(state(CAROL, "r", {MAIN: OID[1]}))  # released by someone else meanwhile: "missing"

    await world.release.release_entries("r", [world.store.entries[ann.id], gone], trigger)

    assert world.metrics.purgatory == [(nip34.ANNOUNCEMENT, "released"), (nip34.STATE, "released")]
    assert world.broadcast == [ann.id]


async def test_releasing_with_a_trigger_the_lifecycle_does_not_allow_raises(tmp_path: Path) -> None:
    world = World(tmp_path)
    ann = announcement(CAROL, "r")
    world.hold(ann)

    with pytest.raises(lifecycle.IllegalTransition):
        await world.release.release_entries("r", [world.store.entries[ann.id]], lifecycle.DEADLINE)
    with pytest.raises(lifecycle.IllegalTransition):
        await world.release.release_entries("r", [world.store.entries[ann.id]], lifecycle.NO_EVENT_YET)
    assert ann.id in world.store.entries
