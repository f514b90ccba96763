"""The hourly check of served repos' git data, as plain logic: which state a repo must hold
and may be completed with (`purgatory/integrity/gaps.py`), how rounds bounded to N repos
still reach them all, the bounded registry of gaps the sync serves
(`purgatory/sync/served_gaps.py`), and how the store sync context lets gaps ride on the
identifier sync (pending, needed objects, completion before the release)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from purgatory.integrity import gaps
from purgatory.integrity.compare import Choice
from purgatory.sync.served_gaps import ServedGaps
from purgatory.sync.store_context import StoreSyncContext
from storage.nostr.event import Event
from tests.daemon import ALICE, BOB, now, state

A, B, C = "a" * 40, "b" * 40, "c" * 40
MAIN, DEV, TAG = "refs/heads/main", "refs/heads/dev", "refs/tags/v1"
T = now()


def st(refs: dict[str, str], at: int = T, secret: str = ALICE) -> Event:
    return state(secret, "proj", refs, MAIN, created_at=at)


# --- which state a repo follows --------------------------------------------------------------

SERVED = st({MAIN: A, TAG: B})
NEWER_HELD = st({MAIN: C}, T + 10)
FORMER = st({MAIN: C, DEV: C}, T + 20, secret=BOB)
CHOICE = Choice(SERVED, newer_held=(NEWER_HELD,), former=(FORMER,))

TARGETS = [
    ("exactly at its state: that state", {MAIN: A, TAG: B}, MAIN, CHOICE, SERVED),
    ("empty (adopted without data): its state", {}, MAIN, CHOICE, SERVED),
    ("only a PR ref: still empty of branches and tags", {"refs/nostr/" + "e" * 64: C}, MAIN, CHOICE, SERVED),
    ("exactly at a newer held state: the purgatory's", {MAIN: C}, MAIN, CHOICE, None),
    ("kept at a former maintainer's newer state: that one", {MAIN: C, DEV: C}, MAIN, CHOICE, FORMER),
    ("differs from every state: the integrity pass's", {MAIN: B}, MAIN, CHOICE, None),
    ("an unsigned branch besides the state's: the integrity pass's", {MAIN: A, TAG: B, DEV: A}, MAIN, CHOICE,
     None),
    ("HEAD elsewhere: the integrity pass's", {MAIN: A, TAG: B}, DEV, CHOICE, None),
    ("no served state at all: nothing to hold", {}, MAIN, Choice(None), None),
    ("no served state, branches present: nothing to hold", {MAIN: A}, MAIN, Choice(None), None),
]


@pytest.mark.parametrize("refs,head,choice,expected", [c[1:] for c in TARGETS], ids=[c[0] for c in TARGETS])
def test_target_state(refs, head, choice, expected) -> None:
    assert gaps.target_state(refs, head, choice) == expected


def test_tips_are_what_the_state_names() -> None:
    assert gaps.tips(SERVED) == {A, B}
    assert gaps.tips(st({MAIN: A, DEV: A})) == {A}


def test_gap_only_when_a_tip_is_missing() -> None:
    path = Path("/r/npub1x/proj.git")
    assert gaps.gap_of("proj", "owner", path, SERVED, set()) is None
    assert gaps.gap_of("proj", "owner", path, None, {A}) is None
    gap = gaps.gap_of("proj", "owner", path, SERVED, {B})
    assert gap is not None and gap.missing == {B} and gap.refs == {MAIN: A, TAG: B} and gap.head == MAIN


def test_may_complete_only_while_the_repo_still_follows_that_state() -> None:
    assert gaps.may_complete({MAIN: A, TAG: B}, MAIN, SERVED, CHOICE)
    assert gaps.may_complete({}, None, SERVED, CHOICE)
    # a push moved it meanwhile (to a newer held state), or someone else's refs are there
    assert not gaps.may_complete({MAIN: C}, MAIN, SERVED, CHOICE)
    assert not gaps.may_complete({MAIN: B}, MAIN, SERVED, CHOICE)
    # a newer served state of the maintainers rules now
    newer = st({MAIN: B}, T + 30)
    assert not gaps.may_complete({MAIN: A, TAG: B}, MAIN, SERVED, Choice(newer))


# --- bounded rounds ---------------------------------------------------------------------------

KEYS = [("npub1a", "x"), ("npub1a", "y"), ("npub1b", "x"), ("npub1c", "z")]


def test_batch_after_walks_every_repo_in_turn() -> None:
    assert gaps.batch_after(KEYS, None, 10) == KEYS
    first = gaps.batch_after(KEYS, None, 3)
    assert first == KEYS[:3]
    second = gaps.batch_after(KEYS, first[-1], 3)
    assert second == [KEYS[3], KEYS[0], KEYS[1]]  # wraps around
    assert gaps.batch_after(KEYS, KEYS[-1], 2) == KEYS[:2]


def test_batch_after_a_key_that_went_away() -> None:
    gone = ("npub1a", "xx")  # between KEYS[0] and KEYS[1]
    assert gaps.batch_after(KEYS, gone, 2) == [KEYS[1], KEYS[2]]
    assert gaps.batch_after([], gone, 2) == []
    assert gaps.batch_after(KEYS, None, 0) == []


# --- the registry -----------------------------------------------------------------------------

def gap(identifier: str, owner: str = "o", missing: frozenset[str] = frozenset({A})) -> gaps.Gap:
    return gaps.Gap(identifier, owner, Path(f"/r/{owner}/{identifier}.git"), SERVED, missing)


def test_registry_records_refreshes_and_resolves() -> None:
    reg = ServedGaps(max_gaps=10, ttl_s=100)
    assert reg.record(gap("p", "o1"), now=0)
    assert reg.record(gap("p", "o2", frozenset({B})), now=0)
    assert reg.record(gap("p", "o1", frozenset({A, C})), now=1)  # refreshed, not a second entry
    assert len(reg) == 2
    assert reg.has("p", now=5) and not reg.has("q", now=5)
    assert reg.needed("p", now=5) == {A, B, C}
    reg.resolve("p", Path("/r/o1/p.git"))
    assert reg.needed("p", now=5) == {B}
    reg.resolve("p", Path("/r/o2/p.git"))
    reg.resolve("p", Path("/r/o2/p.git"))  # twice is harmless
    assert len(reg) == 0 and not reg.has("p", now=5)


def test_registry_forgets_what_the_check_stops_confirming() -> None:
    reg = ServedGaps(max_gaps=10, ttl_s=10)
    reg.record(gap("p"), now=0)
    assert reg.has("p", now=9.9)
    assert not reg.has("p", now=10) and len(reg) == 0


def test_registry_is_bounded() -> None:
    reg = ServedGaps(max_gaps=2, ttl_s=10)
    assert reg.record(gap("p", "o1"), now=0) and reg.record(gap("q", "o1"), now=0)
    assert not reg.record(gap("r", "o1"), now=0)
    assert len(reg) == 2 and not reg.has("r", now=0)
    assert reg.record(gap("p", "o1", frozenset({B})), now=1)  # a known one is still refreshed
    reg.resolve("q", Path("/r/o1/q.git"))
    assert reg.record(gap("r", "o1"), now=1)


# --- the sync context: gaps ride on the identifier sync -----------------------------------------

class _Store:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    async def held(self, identifier: str | None = None) -> list[Any]:
        return list(self.entries)


class _Locator:
    """Objects that are nowhere here (the context asks which of the wanted ones are missing)."""

    def sources(self, identifier: str) -> list[Path]:
        return []

    def still_missing(self, paths: list[Path], oids: set[str]) -> set[str]:
        return set(oids)


def context(reg: ServedGaps, calls: list[str], complete_resolves: bool) -> StoreSyncContext:
    settings = SimpleNamespace(sync_process_concurrency=1)

    async def on_git_data(identifier: str) -> None:
        calls.append(f"release:{identifier}")

    async def complete(identifier: str) -> None:
        calls.append(f"complete:{identifier}")
        if complete_resolves:
            for g in reg.of(identifier, 0):
                reg.resolve(identifier, g.path)

    ctx = StoreSyncContext(settings, _Store(), _Locator(), None, on_git_data, None,  # type: ignore[arg-type]
                           gaps=reg, complete_gaps=complete)
    ctx.now = lambda: 0.0  # type: ignore[method-assign]
    return ctx


async def test_a_gap_makes_its_identifier_pending_with_its_objects_needed() -> None:
    reg = ServedGaps(10, 100)
    ctx = context(reg, [], True)
    assert not await ctx.has_pending("p") and await ctx.needed_oids("p") == set()
    reg.record(gap("p", missing=frozenset({A, B})), now=0)
    assert await ctx.has_pending("p")
    assert await ctx.needed_oids("p") == {A, B}


async def test_completion_runs_before_the_release_and_keeps_the_quarantine_while_a_gap_waits() -> None:
    reg = ServedGaps(10, 100)
    calls: list[str] = []
    reg.record(gap("p"), now=0)
    await context(reg, calls, complete_resolves=False).process_new_data("p")
    # the release would drop the quarantine (nothing is held): not while the gap still waits
    assert calls == ["complete:p"]
    calls.clear()
    await context(reg, calls, complete_resolves=True).process_new_data("p")
    assert calls == ["complete:p", "release:p"]
    calls.clear()
    await context(reg, calls, complete_resolves=True).process_new_data("q")  # no gap: the release only
    assert calls == ["release:q"]
