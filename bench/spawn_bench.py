"""What starting a git process costs the event loop, by the daemon's memory size.

uvloop's `create_subprocess_exec` forks on the loop thread (cost grows with the page tables
of the parent); `relay.git.spawn.spawn` uses CPython's subprocess (vfork). For each resident size
(ballast touched page by page), start `git --version` --n times with each and report the
spawn call's time and the loop stall a 1 ms ticker task sees meanwhile (p50 and max).

    .venv/bin/python bench/spawn_bench.py [--n 40] [--sizes 70,260,1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from relay.git.spawn import spawn  # noqa: E402

CMD = ["git", "--version"]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def grow_to(target_mb: int, ballast: list[bytearray]) -> None:
    """Touch memory until the process is about `target_mb` resident."""
    while rss_mb() < target_mb:
        chunk = bytearray(32 * 1024 * 1024)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        ballast.append(chunk)


async def ticker(stalls: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        stalls.append((time.perf_counter() - before - 0.001) * 1000)


async def uvloop_spawn() -> None:
    proc = await asyncio.create_subprocess_exec(*CMD, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()


async def vfork_spawn() -> None:
    proc = await spawn(CMD, dict(os.environ), stdout=open(os.devnull, "wb"), stderr=open(os.devnull, "wb"))
    await proc.wait()


async def measure(method, n: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    stalls: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stalls, stop))
    calls: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        await method()
        calls.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)
    stop.set()
    await tick
    return calls, stalls


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    ballast: list[bytearray] = []
    print(f"{'RSS MB':>7} {'method':<22} {'start+exit p50 ms':>18} {'loop stall p50 ms':>18} {'stall max ms':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        grow_to(size, ballast)
        for name, method in (("uvloop fork", uvloop_spawn), ("relay.git.spawn (vfork)", vfork_spawn)):
            calls, stalls = await measure(method, args.n)
            print(f"{rss_mb():7.0f} {name:<22} {statistics.median(calls):18.2f} {statistics.median(stalls):18.2f} "
                  f"{max(stalls):13.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--sizes", default="70,260,1024")
    uvloop.run(main(parser.parse_args()))
