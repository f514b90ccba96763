"""The push gate (relay/git/push_gate.py) against fakes of the reads it makes: which states
authorise a push (the owner's confirmed maintainers' held states and their newest served
one), the PR tips it knows, and what it tells the purgatory after a push."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from relay.git import push_auth
from relay.git.pktline import RefUpdate
from relay.git.push_gate import PushGate
from relay.git.smart_http import RepoRef
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.nostr.nip34 import ZERO_OID
from tests.purgatory_fakes import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    OID,
    T0,
    FakeRepos,
    FakeStore,
    announcement,
    entry,
    pk,
    pr,
    state,
)

A, B, C, D = pk(ALICE), pk(BOB), pk(CAROL), pk(DAVE)
MAIN = "refs/heads/main"


class Metrics:
    def __init__(self) -> None:
        self.authorised: list[bool] = []

    def push_authorisation(self, accepted: bool) -> None:
        self.authorised.append(accepted)


class Gate:
    """Alice owns `r` and names Bob and Carol; Bob names Alice back (confirmed), Carol does
    not (only invited); Dave has nothing to do with it."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.store = FakeStore()
        self.repos = FakeRepos(tmp_path)
        self.metrics = Metrics()
        self.expected: list[tuple[str, str, str, str]] = []
        self.released: list[str] = []
        for secret, names in ((ALICE, (B, C)), (BOB, (A,)), (CAROL, ()), (DAVE, ())):
            ann = announcement(secret, "r", names)
            self.store.served[ann.id] = ann
            self.repos.add(pk(secret), "r")

        async def expect_pr(event_id: str, owner: str, identifier: str, tip: str) -> None:
            self.expected.append((event_id, owner, identifier, tip))

        async def on_git_data(identifier: str) -> set[str]:
            self.released.append(identifier)
            return set()

        self.gate = PushGate(Settings(**settings), self.store, self.store, self.repos,  # type: ignore[arg-type]
                             self.metrics, expect_pr, on_git_data)  # type: ignore[arg-type]

    def repo(self, owner: str) -> RepoRef:
        return RepoRef(nip34.hex_to_npub(owner), owner, "r", self.repos.path(owner, "r"))

    def serve(self, *events: Event) -> None:
        for event in events:
            self.store.served[event.id] = event

    def hold(self, *events: Event) -> None:
        for n, event in enumerate(events):
            self.store.entries[event.id] = entry(event, "r", received_at=n)

    async def candidates(self, owner: str = "") -> list[str]:
        return [s.id for s in await self.gate.candidate_states(self.repo(owner or A))]


async def test_held_states_of_confirmed_maintainers_authorise_not_those_of_invited_keys_or_strangers(
        tmp_path: Path) -> None:
    g = Gate(tmp_path)
    own, bobs = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(BOB, "r", {MAIN: OID[2]}, t=T0 + 1)
    carols, daves = state(CAROL, "r", {MAIN: OID[3]}, t=T0 + 2), state(DAVE, "r", {MAIN: OID[4]}, t=T0 + 3)
    g.hold(own, bobs, carols, daves)

    assert await g.candidates() == [bobs.id, own.id]  # newest first


async def test_only_the_newest_served_state_of_the_maintainers_counts(tmp_path: Path) -> None:
    """Served states are one per author (addressable); of the maintainers' ones the newest
    rules the repo, and an older one no longer authorises a push."""
    g = Gate(tmp_path)
    old, new = state(ALICE, "r", {MAIN: OID[1]}, t=T0), state(BOB, "r", {MAIN: OID[2]}, t=T0 + 5)
    strangers = state(DAVE, "r", {MAIN: OID[3]}, t=T0 + 9)
    g.serve(old, new, strangers)

    assert await g.candidates() == [new.id]


async def test_every_held_state_counts_beside_the_newest_served_even_an_older_one(tmp_path: Path) -> None:
    """A push may deliver the data of any held state (the one the client just sent, or one
    received earlier) or of the served state (a re-push after a loss)."""
    g = Gate(tmp_path)
    served = state(ALICE, "r", {MAIN: OID[1]}, t=T0 + 10)
    older_held, newer_held = state(BOB, "r", {MAIN: OID[2]}, t=T0), state(BOB, "r", {MAIN: OID[3]}, t=T0 + 20)
    g.serve(served)
    g.hold(older_held, newer_held)

    assert await g.candidates() == [newer_held.id, served.id, older_held.id]


async def test_states_of_the_same_second_are_ordered_by_lowest_id(tmp_path: Path) -> None:
    g = Gate(tmp_path)
    one, two = state(ALICE, "r", {MAIN: OID[1]}), state(BOB, "r", {MAIN: OID[2]})
    g.hold(one, two)

    assert await g.candidates() == sorted([one.id, two.id])


async def test_the_maintainers_own_repo_takes_the_owners_states_too(tmp_path: Path) -> None:
    """Bob's repo: Bob names Alice, who names him back, so her states count there; Carol's
    repo names nobody, so only hers do."""
    g = Gate(tmp_path)
    alices, carols = state(ALICE, "r", {MAIN: OID[1]}, t=T0 + 1), state(CAROL, "r", {MAIN: OID[2]}, t=T0)
    g.hold(alices, carols)

    assert await g.candidates(B) == [alices.id]
    assert await g.candidates(C) == [carols.id]


async def test_with_no_maintainer_state_there_is_no_candidate_and_a_branch_push_is_refused(
        tmp_path: Path) -> None:
    g = Gate(tmp_path)
    g.hold(state(DAVE, "r", {MAIN: OID[1]}))

    plan = await g.gate.plan(g.repo(A), [RefUpdate(ZERO_OID, OID[1], MAIN)])

    assert await g.candidates() == [] and plan.refused


async def test_a_push_matching_a_held_maintainer_state_is_planned_into_the_served_repo(tmp_path: Path) -> None:
    g = Gate(tmp_path)
    g.hold(state(BOB, "r", {MAIN: OID[1]}))

    plan = await g.gate.plan(g.repo(A), [RefUpdate(ZERO_OID, OID[1], MAIN)])

    assert not plan.refused and plan.target == "served"


async def test_the_gate_knows_the_tip_a_pr_event_names(tmp_path: Path) -> None:
    g = Gate(tmp_path)
    known = pr(CAROL, A, "r", OID[5])
    g.hold(known)
    right = RefUpdate(ZERO_OID, OID[5], nip34.PR_REF_PREFIX + known.id)
    wrong = RefUpdate(ZERO_OID, OID[6], nip34.PR_REF_PREFIX + known.id)
    unknown = RefUpdate(ZERO_OID, OID[7], nip34.PR_REF_PREFIX + "e" * 64)

    assert not (await g.gate.plan(g.repo(A), [right])).refused
    assert (await g.gate.plan(g.repo(A), [wrong])).refused
    assert not (await g.gate.plan(g.repo(A), [unknown])).refused  # its event may come later


async def test_after_a_push_an_unnamed_pr_ref_gets_a_placeholder_and_the_release_runs(tmp_path: Path) -> None:
    g = Gate(tmp_path)
    known = pr(CAROL, A, "r", OID[5])
    g.hold(known)
    commands = (RefUpdate(ZERO_OID, OID[5], nip34.PR_REF_PREFIX + known.id),
                RefUpdate(ZERO_OID, OID[7], nip34.PR_REF_PREFIX + "e" * 64))
    plan = push_auth.PushPlan(commands, (None, None), "pending", commands)

    await g.gate.on_pushed(g.repo(A), plan)

    assert g.expected == [("e" * 64, A, "r", OID[7])]
    assert g.released == ["r"]


async def test_open_pushes_are_rate_limited_per_address_and_every_verdict_counted(tmp_path: Path) -> None:
    g = Gate(tmp_path, nostr_ref_pushes_per_ip_per_hour=1)
    update = RefUpdate(ZERO_OID, OID[7], nip34.PR_REF_PREFIX + "e" * 64)
    plan = push_auth.PushPlan((update,), (None,), "pending", (update,))

    assert g.gate.admit(g.repo(A), plan) is None
    refusal = g.gate.admit(g.repo(A), plan)

    assert refusal is not None and refusal.startswith("rate-limited:")
    assert g.metrics.authorised == [True, False]
