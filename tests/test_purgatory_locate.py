"""Reading the world (purgatory/locate.py), the quarantine directories (Quarantines) and a
repo following its maintainers' served state (purgatory/adopt.py), against fakes."""

from __future__ import annotations

from pathlib import Path

from purgatory.adopt import Adoption
from purgatory.locate import Announcements, Locator
from purgatory.quarantine import Quarantines
from storage.nostr import nip34
from tests.purgatory_fakes import ALICE, BOB, CAROL, OID, T0, FakeRepos, FakeStore, announcement, entry, pk, state

A, B, C = pk(ALICE), pk(BOB), pk(CAROL)
MAIN = "refs/heads/main"


def build(tmp_path: Path) -> tuple[Locator, FakeStore, FakeRepos, Quarantines]:
    store, repos = FakeStore(), FakeRepos(tmp_path / "repos")
    quarantines = Quarantines(tmp_path / "quarantine")
    return Locator(repos, store, store, quarantines.path, nip34.WalkLimits()), store, repos, quarantines  # type: ignore[arg-type]


def test_announcements_give_each_author_once_served_first() -> None:
    served, held_update = announcement(ALICE, "r", t=T0), announcement(ALICE, "r", t=T0 + 9)
    bobs = announcement(BOB, "r")
    anns = Announcements([served, bobs, held_update])

    assert anns.owners == [A, B]
    assert anns.of(A) is served and anns.of(C) is None


def test_sources_are_served_repos_then_pending_areas_then_the_quarantine(tmp_path: Path) -> None:
    locator, store, repos, quarantines = build(tmp_path)
    for secret in (ALICE, BOB, CAROL):
        ann = announcement(secret, "r")
        store.served[ann.id] = ann
    repos.add(A, "r")
    repos.add(C, "r")
    repos.add_pending(B, "r", {nip34.PR_REF_PREFIX + "e" * 64: OID[1]})
    assert locator.sources("r") == [repos.path(A, "r"), repos.path(C, "r"), repos.pending_path(B, "r")]

    waiting = quarantines.path("r")
    waiting.mkdir(parents=True)
    (waiting / "HEAD").write_text("ref: refs/heads/main\n")

    assert locator.sources("r")[-1] == waiting
    assert locator.served_paths("r") == [repos.path(A, "r"), repos.path(C, "r")]


def test_the_first_place_holding_everything_and_what_no_place_holds(tmp_path: Path) -> None:
    locator, _store, repos, _q = build(tmp_path)
    repos.add(A, "r", OID[1])
    repos.add(B, "r", OID[1], OID[2])
    paths = [repos.path(A, "r"), repos.path(B, "r")]

    assert locator.first_holding(paths, [OID[1]]) == paths[0]
    assert locator.first_holding(paths, [OID[1], OID[2]]) == paths[1]
    assert locator.first_holding(paths, [OID[1], OID[3]]) is None
    assert locator.still_missing(paths, {OID[1], OID[2], OID[3]}) == {OID[3]}


async def test_served_states_are_newest_first_and_held_ones_are_left_out(tmp_path: Path) -> None:
    locator, store, _repos, _q = build(tmp_path)
    old, new = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(BOB, "r", {MAIN: OID[2]}, t=T0 + 1)
    elsewhere = state(CAROL, "other", {MAIN: OID[3]}, t=T0 + 2)
    for event in (old, new, elsewhere):
        store.served[event.id] = event
    store.entries["x"] = entry(state(CAROL, "r", {MAIN: OID[4]}, t=T0 + 3))

    assert [s.id for s in await locator.served_states("r")] == [new.id, old.id]


def test_maintainers_and_the_owners_a_key_maintains_for(tmp_path: Path) -> None:
    locator, store, _repos, _q = build(tmp_path)
    for secret, names in ((ALICE, (B, C)), (BOB, (A,)), (CAROL, ())):
        ann = announcement(secret, "r", names)
        store.served[ann.id] = ann

    assert locator.maintainer_set(A, "r") == {A, B}  # Carol is only invited
    assert sorted(locator.owners_of(B, locator.announcements("r"))) == sorted([A, B])
    assert locator.owners_of(C, locator.announcements("r")) == [C]


async def test_quarantines_are_named_safely_made_on_demand_and_dropped(tmp_path: Path) -> None:
    quarantines = Quarantines(tmp_path / "quarantine")
    path = quarantines.path("a/b c")
    assert path.parent == tmp_path / "quarantine" and path.name == "a%2Fb%20c.git"

    made = await quarantines.ensure("a/b c", [])

    assert made == path and (path / "HEAD").is_file()
    await quarantines.drop("a/b c")
    assert not path.exists()
    await quarantines.drop("a/b c")  # nothing there: nothing to do


# --- adoption ------------------------------------------------------------------------------
def _adoption(tmp_path: Path) -> tuple[Adoption, FakeStore, FakeRepos]:
    locator, store, repos, _q = build(tmp_path)
    for secret, names in ((ALICE, (B,)), (BOB, (A,))):
        ann = announcement(secret, "r", names)
        store.served[ann.id] = ann
    return Adoption(repos, locator, store), store, repos  # type: ignore[arg-type]


async def test_an_empty_repo_gets_its_maintainers_newest_served_state(tmp_path: Path) -> None:
    adoption, store, repos = _adoption(tmp_path)
    old, new = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(ALICE, "r", {MAIN: OID[2]}, t=T0 + 1)
    store.served[new.id] = new
    repos.add(A, "r", OID[1], OID[2], refs={MAIN: OID[2]})
    repos.add(B, "r")

    assert await adoption.follow_maintainers(B, "r", [new, old])

    assert repos.served[(B, "r")].refs == {MAIN: OID[2]} and repos.served[(B, "r")].head == MAIN


async def test_a_repo_at_a_newer_state_is_kept_and_one_at_no_state_is_left_alone(tmp_path: Path) -> None:
    adoption, _store, repos = _adoption(tmp_path)
    maintainers = state(ALICE, "r", {MAIN: OID[1]}, t=T0)
    left_behind = state(CAROL, "r", {MAIN: OID[2]}, t=T0 + 5)  # newer, by a key no longer maintaining
    repos.add(A, "r", OID[1])
    repos.add(B, "r", OID[2], refs={MAIN: OID[2]})
    repos.served[(B, "r")].head = MAIN

    assert not await adoption.follow_maintainers(B, "r", [left_behind, maintainers])
    assert repos.served[(B, "r")].refs == {MAIN: OID[2]}

    repos.served[(B, "r")].refs = {MAIN: OID[3]}  # moved behind our back: the integrity pass's job
    assert not await adoption.follow_maintainers(B, "r", [left_behind, maintainers])
    assert repos.served[(B, "r")].refs == {MAIN: OID[3]} and repos.log == []


async def test_without_a_repo_a_served_state_or_its_data_nothing_moves(tmp_path: Path) -> None:
    adoption, _store, repos = _adoption(tmp_path)
    missing = state(ALICE, "r", {MAIN: OID[9]})

    assert not await adoption.follow_maintainers(B, "r", [missing])  # no repo
    repos.add(B, "r")
    assert not await adoption.follow_maintainers(B, "r", [])  # no served state
    assert not await adoption.follow_maintainers(B, "r", [missing])  # its data is nowhere
    assert repos.log == []


async def test_a_served_announcement_brings_every_served_repo_of_its_identifier_along(tmp_path: Path) -> None:
    adoption, store, repos = _adoption(tmp_path)
    current = state(ALICE, "r", {MAIN: OID[1]})
    store.served[current.id] = current
    repos.add(A, "r", OID[1], refs={MAIN: OID[1]})
    repos.served[(A, "r")].head = MAIN
    ann = next(e for e in store.served.values() if e.kind == nip34.ANNOUNCEMENT and e.pubkey == B)
    repos.served.pop((B, "r"), None)

    await adoption.adopt_announcement(ann)

    assert repos.served[(B, "r")].refs == {MAIN: OID[1]}  # made, then aligned
