"""Load and abuse: N well-behaved subscribers and M hostile connections against one relay,
grasp-relay side by side with the nostr-relay peer of bench/relay_bench.py.

    /work/main/.venv/bin/python bench/load_bench.py                         # 1,000 subscribers, 20 hostile
    /work/main/.venv/bin/python bench/load_bench.py --subscribers 5000 --relays grasp
    /work/main/.venv/bin/python bench/load_bench.py --seconds 10 --subscribers 200   # quick

Phases, each `--seconds` long, on one relay at a time (fresh data dir):
  1. calm:    the subscribers hold a live REQ for kind 10317; a publisher sends one new event
              every `--interval` s; a prober sends REQ {"kinds":[10317],"limit":10} every 200 ms
              on its own connection.
  2. hostile: the same, plus `--hostile` connections: a third never read and keep asking for
              the preloaded large events (`--big` events of 15 kB, under the peer's 16 kB cap),
              a third re-send one REQ id in a loop without reading, a third send garbage.
Reported per phase: how many subscribers still hold their subscription, live delivery
latency (publish -> each subscriber's receipt) p50/p99 and the share delivered, the prober's
REQ -> EOSE p50/p99, and the relay's RSS (all its processes) at start, max and end.

Clients run in `--workers` processes (a 2-core machine cannot run 1,000 websocket clients
in one Python process and measure them too); every process shares the clock, so latencies
are receipt time minus the publish time carried in the event."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import websockets
from peer import RelayProcess, default_grasp_binary, grasp_relay, peer_relay

from storage.nostr.event import sign_event

KIND = 10317  # accepted by grasp-relay from anyone (the user's GRASP list), replaceable per author
BIG_CONTENT = 15_000
TIMEOUT_S = 30.0


def secret(label: str) -> str:
    import hashlib

    return hashlib.sha256(f"load-bench:{label}".encode()).hexdigest()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# --- subscribers (worker processes) ------------------------------------------------------------
def subscriber_worker(url: str, count: int, start_at: float, stop_at: float, phase_edge: float,
                      out: multiprocessing.Queue[dict[str, Any]]) -> None:
    asyncio.run(_subscribers(url, count, start_at, stop_at, phase_edge, out))


async def _subscribers(url: str, count: int, start_at: float, stop_at: float, phase_edge: float,
                       out: multiprocessing.Queue[dict[str, Any]]) -> None:
    latencies: dict[str, list[float]] = {"calm": [], "hostile": []}
    received: dict[str, int] = {"calm": 0, "hostile": 0}
    held_at_edge = 0
    alive = [True] * count

    async def one(i: int) -> None:
        try:
            async with websockets.connect(url, max_size=None, open_timeout=TIMEOUT_S, ping_interval=None) as ws:
                await ws.send(json.dumps(["REQ", "live", {"kinds": [KIND], "since": int(start_at) - 1}]))
                while time.time() < stop_at:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), max(0.1, stop_at - time.time()))
                    except TimeoutError:
                        break
                    msg = json.loads(raw)
                    if msg[0] == "CLOSED":
                        alive[i] = False
                        return
                    if msg[0] != "EVENT":
                        continue
                    try:
                        sent = json.loads(msg[2]["content"])["t"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    now = time.time()
                    phase = "calm" if sent < phase_edge else "hostile"
                    latencies[phase].append(now - sent)
                    received[phase] += 1
        except (TimeoutError, OSError, websockets.WebSocketException):
            alive[i] = False

    async def watch_edge() -> None:
        nonlocal held_at_edge
        await asyncio.sleep(max(0.0, phase_edge - time.time()))
        held_at_edge = sum(alive)

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    edge = asyncio.create_task(watch_edge())
    await asyncio.gather(*tasks, edge)
    # a sample keeps the queue small; percentiles of 20k samples are as good as of 1M
    sample = {k: random.sample(v, min(len(v), 20_000)) for k, v in latencies.items()}
    out.put({"latencies": sample, "received": received, "held_calm": held_at_edge, "held_end": sum(alive)})


# --- hostile connections (one process) ------------------------------------------------------------
def hostile_worker(url: str, count: int, start_at: float, stop_at: float,
                   out: multiprocessing.Queue[dict[str, Any]]) -> None:
    asyncio.run(_hostile(url, count, start_at, stop_at, out))


async def _hostile(url: str, count: int, start_at: float, stop_at: float,
                   out: multiprocessing.Queue[dict[str, Any]]) -> None:
    import socket

    stats = {"non_reader": 0, "re_req": 0, "garbage": 0, "closed_by_relay": 0, "refused": 0}
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def connect_slow() -> Any:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = url.removeprefix("ws://").split(":")
        sock.connect((host, int(port)))
        sock.setblocking(False)
        return await websockets.connect(url, sock=sock, max_size=None, max_queue=1, open_timeout=TIMEOUT_S,
                                        ping_interval=None)

    async def one(i: int) -> None:
        role = ("non_reader", "re_req", "garbage")[i % 3]
        rng = random.Random(i)
        try:
            ws = await (connect_slow() if role != "garbage" else
                        websockets.connect(url, max_size=None, open_timeout=TIMEOUT_S, ping_interval=None))
        except (TimeoutError, OSError, websockets.WebSocketException):
            stats["refused"] += 1
            return
        stats[role] += 1
        n = 0
        try:
            while time.time() < stop_at:
                n += 1
                if role == "non_reader":
                    await ws.send(json.dumps(["REQ", f"big{n % 40}", {"kinds": [KIND], "limit": 5000}]))
                    await asyncio.sleep(0.05)
                elif role == "re_req":
                    await ws.send(json.dumps(["REQ", "same", {"kinds": [KIND], "limit": 5000}]))
                    await asyncio.sleep(0.02)
                else:
                    junk = rng.choice([
                        "not json", "[" * 50_000, json.dumps(["EVENT", {"id": "00" * 32}]),
                        json.dumps(["REQ", "x", {"since": 2**70}]), '["REQ","\\ud800",{}]',
                        json.dumps(["COUNT", "c", {"kinds": [KIND]}]), os.urandom(200).hex(),
                    ])
                    await ws.send(junk)
                    if n % 20 == 0:
                        while True:  # the garbage sender reads its answers now and then
                            try:
                                await asyncio.wait_for(ws.recv(), 0.001)
                            except TimeoutError:
                                break
                    await asyncio.sleep(0.005)
        except websockets.ConnectionClosed:
            stats["closed_by_relay"] += 1
        except (OSError, websockets.WebSocketException):
            stats["closed_by_relay"] += 1
        finally:
            try:
                await asyncio.wait_for(ws.close(), 1)
            except Exception as exc:  # noqa: BLE001 - a full socket may never close cleanly
                stats.setdefault(f"unclosed_{type(exc).__name__}", 0)

    await asyncio.gather(*(one(i) for i in range(count)))
    out.put({"hostile": stats})


# --- the relay's side: publisher, prober, RSS --------------------------------------------------------
@dataclass
class Probe:
    req: dict[str, list[float]] = field(default_factory=lambda: {"calm": [], "hostile": []})
    failures: list[str] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=lambda: {"calm": 0, "hostile": 0})


async def publisher(url: str, start_at: float, stop_at: float, edge: float, interval: float, probe: Probe) -> None:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    async with websockets.connect(url, max_size=None, open_timeout=TIMEOUT_S) as ws:
        n = 0
        while time.time() < stop_at - 2 * interval:
            n += 1
            sent = time.time()
            event = sign_event(secret(f"pub{n % 500}"), KIND, json.dumps({"t": sent}),
                               [["g", f"wss://{n}.example"]], int(sent))
            await ws.send(json.dumps(["EVENT", event.to_dict()]))
            probe.published["calm" if sent < edge else "hostile"] += 1
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                    if msg[0] == "OK" and msg[1] == event.id:
                        break
            except TimeoutError:
                probe.failures.append("publisher: no OK")
                return
            await asyncio.sleep(max(0.0, interval - (time.time() - sent)))


async def prober(url: str, start_at: float, stop_at: float, edge: float, probe: Probe) -> None:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    async with websockets.connect(url, max_size=None, open_timeout=TIMEOUT_S) as ws:
        n = 0
        while time.time() < stop_at:
            n += 1
            sub = f"p{n}"
            started = time.time()
            await ws.send(json.dumps(["REQ", sub, {"kinds": [KIND], "limit": 10}]))
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                    if msg[0] in ("EOSE", "CLOSED") and msg[1] == sub:
                        break
            except TimeoutError:
                probe.failures.append("prober: no EOSE")
                return
            probe.req["calm" if started < edge else "hostile"].append(time.time() - started)
            await ws.send(json.dumps(["CLOSE", sub]))
            await asyncio.sleep(0.2)  # 300 REQs a minute: within the default per-connection limit


def relay_rss_mb(pid: int) -> float:
    """RSS of the relay and its children (gunicorn runs a worker process)."""
    total = 0
    pids = [pid]
    try:
        for entry in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(entry))
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def preload(url: str, count: int) -> None:
    """Large events for the non-readers to ask for; signed by as many authors (replaceable)."""
    async with websockets.connect(url, max_size=None, open_timeout=TIMEOUT_S) as ws:
        ids = set()
        for i in range(count):
            event = sign_event(secret(f"big{i}"), KIND, "x" * BIG_CONTENT, [["g", f"wss://big{i}.example"]],
                               int(time.time()) - 3600)
            ids.add(event.id)
            await ws.send(json.dumps(["EVENT", event.to_dict()]))
        while ids:
            msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            if msg[0] == "OK":
                ids.discard(msg[1])


# --- one relay --------------------------------------------------------------------------------------
def bench_relay(relay: RelayProcess, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(preload(relay.url, args.big))
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    setup = max(10.0, args.subscribers / 100)  # time for every subscriber to connect
    start_at = time.time() + setup
    edge = start_at + args.seconds
    stop_at = edge + args.seconds
    per = [args.subscribers // args.workers + (1 if i < args.subscribers % args.workers else 0)
           for i in range(args.workers)]
    procs = [ctx.Process(target=subscriber_worker, args=(relay.url, n, start_at, stop_at, edge, out)) for n in per]
    if args.hostile:
        procs.append(ctx.Process(target=hostile_worker, args=(relay.url, args.hostile, edge, stop_at, out)))
    for proc in procs:
        proc.start()
    rss: list[tuple[float, float]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            assert relay.process is not None
            rss.append((time.time(), relay_rss_mb(relay.process.pid)))
            stop_sampling.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    probe = Probe()

    async def drive() -> None:
        await asyncio.gather(publisher(relay.url, start_at, stop_at, edge, args.interval, probe),
                             prober(relay.url, start_at, stop_at, edge, probe))

    asyncio.run(drive())
    results = [out.get(timeout=TIMEOUT_S * 4) for _ in procs]
    for proc in procs:
        proc.join(30)
    stop_sampling.set()
    sampler.join(5)
    return summarise(relay.name, args, probe, results, rss, start_at, edge, stop_at)


def summarise(name: str, args: argparse.Namespace, probe: Probe, results: list[dict[str, Any]],
              rss: list[tuple[float, float]], start_at: float, edge: float, stop_at: float) -> dict[str, Any]:
    subs = [r for r in results if "latencies" in r]
    hostile: dict[str, int] = next((r["hostile"] for r in results if "hostile" in r), {})
    report: dict[str, Any] = {"relay": name, "subscribers": args.subscribers, "attackers": hostile,
                              "failures": probe.failures}
    for phase, (lo, hi) in (("calm", (start_at, edge)), ("hostile", (edge, stop_at))):
        lat = [x for r in subs for x in r["latencies"][phase]]
        got = sum(r["received"][phase] for r in subs)
        held = sum(r["held_calm"] if phase == "calm" else r["held_end"] for r in subs)
        want = probe.published[phase] * args.subscribers
        in_phase = [m for t, m in rss if lo <= t <= hi] or [0.0]
        report[phase] = {
            "held": held, "delivered_share": round(got / want, 4) if want else float("nan"),
            "delivery_p50_ms": round(percentile(lat, 50) * 1000, 2),
            "delivery_p99_ms": round(percentile(lat, 99) * 1000, 2),
            "req_p50_ms": round(percentile(probe.req[phase], 50) * 1000, 2),
            "req_p99_ms": round(percentile(probe.req[phase], 99) * 1000, 2),
            "reqs": len(probe.req[phase]),
            "rss_start_mb": round(in_phase[0], 1), "rss_max_mb": round(max(in_phase), 1),
            "rss_end_mb": round(in_phase[-1], 1),
        }
    return report


def start(kind: str, workdir: Path, args: argparse.Namespace) -> RelayProcess:
    if kind == "peer":
        return peer_relay(workdir)
    relay = grasp_relay(workdir, args.grasp_binary)
    # the per-connection rate limits stay at their defaults (the hostile clients meet them, the
    # well-behaved ones stay within them); only the connection caps are lifted, since every
    # client here comes from 127.0.0.1
    for name in ("GRASP_EVENTS_PER_MINUTE_PER_CONN", "GRASP_EVENTS_PER_MINUTE_PER_IP",
                 "GRASP_REQS_PER_MINUTE_PER_CONN"):
        relay.env.pop(name, None)
    many = str(max(10_000, args.subscribers * 2))
    relay.env.update({"GRASP_MAX_CONNECTIONS": many, "GRASP_MAX_CONNECTIONS_PER_IP": many,
                      "GRASP_PEER_SYNC_ENABLED": "false", "GRASP_INTEGRITY_CHECK_ON_START": "false"})
    for item in args.set:
        key, _, value = item.partition("=")
        relay.env[f"GRASP_{key.upper()}"] = value
    return relay


def print_table(reports: list[dict[str, Any]]) -> None:
    rows = ["held", "delivered_share", "delivery_p50_ms", "delivery_p99_ms", "req_p50_ms", "req_p99_ms",
            "reqs", "rss_start_mb", "rss_max_mb", "rss_end_mb"]
    header = f"{'':<22}" + "".join(f"{r['relay'] + ' ' + phase:>24}" for r in reports for phase in ("calm", "hostile"))
    print(header)
    for row in rows:
        print(f"{row:<22}" + "".join(f"{r[phase].get(row, float('nan')):>24}" for r in reports
                                     for phase in ("calm", "hostile")))
    for r in reports:
        print(f"{r['relay']}: attackers {r['attackers']}, failures {r['failures']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--hostile", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between published events")
    p.add_argument("--big", type=int, default=300, help="large events preloaded for the non-readers")
    p.add_argument("--workers", type=int, default=4, help="subscriber processes")
    p.add_argument("--relays", default="grasp,peer", help="comma list of: grasp, peer")
    p.add_argument("--grasp-binary", type=Path, default=default_grasp_binary())
    p.add_argument("--set", action="append", default=[], help="extra grasp-relay setting, name=value")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    reports = []
    for kind in [k.strip() for k in args.relays.split(",") if k.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"load-{kind}-") as tmp:
            relay = start(kind, Path(tmp), args)
            with relay:
                print(f"{relay.name} on {relay.url}", file=sys.stderr)
                try:
                    reports.append(bench_relay(relay, args))
                except Exception as exc:  # noqa: BLE001 - the peer may not survive: report and go on
                    print(f"{relay.name} failed: {exc!r}\n{relay.log_tail()}", file=sys.stderr)
                    reports.append({"relay": relay.name, "error": repr(exc)})
    good = [r for r in reports if "error" not in r]
    if good:
        print_table(good)
    for r in reports:
        if "error" in r:
            print(f"{r['relay']}: did not complete: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
