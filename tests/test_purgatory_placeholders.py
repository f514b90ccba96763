"""PR refs pushed before their event (purgatory/placeholders.py) against fakes: the deadline,
the removal when nobody signs in time, the check against the tip the event names, the
claim, and which repos a PR (or an update, through its root) names."""

from __future__ import annotations

from pathlib import Path

from purgatory.placeholders import Placeholders
from storage.nostr import nip34
from tests.purgatory_fakes import (
    ALICE,
    BOB,
    CAROL,
    OID,
    FakeMetrics,
    FakeRepos,
    FakeStore,
    announcement,
    entry,
    pk,
    pr,
    pr_update,
)

A, B = pk(ALICE), pk(BOB)
EXPIRY_S = 600.0
UNKNOWN = "e" * 64
NAME = nip34.PR_REF_PREFIX + UNKNOWN


def build(tmp_path: Path) -> tuple[Placeholders, FakeStore, FakeRepos, FakeMetrics, list[float]]:
    clock = [1000.0]
    store, repos, metrics = FakeStore(clock), FakeRepos(tmp_path), FakeMetrics()
    for secret in (ALICE, BOB):
        ann = announcement(secret, "r")
        store.served[ann.id] = ann
    owners = {"r": [A, B]}
    placeholders = Placeholders(store, store, repos, owners.__getitem__, metrics, EXPIRY_S,  # type: ignore[arg-type]
                                clock=lambda: clock[0])
    return placeholders, store, repos, metrics, clock


async def test_an_early_pr_ref_waits_as_long_as_an_event_may(tmp_path: Path) -> None:
    placeholders, store, _repos, _metrics, clock = build(tmp_path)

    await placeholders.expect_pr(UNKNOWN, A, "r", OID[1])

    assert store.placeholders == {UNKNOWN: (f"{A}/r", OID[1], clock[0] + EXPIRY_S)}


async def test_at_its_deadline_an_unsigned_ref_goes_from_the_pending_area_and_the_served_repo(
        tmp_path: Path) -> None:
    placeholders, store, repos, metrics, clock = build(tmp_path)
    repos.add_pending(A, "r", {NAME: OID[1], nip34.PR_REF_PREFIX + "f" * 64: OID[2]})
    repos.add(A, "r", OID[1], refs={NAME: OID[1]})  # a placeholder from before pending areas
    await placeholders.expect_pr(UNKNOWN, A, "r", OID[1])
    clock[0] += EXPIRY_S - 1
    await placeholders.expire_due()
    assert UNKNOWN in store.placeholders and repos.log == []  # not yet

    clock[0] += 1
    await placeholders.expire_due()

    assert store.placeholders == {}
    assert repos.pending_refs(A, "r") == {nip34.PR_REF_PREFIX + "f" * 64: OID[2]}
    assert NAME not in repos.served[(A, "r")].refs
    assert metrics.purgatory == [(nip34.PR, "expired")]


async def test_at_its_deadline_a_ref_whose_event_came_meanwhile_stays(tmp_path: Path) -> None:
    placeholders, store, repos, metrics, clock = build(tmp_path)
    late = pr(CAROL, A, "r", OID[1])
    name = nip34.PR_REF_PREFIX + late.id
    repos.add_pending(A, "r", {name: OID[1]})
    await placeholders.expect_pr(late.id, A, "r", OID[1])
    store.entries[late.id] = entry(late, "r")
    clock[0] += EXPIRY_S

    await placeholders.expire_due()

    assert store.placeholders == {} and repos.pending_refs(A, "r") == {name: OID[1]}
    assert metrics.purgatory == [] and repos.log == []


async def test_the_event_arriving_ends_the_deadline_and_keeps_a_ref_with_its_tip(tmp_path: Path) -> None:
    placeholders, store, repos, _metrics, _clock = build(tmp_path)
    event = pr(CAROL, A, "r", OID[1])
    name = nip34.PR_REF_PREFIX + event.id
    repos.add_pending(A, "r", {name: OID[1]})
    await placeholders.expect_pr(event.id, A, "r", OID[1])

    await placeholders.event_arrived(event)

    assert store.placeholders == {} and repos.pending_refs(A, "r") == {name: OID[1]} and repos.log == []


async def test_a_ref_holding_another_tip_than_its_event_names_is_removed_wherever_it_is(tmp_path: Path) -> None:
    placeholders, _store, repos, _metrics, _clock = build(tmp_path)
    event = pr(CAROL, A, "r", OID[1])
    name = nip34.PR_REF_PREFIX + event.id
    repos.add_pending(A, "r", {name: OID[2]})
    repos.add(A, "r", OID[3], refs={name: OID[3]})

    await placeholders.event_arrived(event)

    assert not repos.pending_exists(A, "r") and name not in repos.served[(A, "r")].refs


async def test_a_ref_whose_event_expired_goes_from_the_pending_areas(tmp_path: Path) -> None:
    """Pushed early, its event arrived (the ref waits), then the event expired unreleased:
    nothing signed is left to claim the ref, so it must not stay on disk."""
    placeholders, _store, repos, _metrics, _clock = build(tmp_path)
    event = pr(CAROL, A, "r", OID[1])
    name = nip34.PR_REF_PREFIX + event.id
    other = nip34.PR_REF_PREFIX + "f" * 64
    repos.add_pending(A, "r", {name: OID[1], other: OID[2]})
    await placeholders.event_arrived(event)

    await placeholders.event_expired(event)

    assert repos.pending_refs(A, "r") == {other: OID[2]}
    await placeholders.event_expired(event)  # nothing left: a no-op
    assert repos.pending_refs(A, "r") == {other: OID[2]}


async def test_a_pr_update_names_the_repos_of_its_root(tmp_path: Path) -> None:
    placeholders, store, _repos, _metrics, _clock = build(tmp_path)
    root = pr(CAROL, A, "r", OID[1])
    update = pr_update(CAROL, root, OID[2])
    assert placeholders.pr_repos(update) == []  # root unknown: no repo yet

    store.served[root.id] = root

    assert placeholders.pr_repos(root) == [(A, "r")]
    assert placeholders.pr_repos(update) == [(A, "r")]


async def test_a_claim_drops_the_ref_from_every_owners_pending_area(tmp_path: Path) -> None:
    placeholders, _store, repos, _metrics, _clock = build(tmp_path)
    other = nip34.PR_REF_PREFIX + "f" * 64
    repos.add_pending(A, "r", {NAME: OID[1]})
    repos.add_pending(B, "r", {NAME: OID[1], other: OID[2]})

    await placeholders.claim("r", UNKNOWN)

    assert not repos.pending_exists(A, "r")  # its last ref: the area goes
    assert repos.pending_refs(B, "r") == {other: OID[2]}
