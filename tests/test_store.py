"""The SQLite event store: save semantics (NIP-01 replaceable/addressable, NIP-09 deletion),
query/count semantics, restart and kill -9 durability, and write failures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from config.settings import Settings
from storage.nostr.event import Event, sign_event
from storage.nostr.filters import Filter
from storage.sqlite.events import EventStore, StoreError

SK_A = "01" * 32
SK_B = "02" * 32
T0 = 1_700_000_000
ROOT = Path(__file__).resolve().parents[1]


def ev(kind: int = 1, content: str = "x", tags: list[list[str]] | None = None, t: int = T0, sk: str = SK_A) -> Event:
    return sign_event(sk, kind, content, tags or [], t)


def flt(**obj: object) -> Filter:
    return Filter.from_dict(obj)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    s = await EventStore.open(tmp_path / "db" / "events.sqlite3", Settings(data_dir=tmp_path))
    yield s
    await s.close()


async def ids_of(store: EventStore, *filters: Filter, default_limit: int = 100) -> list[str]:
    return [e.id for e in await store.query(list(filters), default_limit)]


# --- save statuses -------------------------------------------------------------------------

async def test_saved_then_duplicate(store: EventStore) -> None:
    e = ev()
    first, second = await store.save(e), await store.save(e)
    assert (first.status, first.removed_ids) == ("saved", [])
    assert first.ok and first.stored
    assert second.status == "duplicate" and second.message.startswith("duplicate:")
    assert await ids_of(store, flt(ids=[e.id])) == [e.id]


async def test_replaceable_keeps_newest(store: EventStore) -> None:
    old, new = ev(0, "old", t=T0), ev(0, "new", t=T0 + 1)
    assert (await store.save(old)).status == "saved"
    replaced = await store.save(new)
    assert replaced.status == "replaced" and replaced.removed_ids == [old.id]
    refused = await store.save(old)
    assert refused.status == "older" and not refused.ok
    assert await ids_of(store, flt(kinds=[0])) == [new.id]


@pytest.mark.parametrize("kind", [0, 3, 10002, 19999])
async def test_replaceable_tie_goes_to_lowest_id(store: EventStore, kind: int) -> None:
    a, b = ev(kind, "one"), ev(kind, "two")
    low, high = sorted([a, b], key=lambda e: e.id)
    assert (await store.save(high)).status == "saved"
    assert (await store.save(low)).status == "replaced"
    assert (await store.save(high)).status == "older"
    assert await ids_of(store, flt(kinds=[kind])) == [low.id]


async def test_replaceable_is_per_author_and_kind(store: EventStore) -> None:
    events = [ev(0, sk=SK_A), ev(0, sk=SK_B), ev(10002, sk=SK_A)]
    for e in events:
        assert (await store.save(e)).status == "saved"
    assert sorted(await ids_of(store, flt())) == sorted(e.id for e in events)


async def test_addressable_keyed_by_d(store: EventStore) -> None:
    r1 = ev(30617, "r1", [["d", "repo1"]], T0)
    r2 = ev(30617, "r2", [["d", "repo2"]], T0)
    r1b = ev(30617, "r1b", [["d", "repo1"]], T0 + 5)
    assert (await store.save(r1)).status == "saved"
    assert (await store.save(r2)).status == "saved"
    res = await store.save(r1b)
    assert res.status == "replaced" and res.removed_ids == [r1.id]
    assert sorted(await ids_of(store, flt(kinds=[30617]))) == sorted([r1b.id, r2.id])
    assert (await store.save(r1)).status == "older"
    # no d tag is the empty identifier
    nod, nod2 = ev(30000, "a", [], T0), ev(30000, "b", [["d", ""]], T0 + 1)
    await store.save(nod)
    assert (await store.save(nod2)).removed_ids == [nod.id]


async def test_ephemeral_not_stored(store: EventStore) -> None:
    e = ev(20001)
    res = await store.save(e)
    assert res.status == "ephemeral" and res.ok and not res.stored
    assert await ids_of(store, flt()) == []
    assert not store.view.has_event(e.id)


# --- NIP-09 ---------------------------------------------------------------------------------

async def test_deletion_by_e_only_own_events(store: EventStore) -> None:
    mine, theirs = ev(1, "mine"), ev(1, "theirs", sk=SK_B)
    await store.save(mine)
    await store.save(theirs)
    deletion = ev(5, "", [["e", mine.id], ["e", theirs.id]], T0 + 1)
    res = await store.save(deletion)
    assert res.status == "saved" and res.removed_ids == [mine.id]
    assert sorted(await ids_of(store, flt())) == sorted([theirs.id, deletion.id])
    assert (await store.save(mine)).status == "deleted"
    assert (await store.save(theirs)).status == "duplicate"


async def test_deletion_before_target_refuses_target(store: EventStore) -> None:
    later_mine, later_theirs = ev(1, "later"), ev(1, "later", sk=SK_B)
    await store.save(ev(5, "", [["e", later_mine.id], ["e", later_theirs.id]]))
    assert (await store.save(later_mine)).status == "deleted"
    assert (await store.save(later_theirs)).status == "saved"


async def test_deletion_never_removes_deletions(store: EventStore) -> None:
    d1 = ev(5, "", [["e", "ab" * 32]])
    await store.save(d1)
    d2 = ev(5, "", [["e", d1.id]], T0 + 1)
    assert (await store.save(d2)).removed_ids == []
    assert sorted(await ids_of(store, flt(kinds=[5]))) == sorted([d1.id, d2.id])


async def test_deletion_by_a_up_to_created_at(store: EventStore) -> None:
    old = ev(30617, "v1", [["d", "repo"]], T0)
    theirs = ev(30617, "b", [["d", "repo"]], T0, sk=SK_B)
    await store.save(old)
    await store.save(theirs)
    coord, their_coord = old.coordinate, theirs.coordinate
    deletion = ev(5, "", [["a", coord], ["a", their_coord]], T0 + 10)
    res = await store.save(deletion)
    assert res.removed_ids == [old.id]
    assert await ids_of(store, flt(kinds=[30617])) == [theirs.id]
    assert (await store.save(ev(30617, "v0", [["d", "repo"]], T0 + 10))).status == "deleted"
    newer = ev(30617, "v2", [["d", "repo"]], T0 + 11)
    assert (await store.save(newer)).status == "saved"
    assert sorted(await ids_of(store, flt(kinds=[30617]))) == sorted([newer.id, theirs.id])


async def test_deletion_spares_newer_version(store: EventStore) -> None:
    current = ev(30617, "v2", [["d", "repo"]], T0 + 20)
    await store.save(current)
    res = await store.save(ev(5, "", [["a", current.coordinate or ""]], T0 + 10))
    assert res.removed_ids == []
    assert store.view.has_event(current.id)


# --- queries --------------------------------------------------------------------------------

@pytest.fixture
async def corpus(store: EventStore) -> dict[str, Event]:
    events = {
        "a1": ev(1, "a1", [["p", "p1"], ["t", "git"]], T0 + 1),
        "a2": ev(1, "a2", [["p", "p2"]], T0 + 2),
        "a3": ev(7, "a3", [["e", "cd" * 32], ["t", "git"]], T0 + 3),
        "b1": ev(1, "b1", [["t", "git"], ["t", "nostr"]], T0 + 2, sk=SK_B),
        "b2": ev(1617, "b2", [["a", "30617:x:y"], ["p", "p1"]], T0 + 4, sk=SK_B),
    }
    for e in events.values():
        assert (await store.save(e)).status == "saved"
    return events


async def test_query_fields(store: EventStore, corpus: dict[str, Event]) -> None:
    c = corpus
    pk_b = c["b1"].pubkey
    assert await ids_of(store, flt(ids=[c["a2"].id, c["b2"].id])) == [c["b2"].id, c["a2"].id]
    assert await ids_of(store, flt(authors=[pk_b])) == [c["b2"].id, c["b1"].id]
    assert await ids_of(store, flt(kinds=[7, 1617])) == [c["b2"].id, c["a3"].id]
    assert await ids_of(store, flt(since=T0 + 3)) == [c["b2"].id, c["a3"].id]
    assert await ids_of(store, flt(until=T0 + 1)) == [c["a1"].id]
    assert await ids_of(store, flt(**{"#p": ["p1"]})) == [c["b2"].id, c["a1"].id]
    assert await ids_of(store, flt(**{"#a": ["30617:x:y"]})) == [c["b2"].id]
    assert await ids_of(store, flt(**{"#t": ["git"], "since": T0 + 2, "until": T0 + 2})) == [c["b1"].id]
    assert await ids_of(store, flt(authors=[pk_b], kinds=[1])) == [c["b1"].id]


async def test_query_tag_filters_and_multi_values(store: EventStore, corpus: dict[str, Event]) -> None:
    c = corpus
    # two tag names are ANDed; one event matching two values is returned once
    assert await ids_of(store, flt(**{"#t": ["git"], "#p": ["p1"]})) == [c["a1"].id]
    both = await ids_of(store, flt(**{"#t": ["git", "nostr"]}))
    assert both == [c["a3"].id, c["b1"].id, c["a1"].id]
    assert await ids_of(store, flt(ids=[c["a1"].id, c["a2"].id], **{"#t": ["git"]})) == [c["a1"].id]
    assert await ids_of(store, flt(**{"#x": ["nothing"]})) == []


async def test_query_limit_per_filter_and_or_dedupe(store: EventStore, corpus: dict[str, Event]) -> None:
    c = corpus
    got = await ids_of(store, flt(kinds=[1], limit=1), flt(**{"#p": ["p1"]}, limit=1))
    assert got == [c["b2"].id, min(c["a2"].id, c["b1"].id)]
    # overlapping filters: union without repeats, newest first
    got = await ids_of(store, flt(kinds=[1]), flt(authors=[c["a1"].pubkey]))
    assert got == [c["a3"].id] + sorted([c["a2"].id, c["b1"].id]) + [c["a1"].id]
    assert len(await ids_of(store, flt(), default_limit=2)) == 2
    assert await ids_of(store, flt(limit=0)) == []
    assert await ids_of(store, flt(kinds=[])) == []


async def test_query_ties_by_lowest_id(store: EventStore) -> None:
    same = [ev(1, f"n{i}", t=T0) for i in range(6)]
    for e in same:
        await store.save(e)
    expected = sorted(e.id for e in same)
    assert await ids_of(store, flt(kinds=[1])) == expected
    assert await ids_of(store, flt(kinds=[1], limit=3)) == expected[:3]
    assert await ids_of(store, flt(kinds=[1], limit=2), flt(ids=[expected[5]])) == expected[:2] + [expected[5]]


async def test_query_long_in_lists(store: EventStore, corpus: dict[str, Event]) -> None:
    many = [f"{i:064x}" for i in range(200)] + [corpus["a1"].id]
    assert await ids_of(store, flt(ids=many)) == [corpus["a1"].id]
    tags = [f"v{i}" for i in range(100)] + ["p2"]
    assert await ids_of(store, flt(**{"#p": tags})) == [corpus["a2"].id]


async def test_query_raw_is_canonical_json(store: EventStore, corpus: dict[str, Event]) -> None:
    raws = await store.query_raw([flt(ids=[corpus["a1"].id])], 10)
    assert raws == [corpus["a1"].to_json()]
    Event.from_json(raws[0]).verify()


async def test_count(store: EventStore, corpus: dict[str, Event]) -> None:
    assert await store.count([flt()]) == 5
    assert await store.count([flt(kinds=[1]), flt(**{"#t": ["git"]})]) == 4
    assert await store.count([flt(kinds=[1], limit=1)]) == 3
    assert await store.count([flt(kinds=[])]) == 0
    assert await store.count([]) == 0


# --- durability and failures -----------------------------------------------------------------

async def test_restart_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    settings = Settings(data_dir=tmp_path)
    s = await EventStore.open(path, settings)
    kept, deleted = ev(1, "kept"), ev(1, "gone")
    await s.save(kept)
    await s.save(deleted)
    await s.save(ev(5, "", [["e", deleted.id]], T0 + 1))
    held = ev(30618, "state", [["d", "r"]])
    assert await s.hold(held, "r", 9e9, "client")
    await s.discard(["ef" * 32], "expired")
    await s.add_placeholder("12" * 32, "npub/r.git", "ab" * 20, 100.0)
    await s.close()

    s = await EventStore.open(path, settings)
    try:
        assert kept.id in await ids_of(s, flt(kinds=[1]))
        assert (await s.save(deleted)).status == "deleted"
        assert [h.event for h in await s.held("r")] == [held]
        assert await s.is_expired("ef" * 32)
        assert await s.placeholder("12" * 32) == ("npub/r.git", "ab" * 20)
        assert s.view.get_event(held.id) == held
    finally:
        await s.close()


async def test_concurrent_saves_all_committed(store: EventStore) -> None:
    events = [ev(1, f"c{i}") for i in range(300)]
    results = await asyncio.gather(*(store.save(e) for e in events + events[:50]))
    assert [r.status for r in results].count("saved") == 300
    assert [r.status for r in results].count("duplicate") == 50
    assert await store.count([flt()]) == 300
    batches, writes = store.write_stats
    assert writes == 350 and batches < 350  # they were batched


async def test_full_disk_fails_callers_and_writer_recovers(store: EventStore) -> None:
    await store.save(ev(1, "before"))
    conn = store._writer._conn  # the only way to make SQLite report SQLITE_FULL on demand
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    big = [ev(1, "y" * 20000 + str(i)) for i in range(3)]
    results = await asyncio.gather(*(store.save(e) for e in big), return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results), results
    assert "full" in str(results[0])
    conn.execute("PRAGMA max_page_count=1073741823")
    assert (await store.save(big[0])).status == "saved"
    assert await store.count([flt()]) == 2


async def test_save_after_close_refused(tmp_path: Path) -> None:
    s = await EventStore.open(tmp_path / "e.sqlite3", Settings(data_dir=tmp_path))
    await s.close()
    with pytest.raises(StoreError):
        await s.save(ev())


KILL_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from config.settings import Settings
    from storage.nostr.event import sign_event
    from storage.sqlite.events import EventStore

    async def main():
        path = Path(sys.argv[1])
        store = await EventStore.open(path, Settings(data_dir=path.parent))
        counter = iter(range(10**9))

        async def worker():
            for i in counter:
                event = sign_event("03" * 32, 1, f"n{i}", [["t", "kill"]], 1_700_000_000 + i)
                await store.save(event)
                sys.stdout.write("ID " + event.id + "\\n")
                sys.stdout.flush()

        await asyncio.gather(*(worker() for _ in range(20)))

    asyncio.run(main())
    """
)


def _ack(line: bytes) -> list[str]:
    """The child prints `ID <id>` once save() returned; anything else is a log line."""
    text = line.decode(errors="replace").strip()
    return [text[3:]] if text.startswith("ID ") and len(text) == 67 else []


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "kill.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
    )
    acknowledged: list[str] = []
    watchdog = threading.Timer(60, proc.kill)  # a hung child cannot hang the test
    watchdog.start()
    try:
        assert proc.stdout is not None
        while len(acknowledged) < 400:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged += _ack(line)
        proc.send_signal(signal.SIGKILL)
        for line in proc.stdout.read().splitlines():  # printed before the kill landed
            acknowledged += _ack(line)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=10)
    assert len(acknowledged) >= 400

    async def check() -> set[str]:
        store = await EventStore.open(path, Settings(data_dir=tmp_path))
        try:
            return {e.id for e in await store.query([Filter()], 10**6)}
        finally:
            await store.close()

    stored = asyncio.run(check())
    assert set(acknowledged) <= stored


# --- queries against a reference implementation ----------------------------------------------

def reference(events: list[Event], filters: list[Filter], default_limit: int) -> list[str]:
    """NIP-01 by the book: per filter the newest `limit` (ties: lowest id), union, newest first."""
    chosen: dict[str, Event] = {}
    for f in filters:
        if f.is_empty_result:
            continue
        matching = sorted((e for e in events if f.matches(e)), key=lambda e: (-e.created_at, e.id))
        for e in matching[: f.limit if f.limit is not None else default_limit]:
            chosen[e.id] = e
    return [e.id for e in sorted(chosen.values(), key=lambda e: (-e.created_at, e.id))]


async def test_queries_match_reference(store: EventStore) -> None:
    import random

    rng = random.Random(5)
    keys = ["0%d" % i * 32 for i in range(1, 5)]
    events = [
        ev(
            rng.choice([1, 7, 1617, 30617]),
            f"r{i}",
            [[n, rng.choice(["v1", "v2", "v3"])] for n in rng.sample(["a", "p", "t"], rng.randrange(3))]
            + [["d", f"d{i}"]],
            T0 + rng.randrange(8),  # few timestamps: many ties
            rng.choice(keys),
        )
        for i in range(120)
    ]
    for e in events:
        await store.save(e)
    pubkeys = sorted({e.pubkey for e in events})

    def random_filter() -> Filter:
        obj: dict[str, object] = {}
        if rng.random() < 0.5:
            obj["authors"] = rng.sample(pubkeys, rng.randrange(1, 4))
        if rng.random() < 0.6:
            obj["kinds"] = rng.sample([1, 7, 1617, 30617, 5], rng.randrange(1, 4))
        for name in ("a", "p", "t"):
            if rng.random() < 0.25:
                obj["#" + name] = rng.sample(["v1", "v2", "v3", "zz"], rng.randrange(1, 3))
        if rng.random() < 0.3:
            obj["since"] = T0 + rng.randrange(4)
        if rng.random() < 0.3:
            obj["until"] = T0 + rng.randrange(3, 8)
        if rng.random() < 0.2:
            obj["ids"] = [e.id for e in rng.sample(events, 5)]
        if rng.random() < 0.7:
            obj["limit"] = rng.randrange(0, 12)
        return Filter.from_dict(obj)

    for _ in range(150):
        filters = [random_filter() for _ in range(rng.randrange(1, 4))]
        expected = reference(events, filters, 7)
        assert await ids_of(store, *filters, default_limit=7) == expected, filters
        assert await store.count(filters) == len(reference(events, [replace(f, limit=10**6) for f in filters], 0))
