"""The long fuzz of the running daemon, run by hand (the quick one runs in CI:
tests/test_fuzz_daemon.py). Same frames and checks, for as long as asked, from several
processes at once, each on its own connection with its own random seed, while a good
client keeps asking on another connection.

    /work/main/.venv/bin/python -m tests.fuzz.run --minutes 10 --workers 4
    /work/main/.venv/bin/python -m tests.fuzz.run --minutes 1 --keep    # keep the data dir and log

It starts its own daemon (the `grasp-relay` next to this interpreter, default settings) and
prints, at the end: frames sent, closes by code, answers by type, the good client's rounds
and worst latency, the relay's peak RSS, and every log line that reports an error. Exit 0
when nothing failed; a failing frame is printed (hypothesis shrinks it first) with its
worker's seed, so `--seed` replays it."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.daemon import Daemon  # noqa: E402 - after the path insert, for `python tests/fuzz/run.py`
from tests.fuzz.harness import GOOD_TIMEOUT_S, Fuzzer, GoodClient, LoopThread, check_log  # noqa: E402

ROUND_EXAMPLES = 500


def _worker(url: str, seed: int, until: float, out: multiprocessing.Queue[dict[str, Any]]) -> None:
    """One process: rounds of ROUND_EXAMPLES hypothesis examples until `until`."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.fuzz.frames import Frame, frames

    loop = LoopThread()
    fuzzer = Fuzzer(url)
    report: dict[str, Any] = {"seed": seed, "failure": None}
    rng = random.Random(seed)
    try:
        while time.time() < until:
            round_seed = rng.randrange(2**32)
            report["last_round_seed"] = round_seed

            @hypothesis_seed(round_seed)
            @settings(max_examples=ROUND_EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(frames())
            def one(frame: Frame) -> None:
                loop.run(fuzzer.exchange(frame))

            one()
        loop.run(fuzzer.settle())
        loop.run(fuzzer.close())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report["failure"] = f"{type(exc).__name__}: {exc}"[:4000]
    finally:
        loop.close()
    report.update(frames=fuzzer.sent, closes=dict(fuzzer.closes), answers=dict(fuzzer.answers))
    out.put(report)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=4, help="fuzzing processes (connections)")
    p.add_argument("--seed", type=int, default=None, help="seed of the first worker (others follow)")
    p.add_argument("--keep", action="store_true", help="keep the data dir and the daemon log")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="grasp-fuzz-"))
    daemon = Daemon(tmp / "data").start()
    print(f"daemon at {daemon.ws_url}, log {daemon.log_path}", file=sys.stderr)
    until = time.time() + args.minutes * 60
    base = args.seed if args.seed is not None else random.randrange(2**31)
    queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.get_context("spawn").Queue()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(daemon.ws_url, base + i, until, queue)) for i in range(args.workers)]
    for worker in workers:
        worker.start()
    loop = LoopThread()
    good = GoodClient(daemon.ws_url)
    good_task = loop.spawn(good.run())
    peak_rss = 0.0
    reports: list[dict[str, Any]] = []
    try:
        while len(reports) < len(workers):
            assert daemon.proc is not None
            peak_rss = max(peak_rss, _rss_mb(daemon.proc.pid))
            while not queue.empty():
                reports.append(queue.get())
            if daemon.proc.poll() is not None:
                print("the daemon exited", file=sys.stderr)
                break
            if good_task.done():
                break
            time.sleep(0.5)
        loop.loop.call_soon_threadsafe(good.stop)
        try:
            good_task.result(GOOD_TIMEOUT_S * 2)
        except Exception as exc:  # noqa: BLE001
            good.failures.append(repr(exc))
    finally:
        loop.close()
        for worker in workers:
            worker.join(60)
        daemon.stop()
    errors = check_log(daemon.log_path)
    total = sum(r.get("frames", 0) for r in reports)
    print(json.dumps({
        "minutes": args.minutes, "workers": args.workers, "base_seed": base, "frames": total,
        "closes": _merge(r.get("closes", {}) for r in reports),
        "answers": _merge(r.get("answers", {}) for r in reports),
        "good_rounds": good.rounds, "good_worst_s": round(max(good.latencies, default=0.0), 4),
        "good_failures": good.failures, "relay_peak_rss_mb": round(peak_rss, 1),
        "failures": [(r["seed"], r.get("last_round_seed"), r["failure"]) for r in reports if r["failure"]],
        "log_errors": errors[:20],
    }, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    failed = any(r["failure"] for r in reports) or good.failures or errors or len(reports) < len(workers)
    return 1 if failed else 0


def _merge(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for key, value in d.items():
            out[str(key)] = out.get(str(key), 0) + value
    return out


if __name__ == "__main__":
    raise SystemExit(main())
