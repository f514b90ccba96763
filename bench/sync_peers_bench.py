"""Peer convergence benchmark (issue 13): a side B catching up with a grasp-relay daemon A that
holds N repo events, by NIP-77 negentropy and by REQ paging, fresh (0% shared) and again when
99% is already shared.

    /work/main/.venv/bin/python bench/sync_peers_bench.py                       # 50,000 events
    /work/main/.venv/bin/python bench/sync_peers_bench.py --events 5000 --shared 0 0.99   # quick

Side A is a real daemon (`python -m relay` of this checkout) holding the events: issues
(kind 1621, `a` tag) and NIP-22 comments on them (kind 1111, `E` and `e` tags) on three repos
it serves. Side B is a local set, a share of A's events, reconciled over one websocket:

- negentropy: our own sans-IO `storage.nostr.negentropy.Initiator` speaks NEG-OPEN / NEG-MSG
  with the relay until reconciled, then B fetches what it lacks with REQs by id;
- REQ paging: B pages through the filter by `until`, with the relay's `max_limit` (from its
  NIP-11 document), until a page brings nothing new;
- nostr-sdk (rust-nostr's `Client.sync`, direction down, B's share saved in its LMDB first):
  the peer implementation, its bytes from its relay connection stats.

Bytes are websocket frame payloads both ways (no compression: the relay's default), counted
on B's side; seconds are wall time from the first frame to the last event B lacked. Events
are signed before any clock starts (in worker processes) and published to A untimed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer import RelayProcess, grasp_relay  # noqa: E402
from relay_bench import (  # noqa: E402
    ANNOUNCEMENT_KIND,
    ISSUE_KIND,
    SignJob,
    Workload,
    pubkey_of,
    publish,
    secret_for,
    serve_repos,
    sign_all,
)
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from storage.nostr.negentropy import Initiator, Items  # noqa: E402

COMMENT_KIND = 1111
KINDS = [ISSUE_KIND, COMMENT_KIND]
REPOS = ["peers-a", "peers-b", "peers-c"]
FRAME_LIMIT = 64 * 1024  # our initiator's messages, as the relay's default limit
IDS_PER_REQ = 500
STALL_S = 60.0


# --- workload -----------------------------------------------------------------------------------
def build_events(count: int) -> list[str]:
    """Signed event JSON: 4 issues to 1 comment, spread over 60 days, three repos."""
    owner_secret = secret_for("owner")
    owner = pubkey_of(owner_secret)
    authors = [secret_for(f"peers-author-{i}") for i in range(20)]
    rng = random.Random(13)
    base = int(time.time()) - 60 * 86400
    issues = count * 4 // 5
    jobs: list[SignJob] = []
    for i in range(issues):
        coord = f"{ANNOUNCEMENT_KIND}:{owner}:{REPOS[i % len(REPOS)]}"
        tags = [["a", coord], ["p", owner], ["subject", f"peers issue {i}"]]
        jobs.append((authors[i % len(authors)], ISSUE_KIND, f"issue {i}: it breaks", tags,
                     base + rng.randrange(0, 59 * 86400)))
    signed = sign_all(jobs)
    parents = [json.loads(text) for text in signed[: max(1, count - issues)]]
    comments: list[SignJob] = []
    for i in range(count - issues):
        parent = parents[i % len(parents)]
        # NIP-22 on an issue: root and parent are the issue; no repo coordinate (the relay
        # takes it for tagging a served issue)
        tags = [["E", parent["id"], "", parent["pubkey"]], ["K", str(ISSUE_KIND)], ["P", parent["pubkey"]],
                ["e", parent["id"], "", parent["pubkey"]], ["k", str(ISSUE_KIND)], ["p", parent["pubkey"]]]
        comments.append((authors[(i + 7) % len(authors)], COMMENT_KIND, f"comment {i}", tags,
                         parent["created_at"] + 1 + rng.randrange(0, 86400)))
    return signed + sign_all(comments)


# --- the wire ---------------------------------------------------------------------------------
class Wire:
    """One websocket with both directions' payload bytes counted."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sent = 0
        self.received = 0

    @classmethod
    async def open(cls, url: str) -> Wire:
        return cls(await connect(url, max_size=None, compression=None))

    async def send(self, message: list[Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        self.sent += len(text.encode())
        await self.ws.send(text)

    async def recv(self) -> list[Any]:
        raw = await asyncio.wait_for(self.ws.recv(), STALL_S)
        self.received += len(raw if isinstance(raw, bytes) else raw.encode())
        return json.loads(raw)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Result:
    method: str
    shared: float
    moved: int
    seconds: float
    sent: int
    received: int
    rounds: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received


async def fetch_ids(wire: Wire, ids: list[str], into: dict[str, dict[str, Any]]) -> None:
    """REQ by id, a few subscriptions in flight, until every asked event arrived."""
    batches = [ids[i:i + IDS_PER_REQ] for i in range(0, len(ids), IDS_PER_REQ)]
    open_subs: set[str] = set()
    pending = list(enumerate(batches))
    while pending or open_subs:
        while pending and len(open_subs) < 4:
            n, batch = pending.pop(0)
            sub = f"ids{n}"
            open_subs.add(sub)
            await wire.send(["REQ", sub, {"ids": batch, "limit": len(batch)}])
        msg = await wire.recv()
        if msg[0] == "EVENT":
            into[msg[2]["id"]] = msg[2]
        elif msg[0] in ("EOSE", "CLOSED") and msg[1] in open_subs:
            open_subs.discard(msg[1])
            if msg[0] == "EOSE":
                await wire.send(["CLOSE", msg[1]])
            else:
                raise RuntimeError(f"relay closed {msg[1]}: {msg[2:]}")


async def by_negentropy(url: str, local: list[dict[str, Any]], shared: float) -> tuple[Result, set[str]]:
    have = {e["id"]: e for e in local}
    wire = await Wire.open(url)
    try:
        started = time.perf_counter()
        init = Initiator(Items.from_pairs((e["created_at"], e["id"]) for e in local), FRAME_LIMIT)
        await wire.send(["NEG-OPEN", "neg", {"kinds": KINDS}, init.initiate().hex()])
        rounds, need = 0, []
        while True:
            msg = await wire.recv()
            if msg[0] == "NEG-ERR":
                raise RuntimeError(f"NEG-ERR {msg[2:]}")
            if msg[0] != "NEG-MSG":
                continue
            rounds += 1
            step = init.reconcile(bytes.fromhex(msg[2]))
            need += [i.hex() for i in step.need]
            if step.message is None:
                await wire.send(["NEG-CLOSE", "neg"])
                break
            await wire.send(["NEG-MSG", "neg", step.message.hex()])
        got: dict[str, dict[str, Any]] = {}
        await fetch_ids(wire, need, got)
        seconds = time.perf_counter() - started
    finally:
        await wire.close()
    have.update(got)
    return Result("negentropy (our Initiator)", shared, len(got), seconds, wire.sent, wire.received, rounds), set(have)


async def by_paging(url: str, local: list[dict[str, Any]], shared: float, limit: int) -> tuple[Result, set[str]]:
    have = {e["id"] for e in local}
    wire = await Wire.open(url)
    moved = pages = 0
    try:
        started = time.perf_counter()
        until: int | None = None
        while True:
            page: dict[str, Any] = {"kinds": KINDS, "limit": limit}
            if until is not None:
                page["until"] = until
            pages += 1
            await wire.send(["REQ", "page", page])
            new = 0
            oldest: int | None = None
            while True:
                msg = await wire.recv()
                if msg[0] == "EVENT" and msg[1] == "page":
                    event = msg[2]
                    oldest = event["created_at"] if oldest is None else min(oldest, event["created_at"])
                    if event["id"] not in have:
                        have.add(event["id"])
                        new += 1
                        moved += 1
                elif msg[0] == "EOSE" and msg[1] == "page":
                    await wire.send(["CLOSE", "page"])
                    break
                elif msg[0] == "CLOSED":
                    raise RuntimeError(f"relay closed the page: {msg[2:]}")
            # `until` is inclusive: the oldest second comes again, so a page that brings only
            # what is known (and nothing older) ends the walk
            if oldest is None or (oldest == until and new == 0):
                break
            until = oldest
        seconds = time.perf_counter() - started
    finally:
        await wire.close()
    return Result(f"REQ paging by until (limit {limit})", shared, moved, seconds, wire.sent, wire.received,
                  pages), have


async def by_nostr_sdk(url: str, local: list[dict[str, Any]], shared: float, workdir: Path) -> tuple[Result, int]:
    import nostr_sdk
    from nostr_sdk import ClientBuilder, Filter, Kind, NostrLmdb, RelayUrl, SyncDirection, SyncOptions

    nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
    db = await NostrLmdb.open(str(workdir / f"lmdb-{shared}"))
    for event in local:
        await db.save_event(nostr_sdk.Event.from_json(json.dumps(event)))
    sdk = ClientBuilder().database(db).build()
    await sdk.add_relay(RelayUrl.parse(url))
    await sdk.connect()
    try:
        relay = await sdk.relay(RelayUrl.parse(url))
        before = relay.stats()
        sent0, recv0 = before.bytes_sent(), before.bytes_received()
        started = time.perf_counter()
        output = await sdk.sync(Filter().kinds([Kind(k) for k in KINDS]),
                                opts=SyncOptions().direction(SyncDirection.DOWN))
        seconds = time.perf_counter() - started
        if output.failed:
            raise RuntimeError(f"nostr-sdk sync failed: {output.failed}")
        after = relay.stats()
        count = await db.count(Filter().kinds([Kind(k) for k in KINDS]))
        result = Result("nostr-sdk Client.sync (down)", shared, len(output.report.received), seconds,
                        after.bytes_sent() - sent0, after.bytes_received() - recv0)
    finally:
        await sdk.disconnect()
        nostr_sdk.uniffi_set_event_loop(None)  # type: ignore[arg-type]
    return result, count


# --- running it ---------------------------------------------------------------------------------
def relay_process(workdir: Path) -> RelayProcess:
    """This checkout's daemon (not whatever is installed), rate limits lifted as for every bench."""
    proc = grasp_relay(workdir)
    proc.argv = [sys.executable, "-m", "relay"]
    proc.env["PYTHONPATH"] = str(ROOT)
    return proc


def max_limit(relay: RelayProcess) -> int:
    req = urllib.request.Request(f"http://{relay.domain}/", headers={"Accept": "application/nostr+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.load(resp)["limitation"]["max_limit"])


async def run(args: argparse.Namespace) -> list[Result]:
    started = time.perf_counter()
    events = build_events(args.events)
    parsed = [json.loads(text) for text in events]
    all_ids = {e["id"] for e in parsed}
    print(f"signed {len(events)} events in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        workdir = Path(tmp)
        relay = relay_process(workdir).start()
        try:
            owner_secret = secret_for("owner")
            work = Workload(owner_secret, REPOS, [], [], [], [])
            published = await publish(relay.url, work.announcements(relay.domain), 1, 10)
            if published.rejected:
                raise RuntimeError(f"announcements rejected: {published.reasons}")
            await serve_repos(relay, work)
            t0 = time.perf_counter()
            issues = [t for t, e in zip(events, parsed) if e["kind"] == ISSUE_KIND]
            comments = [t for t, e in zip(events, parsed) if e["kind"] == COMMENT_KIND]
            for batch in (issues, comments):  # comments after the issues they answer
                result = await publish(relay.url, batch, 2, 200)
                if result.rejected:
                    raise RuntimeError(f"relay rejected {result.rejected}: {result.reasons}")
            print(f"published to A in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            limit = max_limit(relay)
            rng = random.Random(77)
            for shared in args.shared:
                local = rng.sample(parsed, int(len(parsed) * shared))
                for name in args.methods:
                    if name == "negentropy":
                        res, got = await by_negentropy(relay.url, local, shared)
                        ok = got == all_ids
                    elif name == "paging":
                        res, got = await by_paging(relay.url, local, shared, limit)
                        ok = got == all_ids
                    else:
                        res, count = await by_nostr_sdk(relay.url, local, shared, workdir)
                        ok = count == len(all_ids)
                    if not ok:
                        raise RuntimeError(f"{res.method} at {shared:.0%} did not converge")
                    print(f"{res.method:34s} shared {shared:4.0%}: {res.moved:6d} events, {res.seconds:7.2f} s, "
                          f"{res.total / 1e6:8.2f} MB", file=sys.stderr)
                    results.append(res)
        finally:
            relay.stop()
    return results


def print_table(results: list[Result], events: int) -> None:
    print(f"\n{events:,} events on A; B holds a share of them\n")
    print("| method | shared | events moved | seconds | bytes B to A | bytes A to B | total |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.method} | {r.shared:.0%} | {r.moved:,} | {r.seconds:.2f} | {r.sent:,} | {r.received:,} "
              f"| {r.total / 1e6:.2f} MB |")
    by = {(r.method.split()[0], r.shared): r for r in results}
    for shared in sorted({r.shared for r in results}):
        neg, page = by.get(("negentropy", shared)), by.get(("REQ", shared))
        if neg and page:
            print(f"\nshared {shared:.0%}: REQ paging moves {page.total / neg.total:.1f}x the bytes of negentropy; "
                  f"negentropy converges in {neg.seconds:.2f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events on A")
    parser.add_argument("--shared", type=float, nargs="+", default=[0.0, 0.99],
                        help="fractions of A's events B already holds, one run each")
    parser.add_argument("--methods", nargs="+", default=["negentropy", "paging", "nostr-sdk"],
                        choices=["negentropy", "paging", "nostr-sdk"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = asyncio.run(run(args))
    print_table(results, args.events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
