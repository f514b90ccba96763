"""Query cost on a large store: the scans of issue 10, before and after the tag index work.

    /work/main/.venv/bin/python bench/query_bench.py                    # 1M events, 10k repos
    /work/main/.venv/bin/python bench/query_bench.py --events 100000    # quick
    /work/main/.venv/bin/python bench/query_bench.py --db /tmp/big.sqlite3 --keep
    /work/main/.venv/bin/python bench/query_bench.py --daemon           # also REQ round trips

1. Generates a store of `--events` NIP-34-like events over `--repos` repositories by writing
   SQLite directly (the same tables and columns the relay writes, through the relay's own
   schema and `index_tags`; events are well-formed but unsigned, as the store never checks
   signatures), with the secondary indexes built once at the end. 1M events take about a
   minute instead of hours through the websocket.
2. Opens it with the relay's own `open_writer` (which migrates an older schema in place; the
   time is reported) and times, on a read-only connection, the SQL the relay runs for each
   filter shape: p50 and max wall time, rows returned and SQLite VM steps (counted with a
   progress handler), so the query budget (`GRASP_QUERY_MAX_STEPS`) can be read off.
3. With `--daemon`, starts the real daemon on the file and times REQ -> EOSE (or CLOSED)
   and COUNT round trips for the same filters.

The event mix (see `generate`): 62% issues (1621) tagging a repo (`a`), its owner (`p`) and
`t` labels, nearly all `bug`; 25% comments (1111) on issues (`E`, `e`, `K`, `k`, `a`, `p`),
none labelled; 10% patches (1617, `a`, `p`, some `t=root`); 3% statuses (1630-1632). So
`{"#t":["bug"],"kinds":[1111]}` matches nothing while `#t bug` holds ~600k rows."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.sqlite import schema
from storage.sqlite.query import select_count, select_raw
from storage.sqlite.write_ops import index_tags

BASE_TIME = 1_700_000_000
SPAN_S = 365 * 86400
PROGRESS_EVERY = 1000  # VM instructions per progress-handler call when counting steps


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _raw(event_id: str, pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str) -> str:
    return json.dumps({"id": event_id, "pubkey": pubkey, "created_at": created_at, "kind": kind,
                       "tags": tags, "content": content, "sig": "0" * 128},
                      ensure_ascii=False, separators=(",", ":"))


def generate(path: Path, events: int, repos: int, seed: int = 10) -> dict[str, Any]:
    """Write the store; returns the facts the query cases need (a hot repo, an author...)."""
    rng = random.Random(seed)
    owners = [_hex(f"owner{i}") for i in range(max(1, repos // 5))]
    users = [_hex(f"user{i}") for i in range(5000)]
    repo_list = [(owners[i % len(owners)], f"repo-{i:05d}") for i in range(repos)]
    coords = [f"30617:{owner}:{d}" for owner, d in repo_list]
    conn = schema.open_writer(path, "NORMAL")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    tag_columns = [row[1] for row in conn.execute("PRAGMA table_info(tags)")]
    indexes = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name IN ('events','tags') "
        "AND sql IS NOT NULL")]
    for name in indexes:  # built once at the end: far faster than maintaining them per row
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    event_rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []
    issues: list[str] = []
    seq = 0

    def add(pubkey: str, kind: int, tags: list[list[str]], content: str, d: str | None = None) -> str:
        nonlocal seq
        seq += 1
        created_at = BASE_TIME + rng.randrange(SPAN_S)
        event_id = _hex(f"ev{seed}:{seq}")
        event_rows.append((seq, event_id, pubkey, created_at, kind, d,
                           _raw(event_id, pubkey, created_at, kind, tags, content)))
        event = Event(event_id, pubkey, created_at, kind, tuple(tuple(t) for t in tags), content, "0" * 128)
        values = {"event_seq": seq, "created_at": created_at, "kind": kind, "pubkey": pubkey}
        for name, value in index_tags(event):
            values["name"], values["value"] = name, value
            tag_rows.append(tuple(values.get(col) for col in tag_columns))
        return event_id

    def flush() -> None:
        conn.executemany("INSERT INTO events(seq, id, pubkey, created_at, kind, d, raw) VALUES (?,?,?,?,?,?,?)",
                         event_rows)
        conn.executemany(f"INSERT INTO tags({','.join(tag_columns)}) VALUES ({','.join('?' * len(tag_columns))})",
                         tag_rows)
        event_rows.clear()
        tag_rows.clear()

    for (owner, d), coord in zip(repo_list, coords):
        add(owner, 30617, [["d", d], ["name", d], ["description", "generated repository"],
                           ["clone", f"https://git.example.org/{owner[:8]}/{d}.git"],
                           ["relays", "wss://git.example.org"], ["t", "python"]], "", d)
    started = time.perf_counter()
    for i in range(max(0, events - repos)):
        r = rng.randrange(repos) if rng.random() > 0.05 else 0  # repo 0 is hot
        owner, coord = repo_list[r][0], coords[r]
        author = rng.choice(users)
        roll = rng.random()
        if roll < 0.62 or not issues:
            labels = [["t", "bug"]] if rng.random() < 0.97 else [["t", "enhancement"]]
            if rng.random() < 0.1:
                labels.append(["t", rng.choice(["ui", "docs", "perf", "security"])])
            issues.append(add(author, 1621, [["a", coord], ["p", owner], ["subject", f"issue {i}"], *labels],
                              f"issue {i}: something is broken when doing thing number {i % 977}"))
            if len(issues) > 50_000:
                issues = issues[-20_000:]
        elif roll < 0.87:
            target = rng.choice(issues)
            add(author, 1111, [["E", target], ["K", "1621"], ["e", target], ["k", "1621"],
                               ["a", coord], ["p", owner]], f"comment {i}: me too, on version {i % 31}")
        elif roll < 0.97:
            tags = [["a", coord], ["p", owner], ["subject", f"[PATCH] change {i}"]]
            if rng.random() < 0.3:
                tags.append(["t", "root"])
            add(author, 1617, tags, f"From {i:040x} Mon Sep 17 00:00:00 2001\n" + "diff line\n" * 8)
        else:
            target = rng.choice(issues)
            add(owner, 1630 + rng.randrange(3), [["e", target, "", "root"], ["a", coord], ["p", author]], "")
        if len(event_rows) >= 20_000:
            flush()
    flush()
    conn.execute("COMMIT")
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    conn.executescript(schema.SCHEMA)  # re-creates the dropped indexes (IF NOT EXISTS)
    indexed = time.perf_counter() - started
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    print(f"generated {seq} events in {inserted:.1f}s, indexes in {indexed:.1f}s, "
          f"{path.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    return facts(path)


def facts(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    hot = conn.execute("SELECT value FROM tags WHERE name='a' GROUP BY value ORDER BY count(*) DESC LIMIT 1"
                       ).fetchone()[0]
    cold = conn.execute("SELECT value FROM tags WHERE name='a' AND value LIKE '%repo-00777'").fetchone()[0]
    author = conn.execute("SELECT pubkey FROM events WHERE kind=1621 LIMIT 1").fetchone()[0]
    owner = hot.split(":")[1]
    conn.close()
    return {"hot_repo": hot, "cold_repo": cold, "author": author, "owner": owner}


def cases(f: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (REQ or COUNT, filter)."""
    return {
        "#t bug + kinds 1111, limit 50": ("REQ", {"#t": ["bug"], "kinds": [1111], "limit": 50}),
        "COUNT #t bug": ("COUNT", {"#t": ["bug"]}),
        "#t bug, limit 50": ("REQ", {"#t": ["bug"], "limit": 50}),
        "#t bug + authors, limit 50": ("REQ", {"#t": ["bug"], "authors": [f["author"]], "limit": 50}),
        "#a hot repo + kinds 1617, limit 50": ("REQ", {"#a": [f["hot_repo"]], "kinds": [1617], "limit": 50}),
        "#a repo + kinds 1621/1617, limit 500": ("REQ", {"#a": [f["cold_repo"]], "kinds": [1621, 1617],
                                                        "limit": 500}),
        "#p owner + kinds 1630-1632": ("REQ", {"#p": [f["owner"]], "kinds": [1630, 1631, 1632], "limit": 100}),
        "authors, limit 50": ("REQ", {"authors": [f["author"]], "limit": 50}),
        "authors + kinds 1111": ("REQ", {"authors": [f["author"]], "kinds": [1111], "limit": 50}),
        "kinds 30617, limit 500": ("REQ", {"kinds": [30617], "limit": 500}),
        "{} limit 50": ("REQ", {"limit": 50}),
        "COUNT #a hot repo": ("COUNT", {"#a": [f["hot_repo"]]}),
        "COUNT #a hot repo + kinds 1621": ("COUNT", {"#a": [f["hot_repo"]], "kinds": [1621]}),
        "COUNT kinds 1111": ("COUNT", {"kinds": [1111]}),
    }


def run_sql(conn: sqlite3.Connection, sql: str, params: list[object]) -> tuple[float, int, int]:
    steps = 0

    def progress() -> int:
        nonlocal steps
        steps += PROGRESS_EVERY
        return 0

    conn.set_progress_handler(progress, PROGRESS_EVERY)
    started = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    elapsed = time.perf_counter() - started
    conn.set_progress_handler(None, 0)
    return elapsed, (rows[0][0] if sql.startswith("SELECT count(*)") else len(rows)), steps


def bench_sql(path: Path, f: dict[str, Any], rounds: int, plans: bool = False
              ) -> list[tuple[str, float, float, int, int]]:
    conn = schema.open_reader(path, same_thread=True)
    out = []
    for name, (verb, raw) in cases(f).items():
        flt = Filter.from_dict(raw, 5000)
        def run(sql: str, params: list, conn=conn):  # type: ignore[no-untyped-def]
            return conn.execute(sql, params).fetchall()
        started = time.perf_counter()
        built = select_count([flt], run) if verb == "COUNT" else select_raw([flt], 500, run)
        planned_ms = (time.perf_counter() - started) * 1000
        assert built is not None
        if plans:
            detail = "; ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + built[0], built[1]))
            print(f"  {name}: planned in {planned_ms:.2f} ms: {detail}", file=sys.stderr)
        samples, count, steps = [], 0, 0
        for i in range(rounds):
            elapsed, count, steps = run_sql(conn, *built)
            samples.append(elapsed)
            if i == 0 and elapsed > 1.0:  # a scan: a few samples say enough
                rounds = min(rounds, 3)
        out.append((name, statistics.median(samples) * 1000, max(samples) * 1000, count, steps))
    conn.close()
    return out


async def bench_daemon(path: Path, f: dict[str, Any], rounds: int) -> list[tuple[str, float, float, int, str]]:
    from tests.daemon import Client, Daemon

    daemon = Daemon(path.parent, {"GRASP_SYNC_ENABLED": "false", "GRASP_PEER_SYNC_ENABLED": "false",
                                  "GRASP_INTEGRITY_CHECK_ON_START": "false",
                                  "GRASP_REQS_PER_MINUTE_PER_CONN": str(10**9)})
    if path.name != "events.sqlite3":
        raise SystemExit("--daemon needs the store at <dir>/events.sqlite3 (the daemon's own name)")
    daemon.start()
    out = []
    try:
        client = await Client.connect(daemon.ws_url)
        for n, (name, (verb, raw)) in enumerate(cases(f).items()):
            samples, count, answer = [], 0, ""
            for i in range(rounds):
                sub = f"b{n}-{i}"
                started = time.perf_counter()
                await client.send([verb, sub, raw])
                count = 0
                while True:
                    msg = await client.recv(timeout=120)
                    if msg[1] != sub:
                        continue
                    if msg[0] == "EVENT":
                        count += 1
                        continue
                    answer = msg[0] if msg[0] != "CLOSED" else f"CLOSED {msg[2][:40]}"
                    if msg[0] == "COUNT":
                        count = msg[2]["count"]
                    break
                samples.append(time.perf_counter() - started)
                if verb == "REQ" and answer == "EOSE":
                    await client.send(["CLOSE", sub])
                if i == 0 and samples[0] > 1.0:
                    rounds = min(rounds, 3)
            out.append((name, statistics.median(samples) * 1000, max(samples) * 1000, count, answer))
        await client.close()
    finally:
        daemon.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repos", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--db", type=Path, help="store file; generated if absent, reused if present")
    p.add_argument("--keep", action="store_true", help="keep the generated store (with --db it always is)")
    p.add_argument("--daemon", action="store_true", help="also time REQ/COUNT round trips through the daemon")
    p.add_argument("--plans", action="store_true", help="print SQLite's query plan of each case")
    args = p.parse_args(argv)
    tmp = None
    if args.db is None:
        tmp = tempfile.mkdtemp(prefix="query-bench-")
        args.db = Path(tmp) / "data" / "events.sqlite3"
    if args.db.exists():
        print(f"reusing {args.db}", file=sys.stderr)
    else:
        generate(args.db, args.events, args.repos)
    started = time.perf_counter()
    schema.open_writer(args.db, "NORMAL").close()  # migrates an older schema in place
    print(f"open_writer (schema check / migration): {time.perf_counter() - started:.1f}s, "
          f"file {args.db.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    f = facts(args.db)
    print(f"{'case':<40}{'p50 ms':>10}{'max ms':>10}{'rows':>9}{'VM steps':>13}")
    for name, p50, worst, count, steps in bench_sql(args.db, f, args.rounds, args.plans):
        print(f"{name:<40}{p50:>10.2f}{worst:>10.2f}{count:>9}{steps:>13,}")
    if args.daemon:
        print(f"\nthrough the daemon (REQ -> EOSE/CLOSED, COUNT)\n{'case':<40}{'p50 ms':>10}{'max ms':>10}"
              f"{'rows':>9}  answer")
        for name, p50, worst, count, answer in asyncio.run(bench_daemon(args.db, f, args.rounds)):
            print(f"{name:<40}{p50:>10.2f}{worst:>10.2f}{count:>9}  {answer}")
    if tmp is not None and not args.keep:
        import shutil

        shutil.rmtree(tmp)
    elif tmp is not None:
        print(f"kept {args.db}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
