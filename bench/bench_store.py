"""Event store throughput and query latency.

    /work/venv/bin/python bench/bench_store.py [--events 100000] [--callers 1000]

1. Saves N signed events (prepared beforehand) from many concurrent callers, each awaiting
   `store.save`, and reports events/s (commit included).
2. Times indexed queries with limit 500 over the stored events (query_raw, thread hop
   included) and reports p50/p95.

Event mix: NIP-34-like: 200 authors, 2000 repositories; kinds 1 (with `a` and `p` tags),
1617/1618 patches/PRs with `a` tags, 7 reactions with `e` tags; one hot author (10%) and one
hot repository (5%) so that `limit 500` bites."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import Settings  # noqa: E402
from storage.nostr.event import Event  # noqa: E402
from storage.nostr.filters import Filter  # noqa: E402
from storage.sqlite.events import EventStore  # noqa: E402


def make_events(n: int, seed: int = 7) -> tuple[list[Event], list[str], list[str]]:
    """Unsigned-but-well-formed events (the store does not verify signatures), so building
    100k takes a second instead of a minute."""
    rng = random.Random(seed)
    authors = [hashlib.sha256(f"a{i}".encode()).hexdigest() for i in range(200)]
    coords = [f"30617:{rng.choice(authors)}:repo-{i}" for i in range(2000)]
    events: list[Event] = []
    for i in range(n):
        # a hot author (10% of events) and a hot repository (5%) so that limit 500 bites
        author = authors[0] if rng.random() < 0.1 else rng.choice(authors)
        kind = rng.choice((1, 1, 1617, 1618, 7))
        coord = coords[0] if rng.random() < 0.05 else rng.choice(coords)
        tags: list[tuple[str, ...]] = [("a", coord), ("p", rng.choice(authors))]
        if kind == 7 and events:
            tags.append(("e", rng.choice(events).id))
        created = 1_700_000_000 + rng.randrange(10_000_000)
        eid = hashlib.sha256(f"e{i}{seed}".encode()).hexdigest()
        events.append(Event(eid, author, created, kind, tuple(tags), f"content {i}", "0" * 128))
    return events, authors, coords


async def bench_saves(store: EventStore, events: list[Event], callers: int) -> float:
    queue = iter(events)

    async def caller() -> None:
        for event in queue:
            await store.save(event)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(events) / (time.perf_counter() - start)


async def time_query(store: EventStore, filters: list[Filter], rounds: int) -> tuple[float, float, int]:
    samples = []
    count = 0
    for _ in range(rounds):
        start = time.perf_counter()
        count = len(await store.query_raw(filters, 500))
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95)] * 1000, count


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=1000)
    args = parser.parse_args()
    events, authors, coords = make_events(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = await EventStore.open(settings.db_path, settings)
        rate = await bench_saves(store, events, args.callers)
        batches, writes = store.write_stats
        print(f"saves: {rate:,.0f} events/s ({args.events} events, {args.callers} callers, "
              f"{writes / max(batches, 1):.0f} per transaction)")
        rng = random.Random(1)
        cases = {
            "#a hot repo": [Filter(tags=(("a", frozenset([coords[0]])),), limit=500)],
            "#a hot repo + kinds": [Filter(kinds=frozenset([1617, 1618]), tags=(("a", frozenset([coords[0]])),),
                                           limit=500)],
            "hot author+kind": [Filter(authors=frozenset([authors[0]]), kinds=frozenset([1]), limit=500)],
            "#a one repo": [Filter(tags=(("a", frozenset([rng.choice(coords)])),), limit=500)],
            "#a + kinds": [Filter(kinds=frozenset([1617, 1618]), tags=(("a", frozenset([coords[3]])),), limit=500)],
            "authors+kinds": [Filter(authors=frozenset([authors[5]]), kinds=frozenset([1]), limit=500)],
            "authors(3)+kinds(2)": [Filter(authors=frozenset(authors[:3]), kinds=frozenset([1, 7]), limit=500)],
            "kinds": [Filter(kinds=frozenset([1617]), limit=500)],
            "two filters": [
                Filter(authors=frozenset([authors[9]]), kinds=frozenset([1]), limit=500),
                Filter(tags=(("a", frozenset([coords[9]])),), limit=500),
            ],
        }
        for name, filters in cases.items():
            p50, p95, n = await time_query(store, filters, 200)
            print(f"query {name:22s} p50 {p50:.3f} ms  p95 {p95:.3f} ms  ({n} rows)")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
