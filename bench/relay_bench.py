"""Ingest and query benchmark: grasp-relay side by side with PyPI nostr-relay 1.14.

    /work/venv/bin/python bench/relay_bench.py                      # full run
    /work/venv/bin/python bench/relay_bench.py --events 5000 --query-events 20000   # quick
    /work/venv/bin/python bench/relay_bench.py --relays peer        # peer only

Workload (see bench/README.md): NIP-34 issues (kind 1621) that tag a repository announcement
(kind 30617) through `a`, because that is the traffic a GRASP relay accepts. Every event is
generated and signed before any clock starts; only wire time and relay work are measured."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer import RelayProcess, default_grasp_binary, grasp_relay, peer_relay  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from storage.nostr.event import sign_event  # noqa: E402

ISSUE_KIND = 1621
ANNOUNCEMENT_KIND = 30617
OK_STALL_TIMEOUT_S = 60.0


# --- keys and bech32 ------------------------------------------------------------------------
def secret_for(label: str) -> str:
    """Deterministic keys, so runs are comparable; valid for secp256k1 with overwhelming odds."""
    return hashlib.sha256(f"grasp-relay-bench:{label}".encode()).hexdigest()


def pubkey_of(secret_hex: str) -> str:
    from coincurve import PrivateKey

    return PrivateKey(bytes.fromhex(secret_hex)).public_key_xonly.format().hex()


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def npub(pubkey_hex: str) -> str:
    """BIP-173 bech32 with hrp "npub" (NIP-19), for the clone URL path."""
    data, acc, bits = [], 0, 0
    for byte in bytes.fromhex(pubkey_hex):
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrp = "npub"
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    poly = _polymod(expanded + data + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


# --- workload ---------------------------------------------------------------------------------
SignJob = tuple[str, int, str, list[list[str]], int]


def _sign(job: SignJob) -> str:
    secret, kind, content, tags, created_at = job
    return sign_event(secret, kind, content, tags, created_at).to_json()


def sign_all(jobs: list[SignJob], processes: int | None = None) -> list[str]:
    if len(jobs) < 2000:
        return [_sign(j) for j in jobs]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(_sign, jobs, chunksize=500)


@dataclass(frozen=True)
class Workload:
    owner_secret: str
    identifiers: list[str]
    ingest: list[str]  # signed event JSON, relay-independent
    query: list[str]
    query_coords: list[str]
    query_authors: list[str]

    def announcements(self, domain: str) -> list[str]:
        """Announcements name the relay's own host:port, so they are signed per relay."""
        owner = pubkey_of(self.owner_secret)
        now = int(time.time())
        jobs: list[SignJob] = [
            (self.owner_secret, ANNOUNCEMENT_KIND, "", [
                ["d", d], ["name", d], ["description", "bench repository"],
                ["clone", f"http://{domain}/{npub(owner)}/{d}.git"],
                ["relays", f"ws://{domain}"],
            ], now)
            for d in self.identifiers
        ]
        return sign_all(jobs)


async def serve_repos(relay: RelayProcess, work: Workload) -> None:
    """Publish a state per repository and push its one commit, so the announcements are
    served before the issues that tag them arrive."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_TERMINAL_PROMPT": "0"}
    with tempfile.TemporaryDirectory(prefix="bench-work-") as tmp:
        work_dir = Path(tmp)
        subprocess.run(["git", "init", "-q", "-b", "main", str(work_dir)], env=env, check=True)
        (work_dir / "readme").write_text("bench\n")
        subprocess.run(["git", "add", "."], cwd=work_dir, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "bench"], cwd=work_dir, env=env, check=True)
        tip = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work_dir, env=env, check=True, capture_output=True,
                             text=True).stdout.strip()
        now = int(time.time())
        states = sign_all([(work.owner_secret, 30618, "", [["d", d], ["refs/heads/main", tip],
                                                           ["HEAD", "ref: refs/heads/main"]], now)
                           for d in work.identifiers])
        result = await publish(relay.url, states, 1, 50)
        if result.rejected:
            raise RuntimeError(f"{relay.name} rejected the states: {result.reasons}")
        owner = npub(pubkey_of(work.owner_secret))
        for d in work.identifiers:
            subprocess.run(["git", "push", "-q", f"http://{relay.domain}/{owner}/{d}.git", "main"], cwd=work_dir,
                           env=env, check=True, capture_output=True)


def issue_jobs(prefix: str, count: int, coords: list[str], authors: list[str], owner: str) -> list[SignJob]:
    now = int(time.time()) - 60
    rng = random.Random(prefix)
    jobs: list[SignJob] = []
    for i in range(count):
        coord = coords[i % len(coords)]
        secret = authors[(i // len(coords)) % len(authors)]
        created_at = now - rng.randrange(0, 30 * 86400)
        tags = [["a", coord], ["p", owner], ["subject", f"{prefix} issue {i}"]]
        jobs.append((secret, ISSUE_KIND, f"{prefix} issue number {i}: something is broken", tags, created_at))
    return jobs


def build_workload(events: int, query_events: int, repos: int, authors: int) -> Workload:
    owner_secret = secret_for("owner")
    owner = pubkey_of(owner_secret)
    ingest_id = "bench-ingest"
    query_ids = [f"bench-repo-{i:03d}" for i in range(repos)]
    coord = lambda d: f"{ANNOUNCEMENT_KIND}:{owner}:{d}"  # noqa: E731
    ingest_authors = [secret_for(f"ingest-author-{i}") for i in range(authors)]
    query_authors = [secret_for(f"query-author-{i}") for i in range(authors)]
    started = time.perf_counter()
    ingest = sign_all(issue_jobs("ingest", events, [coord(ingest_id)], ingest_authors, owner))
    query = sign_all(issue_jobs("query", query_events, [coord(d) for d in query_ids], query_authors, owner))
    print(f"signed {len(ingest) + len(query)} events in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return Workload(owner_secret, [ingest_id, *query_ids], ingest, query,
                    [coord(d) for d in query_ids], [pubkey_of(s) for s in query_authors])


# --- measurements -----------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


@dataclass
class IngestResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def _publish_on(ws: ClientConnection, events: list[str], window: int, result: IngestResult) -> None:
    """Pipelined: up to `window` EVENTs in flight, each OK frees a slot."""
    slots = asyncio.Semaphore(window)
    sent_at: dict[str, float] = {}
    remaining = len(events)

    async def reader() -> None:
        try:
            await read_oks()
        finally:  # unblock the sender if reading failed (stall, closed connection)
            for _ in range(window + 1):
                slots.release()

    async def read_oks() -> None:
        nonlocal remaining
        while remaining:
            raw = await asyncio.wait_for(ws.recv(), OK_STALL_TIMEOUT_S)
            msg = json.loads(raw)
            if msg[0] != "OK":
                continue
            start = sent_at.pop(msg[1], None)
            if start is None:
                continue
            result.latencies.append(time.perf_counter() - start)
            if msg[2]:
                result.accepted += 1
            else:
                result.rejected += 1
                prefix = str(msg[3]).split(":", 1)[0] if len(msg) > 3 else ""
                result.reasons[prefix] = result.reasons.get(prefix, 0) + 1
            remaining -= 1
            slots.release()

    reading = asyncio.create_task(reader())
    try:
        for text in events:
            await slots.acquire()
            if reading.done():
                break
            event_id = text[7:71]  # to_json starts with {"id":"<64 hex>"
            sent_at[event_id] = time.perf_counter()
            await ws.send(f'["EVENT",{text}]')
            result.sent += 1
        await reading
    finally:
        reading.cancel()


async def publish(url: str, events: list[str], connections: int, window: int) -> IngestResult:
    result = IngestResult()
    chunks = [events[i::connections] for i in range(connections)]
    sockets = [await connect(url, max_size=None, compression=None) for _ in chunks]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(_publish_on(ws, chunk, window, result) for ws, chunk in zip(sockets, chunks)))
        result.seconds = time.perf_counter() - started
    finally:
        for ws in sockets:
            await ws.close()
    return result


@dataclass
class QueryResult:
    latencies: list[float] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)


async def run_queries(url: str, filters: list[dict[str, Any]]) -> QueryResult:
    """Sequential REQ -> EOSE round trips on one connection: latency, not throughput."""
    result = QueryResult()
    async with connect(url, max_size=None, compression=None) as ws:
        for n, flt in enumerate(filters):
            sub = f"q{n}"
            started = time.perf_counter()
            await ws.send(json.dumps(["REQ", sub, flt]))
            count = 0
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), OK_STALL_TIMEOUT_S))
                if msg[0] == "EVENT" and msg[1] == sub:
                    count += 1
                elif msg[0] == "EOSE" and msg[1] == sub:
                    break
                elif msg[0] == "CLOSED" and msg[1] == sub:
                    raise RuntimeError(f"query refused: {msg}")
            result.latencies.append(time.perf_counter() - started)
            result.returned.append(count)
            await ws.send(json.dumps(["CLOSE", sub]))
    return result


# --- one relay ----------------------------------------------------------------------------------
@dataclass
class RelayReport:
    name: str
    ingest: IngestResult
    load: IngestResult
    queries: dict[str, QueryResult]


async def bench_relay(relay: RelayProcess, work: Workload, args: argparse.Namespace) -> RelayReport:
    announcements = await publish(relay.url, work.announcements(relay.domain), 1, 50)
    if announcements.rejected:
        raise RuntimeError(f"{relay.name} rejected the announcements: {announcements.reasons}")
    if relay.name == "grasp-relay":
        # a GRASP relay serves a repository (and stores what tags it) once its git data is
        # there: a state and a push per repository, as owners publish them
        await serve_repos(relay, work)
    ingest = await publish(relay.url, work.ingest, args.connections, args.window)
    load = await publish(relay.url, work.query, args.connections, args.window)
    rng = random.Random(7)
    by_coord = [{"#a": [rng.choice(work.query_coords)], "limit": 500} for _ in range(args.queries)]
    by_author = [{"authors": [rng.choice(work.query_authors)], "kinds": [ISSUE_KIND], "limit": 500}
                 for _ in range(args.queries)]
    # the same coordinates with a small limit: the index lookup without 500 frames to send
    by_coord_small = [{**flt, "limit": 10} for flt in by_coord]
    queries = {"#a": await run_queries(relay.url, by_coord),
               "authors+kinds": await run_queries(relay.url, by_author),
               "#a limit 10": await run_queries(relay.url, by_coord_small)}
    return RelayReport(relay.name, ingest, load, queries)


def run_one(kind: str, work: Workload, args: argparse.Namespace) -> RelayReport:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        relay = peer_relay(Path(tmp)) if kind == "peer" else grasp_relay(Path(tmp), args.grasp_binary)
        with relay:
            print(f"{relay.name}: listening on {relay.url}", file=sys.stderr)
            try:
                return asyncio.run(bench_relay(relay, work, args))
            except Exception:
                print(f"--- {relay.name} log tail ---\n{relay.log_tail()}", file=sys.stderr)
                raise


# --- report -------------------------------------------------------------------------------------
def rows(report: RelayReport) -> dict[str, float]:
    ms = lambda xs, p: percentile(xs, p) * 1000  # noqa: E731
    out = {
        "ingest events/s": report.ingest.rate,
        "ingest OK p50 ms": ms(report.ingest.latencies, 50),
        "ingest OK p99 ms": ms(report.ingest.latencies, 99),
        "bulk load events/s": report.load.rate,
    }
    for name, q in report.queries.items():
        out[f"REQ {name} p50 ms"] = ms(q.latencies, 50)
        out[f"REQ {name} p99 ms"] = ms(q.latencies, 99)
        out[f"REQ {name} events/query"] = statistics.fmean(q.returned) if q.returned else 0.0
    return out


def print_table(reports: list[RelayReport]) -> None:
    table = {r.name: rows(r) for r in reports}
    names = [r.name for r in reports]
    metrics = list(next(iter(table.values())))
    header = f"{'metric':<28}" + "".join(f"{n:>14}" for n in names)
    both = len(names) == 2
    if both:
        header += f"{'grasp better by':>17}"
    print(header)
    print("-" * len(header))
    for metric in metrics:
        line = f"{metric:<28}" + "".join(f"{table[n][metric]:>14.2f}" for n in names)
        if both and "events/query" not in metric:
            peer, ours = table[names[0]][metric], table[names[1]][metric]
            higher_is_better = metric.endswith("/s")
            ratio = (ours / peer if higher_is_better else peer / ours) if peer and ours else float("nan")
            line += f"{ratio:>16.2f}x"
        print(line)
    for r in reports:
        for label, res in (("ingest", r.ingest), ("bulk load", r.load)):
            if res.rejected:
                print(f"note: {r.name} {label}: {res.rejected} rejected {res.reasons}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20000, help="ingest: issues sent while timed")
    p.add_argument("--connections", type=int, default=4, help="websocket connections for ingest")
    p.add_argument("--window", type=int, default=200, help="EVENTs in flight per connection")
    p.add_argument("--query-events", type=int, default=100000, help="issues loaded before the queries")
    p.add_argument("--repos", type=int, default=100, help="repositories the query issues tag")
    p.add_argument("--authors", type=int, default=50, help="authors of the query issues")
    p.add_argument("--queries", type=int, default=300, help="REQs per query shape")
    p.add_argument("--relays", default="peer,grasp", help="comma list of: peer, grasp")
    p.add_argument("--grasp-binary", type=Path, default=default_grasp_binary())
    p.add_argument("--json", type=Path, help="also write the numbers to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.relays.split(",") if k.strip()]
    work = build_workload(args.events, args.query_events, args.repos, args.authors)
    reports = [run_one(kind, work, args) for kind in kinds]
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps({r.name: rows(r) for r in reports}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
