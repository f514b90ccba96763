"""Sync throughput benchmark: how close does the purgatory sync come to the floor its own
throttle sets, and does the Nostr side stay responsive meanwhile?

500 repository identifiers are spread over 5 real git HTTP upstreams (tests/upstream.py, each
on its own port, i.e. its own domain). For each identifier the relay gets an announcement whose
clone tag lists the relay and the upstream, plus a state whose commit only the upstream has.
The relay must fetch every commit, politely (per-domain concurrency and per-window limits), and
release all 1,000 events. Measured:

- time until every event was released (counted on one live subscription, no polling), against
  the lower bound the throttle settings allow;
- per upstream, from the server's side: fetch sessions, peak concurrent requests and the most
  fetches that started within any window (must never exceed the limits);
- REQ round-trips of a separate websocket client (own process) during the whole sync;
- relay RSS (VmRSS sampled, VmHWM at the end).

The default window is scaled down (6 s instead of 60 s, same 30 fetches per window) so a run
takes well under a minute; `--window-s 60` gives the production timing (~4 min).

    /work/venv/bin/python bench/sync_bench.py [--identifiers 500] [--upstreams 5]
        [--concurrent 5] [--per-minute 30] [--window-s 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.daemon import ALICE, Client, Daemon, announcement, issue, npub_of, pubkey_of, state  # noqa: E402
from tests.gitutil import GIT_ENV  # noqa: E402
from tests.upstream import Upstream  # noqa: E402

# The bench client sends far more than any real client may: lift the per-client limits only.
CLIENT_LIMITS = {
    "GRASP_EVENTS_PER_MINUTE_PER_CONN": "1000000",
    "GRASP_EVENTS_PER_MINUTE_PER_IP": "1000000",
    "GRASP_REQS_PER_MINUTE_PER_CONN": "1000000",
}


# --- websocket latency probe (own process, so the bench's own work cannot skew it) -----------


def _probe_main(url: str, filt: dict[str, Any], interval_s: float, stop: Any, ready: Any, out: Any) -> None:
    async def run() -> list[tuple[float, float]]:
        client = await Client.connect(url)
        samples: list[tuple[float, float]] = []
        n = 0
        try:
            ready.set()
            next_at = time.perf_counter()
            while not stop.is_set():
                n += 1
                sub = f"p{n}"
                started = time.perf_counter()
                await client.send(["REQ", sub, filt])
                while True:
                    msg = await client.recv(30)
                    if msg[0] in ("EOSE", "CLOSED") and msg[1] == sub:
                        break
                samples.append((started, (time.perf_counter() - started) * 1000))
                await client.send(["CLOSE", sub])
                next_at += interval_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        finally:
            await client.close()
        return samples

    out.put(asyncio.run(run()))


class LatencyProbe:
    """REQ -> EOSE round-trips every `interval_s` on one websocket, in a separate process.
    `stop()` returns (perf_counter at send, round-trip ms) pairs; perf_counter is the system's
    monotonic clock, so the times compare with the caller's."""

    def __init__(self, url: str, filt: dict[str, Any] | None = None, interval_s: float = 0.02) -> None:
        ctx = mp.get_context("spawn")
        self._stop, self._ready, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_probe_main, daemon=True,
                                 args=(url, filt or {"kinds": [1621], "limit": 10}, interval_s,
                                       self._stop, self._ready, self._out))

    def start(self) -> "LatencyProbe":
        self._proc.start()
        if not self._ready.wait(30):
            self._proc.kill()
            raise RuntimeError("latency probe did not connect")
        return self

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        try:
            samples = self._out.get(timeout=30)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
        return samples


def percentiles(samples: list[tuple[float, float]], since: float = float("-inf"),
                until: float = float("inf")) -> dict[str, float]:
    """n/p50/p99/max of the round-trips sent within [since, until)."""
    ordered = sorted(ms for at, ms in samples if since <= at < until)
    if not ordered:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {"n": len(ordered), "p50": pct(0.50), "p99": pct(0.99), "max": ordered[-1]}


# --- process memory ---------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    """A kB field of /proc/<pid>/status (VmRSS now, VmHWM peak); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    """CPU seconds the process (and the children it has waited for) used so far: less
    sensitive than wall time to whatever else the machine is running; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


# --- upstream repositories, made cheaply --------------------------------------------------------


def build_pool(pool: Path, count: int) -> list[str]:
    """One bare repo holding a base commit and `count` one-commit branches on top of it, written
    by a single `git fast-import`; returns each branch's commit id."""
    subprocess.run(["git", "init", "-q", "--bare", str(pool)], check=True, env={**os.environ, **GIT_ENV})
    stream = bytearray()
    base = b"shared base\n"
    stream += b"commit refs/heads/base\nmark :1\ncommitter b <b@b> 1700000000 +0000\ndata 4\nbase"
    stream += b"\nM 100644 inline README\ndata %d\n%s\n" % (len(base), base)
    for i in range(count):
        body = f"identifier {i}\n".encode()
        msg = f"commit {i}".encode()
        stream += b"commit refs/heads/r%d\nmark :%d\ncommitter b <b@b> %d +0000\n" % (i, i + 2, 1700000001 + i)
        stream += b"data %d\n%s\nfrom :1\nM 100644 inline id.txt\ndata %d\n%s\n" % (len(msg), msg, len(body), body)
    marks = pool / "marks"
    subprocess.run(["git", "fast-import", "--quiet", f"--export-marks={marks}"], cwd=pool, input=bytes(stream),
                   check=True, env={**os.environ, **GIT_ENV})
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    return [by_mark[f":{i + 2}"] for i in range(count)]


def write_bare_repo(path: Path, pool: Path, tip: str) -> None:
    """A bare repo whose only ref is main -> `tip`, borrowing objects from the pool through
    objects/info/alternates: a few small files instead of three git processes per repo."""
    (path / "objects" / "info").mkdir(parents=True)
    (path / "objects" / "pack").mkdir()
    (path / "refs" / "heads").mkdir(parents=True)
    (path / "refs" / "tags").mkdir()
    (path / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
        "[uploadpack]\n\tallowTipSHA1InWant = true\n\tallowReachableSHA1InWant = true\n")
    (path / "objects" / "info" / "alternates").write_text(str(pool / "objects") + "\n")
    (path / "refs" / "heads" / "main").write_text(tip + "\n")


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Plan:
    identifiers: int
    upstreams: int
    concurrent: int
    per_window: int
    window_s: float
    user_delay_s: float

    def per_domain(self) -> list[int]:
        return [len(range(u, self.identifiers, self.upstreams)) for u in range(self.upstreams)]

    def bound_s(self, fetch_s: float) -> float:
        """Floor for the busiest domain: `ceil(n/P)-1` full windows must pass before the last
        batch may start (a slot is dated by its fetch's end, so each window also waits for one
        fetch), then the last batch of `r` fetches needs `ceil(r/C)` rounds of one fetch."""
        n = max(self.per_domain())
        windows = math.ceil(n / self.per_window) - 1
        last = n - windows * self.per_window
        return self.user_delay_s + windows * (self.window_s + fetch_s) + math.ceil(last / self.concurrent) * fetch_s


@dataclass
class Result:
    publish_s: float = 0.0
    released_s: float = 0.0
    released: int = 0
    expected: int = 0
    first_release_s: float = 0.0
    fetch_s: float = 0.0
    bound_s: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)
    latency_publish: dict[str, float] = field(default_factory=dict)  # while EVENTs went in
    latency_sync: dict[str, float] = field(default_factory=dict)  # after the last OK
    rss_kb_max: int = 0
    hwm_kb: int = 0
    cpu_s: float = 0.0
    upstreams: list[dict[str, Any]] = field(default_factory=list)
    last_batch_s: float = 0.0  # when the states (the last batch) started to go out
    started_mono: float = 0.0  # time.monotonic() at the first EVENT, the upstreams' clock


def time_one_fetch(up: Upstream, name: str, tip: str, scratch: Path) -> float:
    """Seconds for one libgit2 fetch by id (the relay's own fetch function, run here), the
    per-fetch cost in the bound; median of 5 into fresh quarantine repos."""
    from purgatory.fetch.objects import fetch_oids

    times = []
    for i in range(5):
        dest = scratch / f"calib{i}.git"
        started = time.perf_counter()
        outcome = asyncio.run(fetch_oids(up.url_for(name), dest, {tip}, 30))
        times.append(time.perf_counter() - started)
        assert outcome.ok, outcome
        shutil.rmtree(dest)
    return statistics.median(times)


def _seed_repo(path: Path) -> str:
    """A one-commit repository to push, so the probe's issues have a served repo to tag."""
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], env=env, check=True)
    (path / "seed.txt").write_text("seed\n")
    subprocess.run(["git", "add", "."], cwd=path, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "seed"], cwd=path, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


async def publish_all(url: str, *batches: list[Any], marks: list[float] | None = None) -> float:
    """Send each batch of EVENTs on one connection, pipelined, and wait for all its OKs before
    the next batch; returns seconds. Batches because the relay checks the EVENTs of one
    connection concurrently: a state sent right behind its announcement may be checked first
    and refused ("send the announcement first")."""
    client = await Client.connect(url)
    try:
        started = time.perf_counter()
        for events in batches:
            if marks is not None:
                marks.append(time.perf_counter())
            pending = {e.id for e in events}
            sender = asyncio.create_task(_send_all(client, events))
            while pending:
                msg = await client.recv(60)
                if msg[0] == "OK":
                    if not msg[2]:
                        raise RuntimeError(f"event refused: {msg}")
                    pending.discard(msg[1])
            await sender
        return time.perf_counter() - started
    finally:
        await client.close()


async def _send_all(client: Client, events: list[Any]) -> None:
    for event in events:
        await client.ws.send(json.dumps(["EVENT", event.to_dict()]))


def start_py_spy(pid: int, out: Path, gil_only: bool = False) -> subprocess.Popen[bytes]:
    """Sample the relay (all threads, native frames off) into collapsed stacks at `out`."""
    exe = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
    extra = ["--gil"] if gil_only else []  # only samples of the thread holding the GIL
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "250", "--threads", "--format", "raw", *extra,
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the clock starts
    return proc


async def measure(daemon: Daemon, batches: list[list[Any]], ids: set[str], timeout_s: float,
                  probe_interval_s: float, profile: Path | None = None, upstream_nice: int = 0,
                  py_spy_gil: bool = False) -> Result:
    result = Result(expected=len(ids))
    listener = await Client.connect(daemon.ws_url)
    await listener.send(["REQ", "live", {"kinds": [30617, 30618], "authors": [pubkey_of(ALICE)]}])
    while (first := await listener.recv())[0] != "EOSE":  # the served seed repo's events
        if first[0] != "EVENT":
            raise RuntimeError(f"live subscription did not start: {first}")
    pid = daemon.proc.pid  # type: ignore[union-attr]
    probe = LatencyProbe(daemon.ws_url, interval_s=probe_interval_s).start()
    if upstream_nice:
        # diagnostic: from here on this process (the upstream servers' threads and the git
        # processes they spawn, the publisher) runs at a lower CPU priority than the relay
        # and the probe, which were started before; it tells how much of the REQ tail is
        # the upstreams competing for the same cores
        for tid in os.listdir("/proc/self/task"):  # Linux niceness is per thread
            os.setpriority(os.PRIO_PROCESS, int(tid), upstream_nice)
    await asyncio.sleep(1.0)  # a quiet baseline before the storm
    stop_rss = asyncio.Event()

    async def sample_rss() -> None:
        while not stop_rss.is_set():
            result.rss_kb_max = max(result.rss_kb_max, proc_status_kb(pid, "VmRSS"))
            try:
                await asyncio.wait_for(stop_rss.wait(), 0.5)
            except TimeoutError:
                pass

    rss_task = asyncio.create_task(sample_rss())
    profiler = start_py_spy(pid, profile, py_spy_gil) if profile else None
    result.started_mono = time.monotonic()
    started = time.perf_counter()
    marks: list[float] = []
    publisher = asyncio.create_task(publish_all(daemon.ws_url, *batches, marks=marks))
    seen: set[str] = set()
    try:
        while seen != ids:
            left = timeout_s - (time.perf_counter() - started)
            if left <= 0:
                break
            try:
                msg = await listener.recv(left)
            except TimeoutError:
                break
            if msg[0] == "EVENT" and msg[1] == "live" and msg[2]["id"] in ids:
                if not seen:
                    result.first_release_s = time.perf_counter() - started
                seen.add(msg[2]["id"])
        result.released_s = time.perf_counter() - started
        result.publish_s = await publisher
        result.last_batch_s = marks[-1] - started
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        samples = probe.stop()
        result.latency = percentiles(samples, started)
        if result.publish_s:
            result.latency_publish = percentiles(samples, started, started + result.publish_s)
            result.latency_sync = percentiles(samples, started + result.publish_s)
        stop_rss.set()
        await rss_task
        result.hwm_kb = proc_status_kb(pid, "VmHWM")
        result.cpu_s = proc_cpu_s(pid)
        await listener.close()
    result.released = len(seen)
    return result


def run(args: argparse.Namespace) -> Result:
    plan = Plan(args.identifiers, args.upstreams, args.concurrent, args.per_minute, args.window_s, args.user_delay)
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        tips = build_pool(root / "pool.git", plan.identifiers + 1)
        ups = [Upstream(root / f"up{u}").start() for u in range(plan.upstreams)]
        daemon: Daemon | None = None
        try:
            names = [f"sb{i:04}" for i in range(plan.identifiers)]
            for i, name in enumerate(names):
                write_bare_repo(ups[i % plan.upstreams].root / f"{name}.git", root / "pool.git", tips[i])
            write_bare_repo(ups[0].root / "calib.git", root / "pool.git", tips[-1])
            fetch_s = time_one_fetch(ups[0], "calib", tips[-1], root)
            for up in ups:
                up.reset_counters()
            print(f"setup: {plan.identifiers} repos on {plan.upstreams} upstreams in {time.perf_counter() - t:.1f} s; "
                  f"one fetch by id: {fetch_s * 1000:.0f} ms")
            env = {
                **CLIENT_LIMITS,
                "GRASP_LOG_LEVEL": args.log_level,
                "GRASP_SYNC_USER_DELAY_S": str(plan.user_delay_s),
                "GRASP_OUTBOUND_ALLOW_PRIVATE": "true",  # the upstreams are on 127.0.0.1
                "GRASP_THROTTLE_MAX_CONCURRENT": str(plan.concurrent),
                "GRASP_THROTTLE_MAX_PER_MINUTE": str(plan.per_window),
                "GRASP_THROTTLE_WINDOW_S": str(plan.window_s),
                "GRASP_PURGATORY_EXPIRY_S": str(max(1800, args.timeout * 2)),
                **{f"GRASP_{k.strip().upper()}": v for k, _, v in (kv.partition("=") for kv in args.set)},
            }
            daemon = Daemon(root / "data", env).start()
            anns = [announcement(ALICE, daemon.domain, name, extra_clone=[ups[i % plan.upstreams].url_for(name)])
                    for i, name in enumerate(names)]
            states = [state(ALICE, name, {"refs/heads/main": tips[i]}) for i, name in enumerate(names)]
            # issues the probe's query finds; they anchor only on a served repository, so the
            # seed repository is announced, stated and pushed first
            owner = pubkey_of(ALICE)
            seed = [issue(ALICE, owner, "probe-seed", f"seed {k}") for k in range(20)]
            seed_tip = _seed_repo(root / "seed-work")
            asyncio.run(publish_all(daemon.ws_url, [announcement(ALICE, daemon.domain, "probe-seed")],
                                    [state(ALICE, "probe-seed", {"refs/heads/main": seed_tip})]))
            subprocess.run(["git", "push", "-q", f"{daemon.http_url}/{npub_of(ALICE)}/probe-seed.git", "main"],
                           cwd=root / "seed-work", env={**os.environ, **GIT_ENV}, check=True, capture_output=True)
            asyncio.run(publish_all(daemon.ws_url, seed))
            result = asyncio.run(measure(daemon, [anns, states], {e.id for e in anns + states}, args.timeout,
                                         args.probe_interval_ms / 1000, args.py_spy, args.upstream_nice,
                                         args.py_spy_gil))
            result.fetch_s = fetch_s
            result.bound_s = plan.bound_s(fetch_s)
            for u, up in enumerate(ups):
                result.upstreams.append({"domain": up.domain, "identifiers": plan.per_domain()[u],
                                         "fetches": up.fetches, "requests": up.requests, "peak": up.peak,
                                         "max_in_window": up.max_fetches_in_window(plan.window_s),
                                         "fetch_starts": [round(t - result.started_mono, 3) for t in up.fetch_starts]})
            if result.released < result.expected:
                print(f"NOT ALL RELEASED ({result.released}/{result.expected}); daemon log tail:\n{daemon.log()}")
            return result
        finally:
            if daemon is not None:
                daemon.stop()
                if args.keep_log:
                    shutil.copy(daemon.log_path, args.keep_log)
            for up in ups:
                up.stop()


def report(plan: argparse.Namespace, r: Result) -> None:
    ratio = (r.released_s - r.last_batch_s) / r.bound_s if r.bound_s else float("nan")
    lat = r.latency
    print()
    print(f"throttle: {plan.concurrent} concurrent, {plan.per_minute} per {plan.window_s:g} s window per domain; "
          f"user delay {plan.user_delay:g} s")
    print(f"{'metric':<40}{'value':>14}")
    print("-" * 54)
    rows = [
        ("events released", f"{r.released}/{r.expected}"),
        ("publish (all EVENT -> OK) s", f"{r.publish_s:.2f}"),
        ("first release after first EVENT s", f"{r.first_release_s:.2f}"),
        ("all released after first EVENT s", f"{r.released_s:.2f}"),
        ("measured from first EVENT / bound", f"{r.released_s / r.bound_s:.3f}"),
        ("states sent after first EVENT s", f"{r.last_batch_s:.2f}"),
        ("all released after first state s", f"{r.released_s - r.last_batch_s:.2f}"),
        ("lower bound from throttle s", f"{r.bound_s:.2f}"),
        ("measured (from first state) / bound", f"{ratio:.3f}"),
        ("one fetch (calibration) ms", f"{r.fetch_s * 1000:.0f}"),
        (f"REQ round-trips (n={lat['n']}) p50 ms", f"{lat['p50']:.2f}"),
        ("REQ round-trip p99 ms", f"{lat['p99']:.2f}"),
        ("REQ round-trip max ms", f"{lat['max']:.2f}"),
        (f"  while publishing (n={r.latency_publish.get('n', 0)}) p99 ms", f"{r.latency_publish.get('p99', 0):.2f}"),
        (f"  after publishing (n={r.latency_sync.get('n', 0)}) p99 ms", f"{r.latency_sync.get('p99', 0):.2f}"),
        ("relay RSS max sampled MB", f"{r.rss_kb_max / 1024:.1f}"),
        ("relay VmHWM MB", f"{r.hwm_kb / 1024:.1f}"),
        ("relay CPU s (user+sys)", f"{r.cpu_s:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:<40}{value:>14}")
    print()
    print(f"{'upstream':<18}{'ids':>5}{'fetches':>9}{'requests':>10}{'peak':>6}{'max/window':>12}")
    for u in r.upstreams:
        print(f"{u['domain']:<18}{u['identifiers']:>5}{u['fetches']:>9}{u['requests']:>10}{u['peak']:>6}"
              f"{u['max_in_window']:>12}")
    over = [u for u in r.upstreams if u["peak"] > plan.concurrent or u["max_in_window"] > plan.per_minute]
    print()
    print(f"limits held: {'yes' if not over else 'NO: ' + ', '.join(u['domain'] for u in over)}; "
          f"within 10% of bound: {'yes' if ratio <= 1.10 else 'no'}; "
          f"REQ p99 < 5 ms: {'yes' if lat['p99'] < 5 else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identifiers", type=int, default=500)
    parser.add_argument("--upstreams", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=5, help="GRASP_THROTTLE_MAX_CONCURRENT")
    parser.add_argument("--per-minute", type=int, default=30, help="GRASP_THROTTLE_MAX_PER_MINUTE (per window)")
    parser.add_argument("--window-s", type=float, default=6.0, help="GRASP_THROTTLE_WINDOW_S (production: 60)")
    parser.add_argument("--user-delay", type=float, default=0.1, help="GRASP_SYNC_USER_DELAY_S")
    parser.add_argument("--probe-interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="give up waiting for releases after this")
    parser.add_argument("--json", type=Path, help="also write the numbers (and fetch start times) here")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any other relay setting, e.g. --set sync_backoff_base_s=1 (repeatable)")
    parser.add_argument("--log-level", default="warning", help="the relay's GRASP_LOG_LEVEL")
    parser.add_argument("--keep-log", type=Path, help="copy the relay's log here at the end")
    parser.add_argument("--py-spy", type=Path, help="profile the relay during the run (collapsed stacks here)")
    parser.add_argument("--py-spy-gil", action="store_true",
                        help="with --py-spy: sample only the thread holding the GIL (who blocks the loop)")
    parser.add_argument("--upstream-nice", type=int, default=0, metavar="N",
                        help="diagnostic: run the upstream servers (and their git processes) at nice N once "
                             "the relay and the latency probe have started")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}, "
          f"{os.cpu_count()} CPUs")
    result = run(args)
    report(args, result)
    if args.json:
        args.json.write_text(json.dumps(result.__dict__, indent=2))


if __name__ == "__main__":
    main()
