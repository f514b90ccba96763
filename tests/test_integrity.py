"""The integrity pass's pure rules (a table), and the pass over real bare repos (pygit2,
the git CLI) with a small in-memory stand-in for the store's read view."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from purgatory.integrity import compare as integrity
from purgatory.integrity.compare import Authority, Difference
from purgatory.integrity.sweep import IntegrityPass, StartupIntegrity, repo_dirs
from relay.metrics import Metrics
from storage.nostr.event import Event
from storage.repos import RepoStore
from tests.daemon import ALICE, BOB, CAROL, announcement, metric, now, npub_of, pubkey_of, state, wait_for
from tests.gitutil import git, make_repo, rev

A, B, C = "a" * 40, "b" * 40, "c" * 40
MAIN, DEV, TAG = "refs/heads/main", "refs/heads/dev", "refs/tags/v1"


def auth(refs: dict[str, str], head: str | None = MAIN, state_id: str | None = "s1") -> Authority:
    return Authority(state_id, refs, head)


# --- compare: the table ----------------------------------------------------------------------
CASES = [
    ("identical", {MAIN: A, TAG: B}, MAIN, auth({MAIN: A, TAG: B}), []),
    ("moved branch", {MAIN: B}, MAIN, auth({MAIN: A}), [Difference("moved", MAIN, B, A)]),
    ("moved tag", {MAIN: A, TAG: C}, MAIN, auth({MAIN: A, TAG: B}), [Difference("moved", TAG, C, B)]),
    ("unsigned branch", {MAIN: A, DEV: A}, MAIN, auth({MAIN: A}), [Difference("unsigned", DEV, A, None)]),
    ("missing branch", {MAIN: A}, MAIN, auth({MAIN: A, DEV: B}), [Difference("missing", DEV, None, B)]),
    ("head differs", {MAIN: A, DEV: A}, DEV, auth({MAIN: A, DEV: A}), [Difference("head", "HEAD", DEV, MAIN)]),
    ("head detached", {MAIN: A}, None, auth({MAIN: A}), [Difference("head", "HEAD", None, MAIN)]),
    ("state names no HEAD", {MAIN: A}, DEV, auth({MAIN: A}, head=None), []),
    ("no state: every branch and tag unsigned, HEAD unchecked", {MAIN: A, TAG: B}, DEV,
     Authority(None), [Difference("unsigned", MAIN, A, None), Difference("unsigned", TAG, B, None)]),
    ("no state, empty repo", {}, MAIN, Authority(None), []),
    ("refs/nostr and other namespaces are not checked", {MAIN: A, "refs/nostr/" + "e" * 64: B, "refs/x": C},
     MAIN, auth({MAIN: A}), []),
    ("all at once, ordered by name, HEAD last", {DEV: A, MAIN: C, "refs/heads/zzz": A}, "refs/heads/zzz",
     auth({MAIN: A, TAG: B}),
     [Difference("unsigned", DEV, A, None), Difference("moved", MAIN, C, A),
      Difference("unsigned", "refs/heads/zzz", A, None), Difference("missing", TAG, None, B),
      Difference("head", "HEAD", "refs/heads/zzz", MAIN)]),
]


@pytest.mark.parametrize("refs,head,authority,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compare(refs, head, authority, expected) -> None:
    assert integrity.compare(refs, head, authority) == expected


def test_descriptions_say_what_is_wrong_and_what_repair_does() -> None:
    moved = Difference("moved", MAIN, B, A)
    assert moved.problem("s1") == f"{MAIN} is at {B}, signed state s1 lists {A}"
    assert moved.action == f"reset {MAIN} to {A}" and moved.done == f"reset to {A}"
    unsigned = Difference("unsigned", DEV, A, None)
    assert "unsigned" in unsigned.problem("s1") and unsigned.action == f"delete {DEV}"
    assert "no signed state" in unsigned.problem(None)
    assert Difference("missing", TAG, None, B).action == f"create {TAG} at {B}"
    assert Difference("head", "HEAD", None, MAIN).problem("s1").startswith("HEAD is detached")


# --- plan_repair ------------------------------------------------------------------------------
def test_plan_repair_aligns_and_keeps_refs_whose_objects_are_missing() -> None:
    refs = {MAIN: B, DEV: A, TAG: C}
    diffs = integrity.compare(refs, DEV, auth({MAIN: A, TAG: B, "refs/heads/new": C}))
    plan = integrity.plan_repair(refs, diffs, missing={B})
    # main -> A and new at C are written; dev (unsigned) goes; v1 stays at C (B is missing)
    assert plan.refs == {MAIN: A, "refs/heads/new": C, TAG: C}
    assert plan.head == MAIN
    assert [d.kind for d in plan.blocked] == ["moved"] and plan.blocked[0].ref == TAG
    assert {d.ref for d in plan.fixes} == {MAIN, DEV, "refs/heads/new", "HEAD"}


def test_plan_repair_with_nothing_to_do() -> None:
    plan = integrity.plan_repair({MAIN: A}, [], set())
    assert plan.refs == {MAIN: A} and plan.head is None and not plan.fixes and not plan.blocked


# --- choose: which state rules ----------------------------------------------------------------
def lookup(*anns: Event):
    by = {a.pubkey: a for a in anns}
    return by.get


def test_choose_takes_the_newest_served_state_of_the_maintainer_set() -> None:
    alice, bob = pubkey_of(ALICE), pubkey_of(BOB)
    # Bob is a confirmed maintainer: Alice names him and his own announcement names her back
    anns = lookup(announcement(ALICE, "x", "r", maintainers=[bob]), announcement(BOB, "x", "r", maintainers=[alice]))
    t = now()
    old = state(ALICE, "r", {MAIN: A}, created_at=t)
    bobs = state(BOB, "r", {MAIN: B}, created_at=t + 1)
    outsider = state(CAROL, "r", {MAIN: C}, created_at=t + 2)
    other_repo = state(ALICE, "other", {MAIN: C}, created_at=t + 3)
    choice = integrity.choose(alice, "r", [old, bobs, outsider, other_repo], [], anns, now=now())
    assert choice.state == bobs and choice.newer_held == ()
    # without Bob in the maintainers, Alice's own state rules
    assert integrity.choose(alice, "r", [old, bobs], [], lookup(), now=now()).state == old
    # Bob only invited (no announcement naming Alice back): Alice's own state rules
    invited = lookup(announcement(ALICE, "x", "r", maintainers=[bob]), announcement(BOB, "x", "r"))
    assert integrity.choose(alice, "r", [old, bobs], [], invited, now=now()).state == old
    # no state from the maintainer set at all
    assert integrity.choose(alice, "r", [outsider], [], anns, now=now()).state is None


def test_a_repo_at_a_former_maintainers_newer_state_is_kept_not_rolled_back() -> None:
    """Bob's state set the repo; then Bob stopped naming Alice back (or stepped down, or was
    removed): the repo keeps his refs until a confirmed maintainer publishes a newer state."""
    alice, bob = pubkey_of(ALICE), pubkey_of(BOB)
    t = now()
    alices = state(ALICE, "r", {MAIN: A}, created_at=t)
    bobs = state(BOB, "r", {MAIN: B}, created_at=t + 1)
    outsider = state(CAROL, "r", {MAIN: C}, created_at=t + 2)
    left = lookup(announcement(ALICE, "x", "r", maintainers=[bob]), announcement(BOB, "x", "r"))
    choice = integrity.choose(alice, "r", [alices, bobs, outsider], [], left, now=now())
    assert choice.state == alices and choice.former == (outsider, bobs)
    kept = integrity.check({MAIN: B}, MAIN, choice)
    assert kept.differences == () and kept.kept_state_id == bobs.id and kept.state_id == alices.id
    # anything that is not exactly such a state is repaired to the authority as before
    assert integrity.check({MAIN: B, "refs/heads/x": B}, MAIN, choice).differences
    assert integrity.check({MAIN: A}, MAIN, choice) == integrity.Finding(alices.id)
    # a newer state of a confirmed maintainer ends it: the repo must follow that one
    newer = state(ALICE, "r", {MAIN: C}, created_at=t + 5)
    choice = integrity.choose(alice, "r", [alices, bobs, newer], [], left, now=now())
    assert choice.former == () and integrity.check({MAIN: B}, MAIN, choice).differences


def test_choose_breaks_a_created_at_tie_by_the_lowest_id() -> None:
    t = now()
    one, two = state(ALICE, "r", {MAIN: A}, created_at=t), state(ALICE, "r", {MAIN: B}, created_at=t)
    want = min(one, two, key=lambda e: e.id)
    assert integrity.choose(pubkey_of(ALICE), "r", [one, two], [], lookup(), now=now()).state == want


def test_held_states_never_rule_but_a_repo_exactly_at_a_newer_one_is_pending() -> None:
    alice = pubkey_of(ALICE)
    t = now()
    served = state(ALICE, "r", {MAIN: A}, created_at=t)
    newer = state(ALICE, "r", {MAIN: B}, created_at=t + 5)
    older = state(ALICE, "r", {MAIN: C}, created_at=t - 5)
    outsider = state(CAROL, "r", {MAIN: C}, created_at=t + 9)
    choice = integrity.choose(alice, "r", [served], [newer, older, outsider], lookup(), now=now())
    assert choice.state == served and choice.newer_held == (newer,)
    at_newer = integrity.check({MAIN: B}, MAIN, choice)
    assert at_newer.differences == () and at_newer.pending_state_id == newer.id
    # at an older held state, or at an outsider's: a difference like any other
    assert integrity.check({MAIN: C}, MAIN, choice).differences == (Difference("moved", MAIN, C, A),)
    # no served state at all: a held state of the owner is still only "pending", never authority
    choice = integrity.choose(alice, "r", [], [newer], lookup(), now=now())
    assert choice.state is None and integrity.check({MAIN: B}, MAIN, choice).pending_state_id == newer.id
    assert integrity.check({MAIN: A}, MAIN, choice).differences == (Difference("unsigned", MAIN, A, None),)


# --- the pass over real repos -------------------------------------------------------------------
class FakeView:
    """served/held events as the store's read view answers for them."""

    def __init__(self, served: list[Event], held: list[Event] = ()) -> None:
        self.served, self.held = list(served), list(held)

    def served_announcement(self, pubkey: str, identifier: str) -> Event | None:
        return next((e for e in self.served if e.kind == 30617 and e.pubkey == pubkey and e.d_tag == identifier), None)

    def announcement(self, pubkey: str, identifier: str) -> Event | None:
        return self.served_announcement(pubkey, identifier) or next(
            (e for e in self.held if e.kind == 30617 and e.pubkey == pubkey and e.d_tag == identifier), None)

    def states_for(self, identifier: str) -> list[Event]:
        return [e for e in self.served + self.held if e.kind == 30618 and e.d_tag == identifier]

    def is_served(self, event_id: str) -> bool:
        return any(e.id == event_id for e in self.served)


@pytest.fixture
def world(tmp_path: Path):
    """Alice's served repo `r` at main=tip (state served), with an older commit in it."""
    repos = RepoStore(tmp_path / "repos")
    work = make_repo(tmp_path / "work", commits=2)
    tip, older = rev(work), rev(work, "HEAD~1")
    path = repos.ensure(pubkey_of(ALICE), "r")
    git("push", "-q", str(path), "main", cwd=work)
    ann = announcement(ALICE, "x", "r")
    st = state(ALICE, "r", {MAIN: tip})
    return SimpleNamespace(repos=repos, path=path, tip=tip, older=older, ann=ann, st=st, work=work)


async def test_pass_repairs_real_repo_and_second_run_is_clean(world) -> None:
    git("update-ref", MAIN, world.older, cwd=world.path)
    git("update-ref", "refs/heads/rogue", world.tip, cwd=world.path)
    git("update-ref", f"refs/nostr/{'e' * 64}", world.older, cwd=world.path)
    git("symbolic-ref", "HEAD", "refs/heads/rogue", cwd=world.path)
    view = FakeView([world.ann, world.st])
    metrics = Metrics(process_metrics=False)
    seen = []
    summary = await IntegrityPass(view, world.repos, repair=False, on_report=seen.append).run()
    assert summary.repos == 1 and summary.differences == 3 and summary.repaired == 0
    assert [d.kind for d in seen[0].differences] == ["moved", "unsigned", "head"]
    assert world.repos.refs(world.path)[MAIN] == world.older  # check only: nothing changed
    summary = await IntegrityPass(view, world.repos, repair=True, metrics=metrics).run()
    assert summary.repaired == 3 and summary.unresolved_repos == 0
    refs = world.repos.refs(world.path)
    assert refs == {MAIN: world.tip}
    assert world.repos.head(world.path) == MAIN
    assert world.repos.get_ref(world.path, f"refs/nostr/{'e' * 64}") == world.older  # not ours to judge
    body = metrics.render()[0].decode()
    assert metric(body, "grasp_integrity_repairs_total", kind="moved") == 1
    assert metric(body, "grasp_integrity_repairs_total", kind="head") == 1
    again = await IntegrityPass(view, world.repos, repair=True).run()
    assert again.differences == 0 and again.reports == []


async def test_pass_reports_a_state_whose_objects_are_missing(world) -> None:
    ghost = "d" * 40
    st = state(ALICE, "r", {MAIN: world.tip, DEV: ghost})
    git("update-ref", "refs/heads/rogue", world.older, cwd=world.path)
    summary = await IntegrityPass(FakeView([world.ann, st]), world.repos, repair=True).run()
    report = summary.reports[0]
    assert [d.ref for d in report.blocked] == [DEV] and summary.unresolved_repos == 1
    assert "refs/heads/rogue" not in world.repos.refs(world.path)  # the unsigned ref still went


async def test_pass_skips_unserved_repos_and_honours_identifier(world, tmp_path: Path) -> None:
    held_only = world.repos.ensure(pubkey_of(BOB), "r")
    git("push", "-q", str(held_only), "main", cwd=world.work)
    other = world.repos.ensure(pubkey_of(ALICE), "other")
    git("push", "-q", str(other), "main:refs/heads/stray", cwd=world.work)
    view = FakeView([world.ann, world.st, announcement(ALICE, "x", "other")], held=[announcement(BOB, "x", "r")])
    names = [r.name for r in await IntegrityPass(view, world.repos, repair=False).served_repos()]
    assert names == sorted([f"{npub_of(ALICE)}/r.git", f"{npub_of(ALICE)}/other.git"])
    only = await IntegrityPass(view, world.repos, repair=True).run("r")
    assert only.repos == 1 and only.differences == 0
    assert "refs/heads/stray" in world.repos.refs(other)
    assert [p.name for _, _, p in repo_dirs(world.repos.repos_dir, "nothing")] == []


def awaiting_in(task: asyncio.Task[Any], qualname: str) -> bool:
    """Is the task suspended inside a coroutine of this name (anywhere down its await chain)?"""
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        if coro.cr_code.co_qualname == qualname:
            return True
        coro = coro.cr_await
    return False


async def test_pass_waits_for_the_repo_lock(world) -> None:
    git("update-ref", MAIN, world.older, cwd=world.path)
    view = FakeView([world.ann, world.st])
    lock = world.repos.lock(world.path)
    await lock.acquire()  # a push in progress
    task = asyncio.create_task(IntegrityPass(view, world.repos, repair=True).run())
    await wait_for(lambda: awaiting_in(task, "Lock.acquire"), "the pass waiting for the repo lock", every=0.005)
    # the "push" lands the state's refs before it lets go: the pass then finds nothing wrong
    git("update-ref", MAIN, world.tip, cwd=world.path)
    lock.release()
    summary = await asyncio.wait_for(task, 10)
    assert summary.differences == 0


async def test_startup_pass_is_skipped_when_switched_off(world) -> None:
    git("update-ref", MAIN, world.older, cwd=world.path)
    view = FakeView([world.ann, world.st])
    off = StartupIntegrity(SimpleNamespace(integrity_check_on_start=False, integrity_repair_on_start=True),
                           world.repos)
    off.start(view)
    assert off.task is None
    await off.stop()
    on = StartupIntegrity(SimpleNamespace(integrity_check_on_start=True, integrity_repair_on_start=True),
                          world.repos)
    on.start(view)
    summary = await asyncio.wait_for(on.task, 10)
    assert summary.repaired == 1 and world.repos.refs(world.path)[MAIN] == world.tip
    await on.stop()


async def test_startup_pass_cancels_cleanly(world) -> None:
    view = FakeView([world.ann, world.st])
    lock = world.repos.lock(world.path)
    await lock.acquire()  # keeps the pass waiting
    on = StartupIntegrity(SimpleNamespace(integrity_check_on_start=True, integrity_repair_on_start=True),
                          world.repos)
    on.start(view)
    assert on.task is not None
    await wait_for(lambda: awaiting_in(on.task, "Lock.acquire"), "the pass waiting for the repo lock",
                   every=0.005)
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(on.stop(), 5)
    assert on.task.cancelled()
    assert [entry["event"] for entry in logs] == ["integrity_pass_cancelled"]  # stopped mid-pass
    lock.release()
    assert not lock.locked()  # the cancelled pass does not take it afterwards
