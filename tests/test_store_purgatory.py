"""The store's purgatory tables (hold, release, discard, expired, placeholders) and the
synchronous StoreView the acceptance policy reads."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import Settings
from storage.nostr.event import Event, sign_event
from storage.nostr.filters import Filter
from storage.sqlite.events import EventStore, HeldEntry
from storage.sqlite.writer import run_batch

SK_A = "01" * 32
SK_B = "02" * 32
T0 = 1_700_000_000


def ev(kind: int = 1, content: str = "x", tags: list[list[str]] | None = None, t: int = T0, sk: str = SK_A) -> Event:
    return sign_event(sk, kind, content, tags or [], t)


def announcement(identifier: str, t: int = T0, sk: str = SK_A, content: str = "") -> Event:
    return ev(30617, content, [["d", identifier], ["clone", f"https://h/{identifier}.git"]], t, sk)


def state(identifier: str, t: int = T0, sk: str = SK_A) -> Event:
    return ev(30618, "", [["d", identifier], ["refs/heads/main", "ab" * 20]], t, sk)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    s = await EventStore.open(tmp_path / "events.sqlite3", Settings(data_dir=tmp_path))
    yield s
    await s.close()


async def served_ids(store: EventStore) -> set[str]:
    return {e.id for e in await store.query([Filter()], 1000)}


# --- hold / held ---------------------------------------------------------------------------

async def test_hold_and_list(store: EventStore) -> None:
    s1, s2 = state("r1"), state("r2", sk=SK_B)
    pr = ev(1618, "pr", [["a", f"30617:{s1.pubkey}:r1"]])
    assert await store.hold(s1, "r1", T0 + 100, "client")
    assert not await store.hold(s1, "r1", T0 + 200, "sync")
    assert await store.hold(s2, "r2", T0 + 50, "sync")
    assert await store.hold(pr, "r1", T0 + 300, "client")
    entries = await store.held("r1")
    assert [h.event for h in entries] == [s1, pr]
    first = entries[0]
    assert isinstance(first, HeldEntry)
    assert (first.identifier, first.expires_at, first.source) == ("r1", T0 + 100, "client")
    assert first.received_at > T0
    assert len(await store.held()) == 3
    assert await store.held_identifiers() == ["r1", "r2"]
    assert await store.held_counts() == {30618: 2, 1618: 1}
    assert [h.event for h in await store.expired_due(T0 + 100)] == [s2, s1]
    assert await served_ids(store) == set()  # held is not served


# --- release ---------------------------------------------------------------------------------

async def test_release_moves_to_served_in_order(store: EventStore) -> None:
    old, new = state("r", T0), state("r", T0 + 1)
    other = ev(1618, "pr")
    for e in (new, old, other):
        await store.hold(e, "r", T0 + 100, "client")
    results = await store.release([old.id, new.id, other.id, "ff" * 32])
    assert [r.status for r in results] == ["saved", "replaced", "saved", "missing"]
    assert results[1].removed_ids == [old.id]
    assert await served_ids(store) == {new.id, other.id}
    assert await store.held() == []
    assert store.view.is_served(new.id)


async def test_release_applies_save_semantics(store: EventStore) -> None:
    newer, older = state("r", T0 + 5), state("r", T0)
    await store.save(newer)
    await store.hold(older, "r", T0 + 100, "sync")
    await store.hold(newer, "r", T0 + 100, "sync")
    results = await store.release([older.id, newer.id])
    assert [r.status for r in results] == ["older", "duplicate"]
    assert await store.held() == []


async def test_release_is_one_transaction(store: EventStore) -> None:
    """A release that fails part-way keeps everything held (nothing half-moved)."""
    a, b = ev(1618, "a"), ev(1618, "b")
    await store.hold(a, "r", T0, "client")
    await store.hold(b, "r", T0, "client")
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        # make the insert of `b` fail inside the release transaction
        conn.execute(
            "CREATE TRIGGER fail_b BEFORE INSERT ON events WHEN NEW.id = '" + b.id + "' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
        outcomes = run_batch(conn, [(_release, ([a.id, b.id],))])
        assert not outcomes[0].ok and "boom" in str(outcomes[0].value)
    finally:
        conn.execute("DROP TRIGGER IF EXISTS fail_b")
        conn.close()
    assert {h.event.id for h in await store.held()} == {a.id, b.id}
    assert await served_ids(store) == set()


def _release(conn: sqlite3.Connection, ids: list[str]) -> object:
    from storage.sqlite.write_ops import release

    return release(conn, ids)


# --- discard / expired -------------------------------------------------------------------------

async def test_discard_remembers_expired(store: EventStore) -> None:
    s = state("r")
    await store.hold(s, "r", T0, "sync")
    assert not await store.is_expired(s.id)
    await store.discard([s.id], "expired")
    assert await store.held() == []
    assert await store.is_expired(s.id)
    assert store.view.is_expired(s.id)
    assert not store.view.has_event(s.id)
    row = sqlite3.connect(store.path).execute("SELECT reason FROM expired WHERE id=?", (s.id,)).fetchone()
    assert row == ("expired",)



async def test_expired_memory_is_forgotten_after_its_time(store: EventStore) -> None:
    import time

    old, recent = state("a"), state("b")
    for event in (old, recent):
        await store.hold(event, event.d_tag, T0, "sync")
    await store.discard([old.id], "expired")
    cut = time.time() + 0.001
    while time.time() <= cut:
        pass
    await store.discard([recent.id], "expired")
    assert await store.forget_expired(cut) == 1
    assert not await store.is_expired(old.id) and await store.is_expired(recent.id)
    assert await store.forget_expired(cut) == 0


async def test_deletion_removes_own_held_entries(store: EventStore) -> None:
    mine, theirs = state("r"), state("r", sk=SK_B)
    my_ann = announcement("r", T0)
    for e in (mine, theirs, my_ann):
        await store.hold(e, "r", T0 + 100, "client")
    res = await store.save(ev(5, "", [["e", mine.id], ["e", theirs.id], ["a", my_ann.coordinate or ""]], T0 + 1))
    assert sorted(res.removed_held) == sorted([mine.id, my_ann.id])
    assert [h.event for h in await store.held()] == [theirs]


# --- placeholders ------------------------------------------------------------------------------

async def test_placeholders(store: EventStore) -> None:
    pid = "12" * 32
    assert await store.placeholder(pid) is None
    await store.add_placeholder(pid, "npub1x/r.git", "ab" * 20, 100.0)
    assert await store.placeholder(pid) == ("npub1x/r.git", "ab" * 20)
    assert store.view.placeholder(pid) == ("npub1x/r.git", "ab" * 20)
    assert await store.placeholders_due(99.0) == []
    assert await store.placeholders_due(100.0) == [(pid, "npub1x/r.git", "ab" * 20)]
    await store.add_placeholder(pid, "npub1x/r.git", "cd" * 20, 200.0)
    assert await store.placeholders_due(150.0) == []
    assert await store.placeholder(pid) == ("npub1x/r.git", "cd" * 20)
    await store.remove_placeholder(pid)
    assert await store.placeholder(pid) is None


# --- StoreView -----------------------------------------------------------------------------------

async def test_view_announcements(store: EventStore) -> None:
    view = store.view
    held_ann = announcement("r", T0 + 9, content="held")
    served_ann = announcement("r", T0, content="served")
    other = announcement("r", T0, sk=SK_B)
    await store.hold(held_ann, "r", T0 + 100, "client")
    assert view.announcement(held_ann.pubkey, "r") == held_ann
    assert view.served_announcement(held_ann.pubkey, "r") is None
    await store.save(served_ann)
    await store.save(other)
    assert view.announcement(served_ann.pubkey, "r") == served_ann  # served preferred
    assert view.served_announcement(served_ann.pubkey, "r") == served_ann
    assert view.announcement(served_ann.pubkey, "nope") is None
    assert {e.id for e in view.announcements_for("r")} == {served_ann.id, other.id, held_ann.id}
    assert view.announcements_for("other") == []


async def test_view_states(store: EventStore) -> None:
    served, held_b = state("r"), state("r", sk=SK_B)
    await store.save(served)
    await store.hold(held_b, "r", T0 + 100, "sync")
    await store.save(state("r2"))
    assert {e.id for e in store.view.states_for("r")} == {served.id, held_b.id}


async def test_view_events_and_coordinates(store: EventStore) -> None:
    view = store.view
    served, held = ev(1, "served"), announcement("h")
    await store.save(served)
    await store.hold(held, "h", T0 + 100, "client")
    assert view.has_event(served.id) and view.has_event(held.id)
    assert not view.has_event("00" * 32)
    assert view.get_event(served.id) == served and view.get_event(held.id) == held
    assert view.get_event("00" * 32) is None
    assert view.is_served(served.id) and not view.is_served(held.id)
    assert view.is_held(held.id) and view.held_entry(held.id) is not None
    assert view.has_coordinate(held.coordinate or "")
    theirs = announcement("s", sk=SK_B)
    await store.save(theirs)
    assert view.has_coordinate(theirs.coordinate or "")
    assert not view.has_coordinate(f"30617:{held.pubkey}:other")
    assert not view.has_coordinate("garbage")


async def test_view_is_referenced(store: EventStore) -> None:
    view = store.view
    target = "ab" * 32
    coord = f"30617:{'cd' * 32}:repo"
    assert not view.is_referenced(target, coord)
    await store.save(ev(1, "q", [["q", target]]))
    assert view.is_referenced(target, None)
    assert not view.is_referenced("ee" * 32, coord)
    await store.hold(ev(1618, "pr", [["A", coord]]), "repo", T0 + 100, "client")
    assert view.is_referenced("ee" * 32, coord)
    assert not view.is_referenced("ee" * 32, None)
    for name in ("e", "E"):
        other = f"{name}0".ljust(64, "0")
        await store.save(ev(7, name, [[name, other]]))
        assert view.is_referenced(other, None)


async def test_view_served_anchors_leave_held_events_out(store: EventStore) -> None:
    """Only served events anchor others (the policy's relatedness rule)."""
    view = store.view
    held = announcement("h")
    await store.hold(held, "h", T0 + 100, "client")
    coord = held.coordinate or ""
    assert view.has_coordinate(coord) and not view.has_served_coordinate(coord)
    target = "ab" * 32
    await store.hold(ev(1618, "pr", [["q", target]]), "h", T0 + 100, "client")
    assert view.is_referenced(target, None) and not view.is_referenced_by_served(target, None)
    await store.release([held.id])
    assert view.has_served_coordinate(coord)
    await store.save(ev(1, "note", [["e", target]]))
    assert view.is_referenced_by_served(target, None)
    assert not view.has_served_coordinate("garbage")


async def test_view_cache_follows_every_write(store: EventStore, tmp_path: Path) -> None:
    """The view keeps announcements and states in memory; after each kind of write its
    answers must equal those of a view that reads SQLite every time."""
    from storage.sqlite.view import StoreView

    fresh = StoreView(tmp_path / "events.sqlite3", cache_entries=0)

    def agree() -> list[str]:
        cached = [e.id for e in store.view.announcements_for("r")] + [e.id for e in store.view.states_for("r")]
        assert cached == [e.id for e in fresh.announcements_for("r")] + [e.id for e in fresh.states_for("r")]
        assert store.view.held_for("r") == fresh.held_for("r")
        return cached

    try:
        assert agree() == []  # cached empty
        a1, s1 = announcement("r"), state("r")
        await store.hold(a1, "r", T0 + 100, "client")
        await store.hold(s1, "r", T0 + 100, "client")
        assert agree() == [a1.id, s1.id]
        await store.release([a1.id, s1.id])
        assert agree() == [a1.id, s1.id]
        a2 = announcement("r", t=T0 + 5, content="newer")
        await store.hold(a2, "r", T0 + 100, "client")
        assert agree() == [a1.id, a2.id, s1.id]
        await store.release([a2.id])  # replaces a1
        assert agree() == [a2.id, s1.id]
        b = announcement("r", sk=SK_B)
        await store.hold(b, "r", T0 + 100, "client")
        assert agree() == [a2.id, b.id, s1.id]
        await store.discard([b.id], "expired")
        assert agree() == [a2.id, s1.id]
        s2 = state("r", t=T0 + 9)
        await store.save(s2)  # a served replacement, no purgatory
        assert agree() == [a2.id, s2.id]
        s3 = state("r", t=T0 + 30)
        await store.hold(s3, "r", T0 + 100, "client")
        assert agree() == [a2.id, s2.id, s3.id]  # served first, then held
        assert [h.event.id for h in await store.held("r")] == [s3.id]
        await store.save(ev(5, "", [["a", f"30617:{a2.pubkey}:r"], ["e", s3.id]], T0 + 40))
        assert agree() == [s2.id]
        assert await store.held("r") == []
    finally:
        fresh.close()
