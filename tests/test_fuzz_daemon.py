"""The quick, bounded fuzz of the running daemon (the long one: tests/fuzz/run.py, see
bench/README.md). Generated frames of every message type, mutated events, huge and deep
values, random bytes and binary frames go to the daemon over a real websocket; each must get
its NIP-01 answer or a clean close, a well-behaved client on another connection must keep
getting answers, and the daemon's log must hold no error and no traceback."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.fuzz.frames import Frame, frames
from tests.fuzz.harness import GOOD_TIMEOUT_S, Fuzzer, GoodClient, LoopThread, check_log

EXAMPLES = int(os.environ.get("GRASP_FUZZ_EXAMPLES", "1500"))


def fuzz_daemon(daemon: Any, examples: int, seed: int | None = None) -> dict[str, Any]:
    """Run `examples` generated frames against a started daemon; returns what was seen.
    Raises on the first frame without its answer, or when the good client stalls."""
    loop = LoopThread()
    fuzzer = Fuzzer(daemon.ws_url)
    good = GoodClient(daemon.ws_url)
    good_task = loop.spawn(good.run())
    try:
        @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                  suppress_health_check=list(HealthCheck))
        @given(frames())
        def one(frame: Frame) -> None:
            loop.run(fuzzer.exchange(frame))
            assert not good.failures, good.failures

        if seed is not None:
            from hypothesis import seed as hypothesis_seed

            one = hypothesis_seed(seed)(one)
        one()
        loop.run(fuzzer.settle())
        loop.loop.call_soon_threadsafe(good.stop)
        good_task.result(GOOD_TIMEOUT_S * 2)
        loop.run(fuzzer.close())
    finally:
        good_task.cancel()
        loop.close()
    assert not good.failures, good.failures
    return {"frames": fuzzer.sent, "closes": dict(fuzzer.closes), "answers": dict(fuzzer.answers),
            "good_rounds": good.rounds, "good_max_s": max(good.latencies, default=0.0)}


def test_fuzzed_frames_each_get_an_answer_and_nothing_breaks(start_daemon) -> None:
    daemon = start_daemon()
    seen = fuzz_daemon(daemon, EXAMPLES)
    assert seen["frames"] >= EXAMPLES and seen["good_rounds"] > 3
    assert seen["good_max_s"] < GOOD_TIMEOUT_S
    daemon.stop()
    assert check_log(daemon.log_path) == []
