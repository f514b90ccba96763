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
are signed before any clock starts (in worker processes) and published to A untimed.

    /work/main/.venv/bin/python bench/sync_peers_bench.py --daemons             # daemon to daemon

With `--daemons`, B is a second grasp-relay daemon doing its own GRASP-02 peer sync
(relay/peers/): started with GRASP_SYNC_BOOTSTRAP_RELAYS = A, it discovers the announcements
(which list both relays), fetches the git data from A, then the layered history. A speaks
NIP-77 for the negentropy rows and not (GRASP_NEGENTROPY_ENABLED=false) for the paging rows;
B is empty, or holds a share of A's events published to it beforehand with its peer sync off.
B reaches A through a counting TCP proxy that is A's public address (A's GRASP_DOMAIN), so
the bytes of B's peer connections are counted both ways on the wire, next to B's own
grasp_peer_bytes_total (frames received). Seconds run from B's start until B serves exactly
A's set (COUNT polled, then one negentropy check), and until B's peer traffic falls quiet."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
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

from peer import RelayProcess, free_port, grasp_relay  # noqa: E402
from relay_bench import (  # noqa: E402
    ANNOUNCEMENT_KIND,
    ISSUE_KIND,
    SignJob,
    Workload,
    npub,
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
POLL_S = 0.2  # --daemons: how often B is asked for its COUNT, and its traffic looked at
QUIET_S = 3.0  # --daemons: B's peer traffic silent this long: its history is done


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


# --- daemon to daemon (--daemons) ----------------------------------------------------------------
class CountingProxy:
    """A TCP relay standing for A's public address: B reaches A only through it, so the bytes
    of B's peer connections are counted both ways on the wire (websocket frames with their
    headers), apart from the git fetches that also pass (told by the upgrade request)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.to_a = 0  # B to A, websocket connections only
        self.to_b = 0
        self._server: asyncio.Server | None = None

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def reset(self) -> None:
        self.to_a = self.to_b = 0

    def wire_total(self) -> int:
        return self.to_a + self.to_b

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        first = await reader.read(65536)
        ws = b"upgrade: websocket" in first.lower()
        if ws:
            self.to_a += len(first)
        up_writer.write(first)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, towards_a: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if ws:
                        if towards_a:
                            self.to_a += len(chunk)
                        else:
                            self.to_b += len(chunk)
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        except asyncio.CancelledError:  # the bench is ending with a connection still open
            writer.close()
            up_writer.close()


@dataclass
class DaemonResult:
    method: str
    shared: float
    events_in: int  # B's grasp_peer_events_total{outcome="accepted"}: stored, or already here
    listening_s: float  # B's start to its port open
    converged_s: float  # B's start to B serving exactly A's set
    settled_s: float  # B's start to its peer traffic falling quiet (history done)
    metric_bytes: int  # B's grasp_peer_bytes_total: frames received from A
    to_a: int  # on the wire through the proxy, websocket connections
    to_b: int
    history: dict[str, int]
    disconnects: list[str]  # B's peer_disconnected log lines while it synced (their error)

    @property
    def wire(self) -> int:
        return self.to_a + self.to_b


#: B's settings: the peer and purgatory loops without their production pauses (the bench
#: measures the transfer, not a minute of re-plan debounce), private addresses allowed
B_FAST = {"GRASP_SYNC_ENABLED": "true", "GRASP_OUTBOUND_ALLOW_PRIVATE": "true", "GRASP_PEER_REPLAN_DELAY_S": "0.2",
          "GRASP_SYNC_USER_DELAY_S": "0.2", "GRASP_SYNC_SYNCED_DELAY_S": "0.1", "GRASP_PURGATORY_SWEEP_S": "0.2",
          "GRASP_SYNC_BACKOFF_BASE_S": "0.5", "GRASP_SYNC_BACKOFF_MAX_S": "1", "GRASP_PEER_BACKOFF_S": "0.3",
          "GRASP_FETCH_COOLOFF_S": "0.5", "GRASP_LOG_LEVEL": "info"}


def daemon(name: str, workdir: Path, port: int, env: dict[str, str], domain: str | None = None) -> RelayProcess:
    """This checkout's daemon on a chosen port (a restart keeps its address), its data in
    workdir/data; `domain` is the public address it answers for when that is not its bind."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = relay_process(workdir)
    proc.name, proc.port = name, port
    proc.env.update({"GRASP_BIND": f"127.0.0.1:{port}", "GRASP_DOMAIN": domain or f"127.0.0.1:{port}", **env})
    return proc


def git_repo(workdir: Path) -> tuple[Path, str, dict[str, str]]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_TERMINAL_PROMPT": "0"}
    work = workdir / "git-work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], env=env, check=True)
    (work / "readme").write_text("bench\n")
    subprocess.run(["git", "add", "."], cwd=work, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "bench"], cwd=work, env=env, check=True)
    tip = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, env=env, check=True, capture_output=True,
                         text=True).stdout.strip()
    return work, tip, env


def repo_events(a_domain: str, b_domain: str, tip: str) -> list[str]:
    """Announcements listing both relays (clone and relays), and their states: the same
    signed events on A and, for the 99% rows, on B."""
    owner_secret = secret_for("owner")
    owner = npub(pubkey_of(owner_secret))
    now = int(time.time()) - 5
    jobs: list[SignJob] = []
    for d in REPOS:
        jobs.append((owner_secret, ANNOUNCEMENT_KIND, "", [
            ["d", d], ["name", d], ["clone", f"http://{a_domain}/{owner}/{d}.git", f"http://{b_domain}/{owner}/{d}.git"],
            ["relays", f"ws://{a_domain}", f"ws://{b_domain}"]], now))
        jobs.append((owner_secret, 30618, "", [["d", d], ["refs/heads/main", tip], ["HEAD", "ref: refs/heads/main"]],
                     now))
    return sign_all(jobs)


async def load(relay: RelayProcess, repos: list[str], events: list[str], work: Path, env: dict[str, str]) -> None:
    """Repositories served (events, then the git push), then issues, then the comments."""
    result = await publish(relay.url, repos, 1, 10)
    if result.rejected:
        raise RuntimeError(f"{relay.name} rejected the repositories: {result.reasons}")
    owner = npub(pubkey_of(secret_for("owner")))
    for d in REPOS:
        subprocess.run(["git", "push", "-q", f"http://{relay.domain}/{owner}/{d}.git", "main"], cwd=work, env=env,
                       check=True, capture_output=True)
    parsed = [json.loads(t) for t in events]
    for kind in (ISSUE_KIND, COMMENT_KIND):
        batch = [t for t, e in zip(events, parsed) if e["kind"] == kind]
        result = await publish(relay.url, batch, 2, 200)
        if result.rejected:
            raise RuntimeError(f"{relay.name} rejected {result.rejected}: {result.reasons}")


async def count(url: str) -> int:
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps(["COUNT", "c", {"kinds": KINDS}]))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), STALL_S))
            if msg[0] == "COUNT" and msg[1] == "c":
                return int(msg[2]["count"])
            if msg[0] == "CLOSED":
                raise RuntimeError(f"COUNT refused: {msg}")


async def same_set(url: str, events: list[dict[str, Any]]) -> bool:
    """Does the relay at `url` serve exactly these events (for KINDS)? One negentropy
    reconciliation with the full set: nothing to send either way."""
    wire = await Wire.open(url)
    try:
        init = Initiator(Items.from_pairs((e["created_at"], e["id"]) for e in events), FRAME_LIMIT)
        await wire.send(["NEG-OPEN", "check", {"kinds": KINDS}, init.initiate().hex()])
        have = need = 0
        while True:
            msg = await wire.recv()
            if msg[0] == "NEG-ERR":
                raise RuntimeError(f"NEG-ERR {msg[2:]}")
            if msg[0] != "NEG-MSG":
                continue
            step = init.reconcile(bytes.fromhex(msg[2]))
            have, need = have + len(step.have), need + len(step.need)
            if step.message is None:
                await wire.send(["NEG-CLOSE", "check"])
                return have == 0 and need == 0
            await wire.send(["NEG-MSG", "check", step.message.hex()])
    finally:
        await wire.close()


def scrape(relay: RelayProcess, name: str, **labels: str) -> int:
    with urllib.request.urlopen(f"http://{relay.domain}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    want = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric == name and want <= set(rest.rstrip("}").split(",")):
            total += float(value)
    return int(total)


async def converge(b: RelayProcess, proxy: CountingProxy, parsed: list[dict[str, Any]], method: str,
                   shared: float, timeout: float) -> DaemonResult:
    """Start B (pointed at A) and time it: until it serves A's set, then until its peer
    traffic has been quiet for QUIET_S (its history rounds done, the live subscriptions open)."""
    proxy.reset()
    started = time.perf_counter()
    b.start()
    listening = time.perf_counter() - started
    deadline = started + timeout
    while await count(b.url) != len(parsed):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"B did not converge in {timeout:.0f}s; B's log:\n{b.log_tail(40)}")
        await asyncio.sleep(POLL_S)
    converged = time.perf_counter() - started
    if not await same_set(b.url, parsed):
        raise RuntimeError("B counts A's number of events but not A's set")
    last, quiet_since = proxy.wire_total(), time.perf_counter()
    while time.perf_counter() - quiet_since < QUIET_S and time.perf_counter() < deadline:
        await asyncio.sleep(POLL_S)
        if proxy.wire_total() != last:
            last, quiet_since = proxy.wire_total(), time.perf_counter()
    settled = quiet_since - started
    peer = proxy.domain
    history = {m: scrape(b, "grasp_peer_history_total", peer=peer, method=m) for m in ("negentropy", "req")}
    result = DaemonResult(method, shared, scrape(b, "grasp_peer_events_total", peer=peer, outcome="accepted"),
                          listening, converged, settled, scrape(b, "grasp_peer_bytes_total", peer=peer), proxy.to_a,
                          proxy.to_b, history, disconnects(b))
    b.stop()
    return result


def disconnects(relay: RelayProcess) -> list[str]:
    """The errors of the daemon's peer_disconnected log lines (a rate limit, a timeout)."""
    found = []
    for line in relay.log_path.read_text(errors="replace").splitlines():
        if "peer_disconnected" in line:
            error = line.partition("error=")[2]
            found.append(error.split(" peer=")[0] if error else line[-120:])
    return found


def b_share(parsed: list[dict[str, Any]], shared: float, rng: random.Random) -> list[str]:
    """The ids of a `shared` fraction of A's events for B. What B lacks is drawn from the
    events nothing else tags (comments, and issues no comment answers): B's relay refuses a
    comment whose issue it does not serve, so a share missing a parent could not be loaded."""
    parents = {t[1] for e in parsed if e["kind"] == COMMENT_KIND for t in e["tags"] if t[0] == "E"}
    leaves = [e["id"] for e in parsed if e["id"] not in parents]
    missing = set(rng.sample(leaves, len(parsed) - int(len(parsed) * shared)))
    return [e["id"] for e in parsed if e["id"] not in missing]


async def run_daemons(args: argparse.Namespace) -> list[DaemonResult]:
    """A holds the events (NIP-77 on for the negentropy rows, off for the paging rows); each
    row starts a B that knows only A (GRASP_SYNC_BOOTSTRAP_RELAYS), empty or with a 99%
    share of A's events published to it beforehand while its peer sync was off."""
    started = time.perf_counter()
    events = build_events(args.events)
    parsed = [json.loads(t) for t in events]
    by_id = dict(zip((e["id"] for e in parsed), events))
    print(f"signed {len(events)} events in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    results: list[DaemonResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-daemons-") as tmp:
        root = Path(tmp)
        a_port, b_port = free_port(), free_port()
        proxy = CountingProxy(a_port)
        await proxy.start()
        b_domain = f"127.0.0.1:{b_port}"
        work, tip, git_env = git_repo(root)
        repos = repo_events(proxy.domain, b_domain, tip)
        a_env = {"GRASP_PEER_SYNC_ENABLED": "false", **dict(args.a_env)}  # A is only the source
        a = daemon("a", root / "a", a_port, a_env, proxy.domain).start()
        try:
            t0 = time.perf_counter()
            await load(a, repos, events, work, git_env)
            print(f"published to A in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        finally:
            a.stop()
        preloaded: dict[float, Path] = {}
        rng = random.Random(77)
        for shared in args.shared:
            if shared > 0:  # B's share, published to a B that does not follow anyone yet
                t0 = time.perf_counter()
                share = [by_id[i] for i in b_share(parsed, shared, rng)]
                base = root / f"b-share-{shared}"
                b = daemon("b", base, b_port, {**B_FAST, "GRASP_PEER_SYNC_ENABLED": "false"}).start()
                try:
                    await load(b, repos, share, work, git_env)
                finally:
                    b.stop()
                preloaded[shared] = base
                print(f"published {len(share)} events to B in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        b_env = {**B_FAST, "GRASP_SYNC_BOOTSTRAP_RELAYS": f"ws://{proxy.domain}",
                 # every issue's conversation is asked for (the default follows the newest 10,000)
                 "GRASP_PEER_MAX_ROOTS": str(max(10_000, len(parsed))), **dict(args.b_env)}
        try:
            for name in args.methods:
                nip77 = "true" if name == "negentropy" else "false"
                a = daemon("a", root / "a", a_port, {**a_env, "GRASP_NEGENTROPY_ENABLED": nip77}, proxy.domain).start()
                try:
                    for shared in args.shared:
                        row = root / f"b-{name}-{shared}"
                        if shared in preloaded:
                            shutil.copytree(preloaded[shared], row)
                        b = daemon("b", row, b_port, b_env)
                        try:
                            res = await converge(b, proxy, parsed, name, shared, args.timeout)
                        finally:
                            b.stop()
                        print(f"B by {name:10s} shared {shared:4.0%}: listening {res.listening_s:5.2f} s, "
                              f"converged {res.converged_s:7.2f} s, "
                              f"settled {res.settled_s:7.2f} s, {res.events_in:6d} events in, "
                              f"metric {res.metric_bytes / 1e6:8.2f} MB, wire {res.wire / 1e6:8.2f} MB, "
                              f"history {res.history}, disconnects {res.disconnects}", file=sys.stderr)
                        results.append(res)
                finally:
                    a.stop()
        finally:
            await proxy.stop()
    return results


def print_daemon_table(results: list[DaemonResult], events: int) -> None:
    print(f"\n{events:,} events on daemon A; daemon B started knowing only A, empty or holding a share\n")
    print("| B's history by | shared | events accepted | listening (s) | converged (s) | settled (s) "
          "| A to B, metric | B to A, wire | A to B, wire | total on the wire | history filters | B's disconnects |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        hist = ", ".join(f"{m} {n}" for m, n in r.history.items() if n)
        print(f"| {'NIP-77 negentropy' if r.method == 'negentropy' else 'REQ paging'} | {r.shared:.0%} "
              f"| {r.events_in:,} | {r.listening_s:.2f} | {r.converged_s:.2f} | {r.settled_s:.2f} "
              f"| {r.metric_bytes:,} | {r.to_a:,} "
              f"| {r.to_b:,} | {r.wire / 1e6:.2f} MB | {hist} | {'; '.join(r.disconnects) or 'none'} |")
    by = {(r.method, r.shared): r for r in results}
    for shared in sorted({r.shared for r in results}):
        neg, page = by.get(("negentropy", shared)), by.get(("paging", shared))
        if neg and page:
            print(f"\nshared {shared:.0%}: REQ paging moves {page.wire / neg.wire:.1f}x the bytes of negentropy "
                  f"on the wire ({page.metric_bytes / max(1, neg.metric_bytes):.1f}x by B's metric); "
                  f"negentropy converges in {neg.converged_s:.2f} s")


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


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("GRASP_"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected GRASP_NAME=value")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events on A")
    parser.add_argument("--shared", type=float, nargs="+", default=[0.0, 0.99],
                        help="fractions of A's events B already holds, one run each")
    parser.add_argument("--methods", nargs="+", default=None, choices=["negentropy", "paging", "nostr-sdk"],
                        help="default: all three; with --daemons, negentropy and paging")
    parser.add_argument("--daemons", action="store_true",
                        help="daemon to daemon: a second grasp-relay B syncs from A by its own peer sync")
    parser.add_argument("--timeout", type=float, default=900.0, help="--daemons: longest wait for one row (s)")
    parser.add_argument("--a-env", type=setting, nargs="+", default=[], metavar="GRASP_X=V",
                        help="--daemons: settings for A (e.g. GRASP_MAX_SUBSCRIPTIONS=200)")
    parser.add_argument("--b-env", type=setting, nargs="+", default=[], metavar="GRASP_X=V",
                        help="--daemons: settings for B when it syncs (e.g. GRASP_PEER_FILTER_VALUES=350)")
    args = parser.parse_args(argv)
    if args.methods is None:
        args.methods = ["negentropy", "paging"] if args.daemons else ["negentropy", "paging", "nostr-sdk"]
    elif args.daemons and "nostr-sdk" in args.methods:
        parser.error("--daemons compares B's own negentropy and paging; nostr-sdk is not a daemon here")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if args.daemons:
        print_daemon_table(asyncio.run(run_daemons(args)), args.events)
        return 0
    results = asyncio.run(run(args))
    print_table(results, args.events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
