"""Fuzzing the running daemon over real websockets.

`Fuzzer` sends one generated frame at a time on its own connection, followed by a probe
(`["FUZZ-PROBE-<n>"]`, which the relay answers with a NOTICE naming it). Frames are answered
in order except OKs (events are stored concurrently), so everything between a frame and its
probe's NOTICE is that frame's answer, and each frame is checked against what it is owed
(`frames.Frame.expect`): a NOTICE/CLOSED/EOSE/COUNT, an OK for its event id (checked until
the end), nothing for a CLOSE, or a close frame with a code (1007 for invalid UTF-8, 1009
for a frame past the socket limit), after which it reconnects. Every frame received must be
a well-formed NIP-01 relay message.

`GoodClient` meanwhile asks a small REQ and publishes an event on another connection, again
and again, and records how long each answer took; `check_log` reads the daemon's log for
errors and tracebacks. The loop runs on a background thread so that hypothesis (which is
synchronous) can drive it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import websockets

from storage.nostr.event import sign_event
from tests.fuzz.frames import Frame

ANSWER_TIMEOUT_S = 20.0  # generous: a bound on "keeps answering", not a speed test
GOOD_TIMEOUT_S = 10.0
PACE_S = 0.15  # the good client's pause between rounds: within the default 600 REQs a minute
T = TypeVar("T")


class FuzzFailure(AssertionError):
    pass


def check_relay_message(msg: Any) -> str:
    """Raise unless `msg` is a NIP-01 relay-to-client message; returns its type."""
    ok = isinstance(msg, list) and msg and isinstance(msg[0], str)
    kind = msg[0] if ok else None
    if kind == "EVENT":
        ok = (len(msg) == 3 and isinstance(msg[1], str) and isinstance(msg[2], dict)
              and isinstance(msg[2].get("id"), str))
    elif kind == "OK":
        ok = len(msg) == 4 and isinstance(msg[1], str) and isinstance(msg[2], bool) and isinstance(msg[3], str)
        ok = ok and (msg[2] or msg[3].split(":", 1)[0] in ("invalid", "blocked", "rate-limited", "error", "duplicate"))
    elif kind in ("EOSE",):
        ok = len(msg) == 2 and isinstance(msg[1], str)
    elif kind == "CLOSED":
        ok = len(msg) == 3 and isinstance(msg[1], str) and isinstance(msg[2], str) and ":" in msg[2]
    elif kind == "NOTICE":
        ok = len(msg) == 2 and isinstance(msg[1], str)
    elif kind == "COUNT":
        ok = len(msg) == 3 and isinstance(msg[2], dict) and isinstance(msg[2].get("count"), int)
    else:
        ok = False
    if not ok:
        raise FuzzFailure(f"not a NIP-01 relay message: {str(msg)[:300]}")
    return str(kind)


@dataclass
class Fuzzer:
    url: str
    ws: Any = None
    probes: int = 0
    pending_oks: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=None, open_timeout=ANSWER_TIMEOUT_S,
                                           ping_interval=None)
        self.pending_oks.clear()  # OKs owed on a closed connection are gone with it

    async def exchange(self, frame: Frame) -> None:
        if self.ws is None:
            await self.connect()
        self.sent += 1
        if frame.expect == "close":
            await self._expect_close(frame)
            return
        self.probes += 1
        probe = f"FUZZ-PROBE-{self.probes}"
        if frame.expect == "ok":  # before sending: the OK may come before the probe's NOTICE, or after
            self.pending_oks[frame.event_id] += 1
        try:
            await self.ws.send(frame.payload, text=frame.text)
            await self.ws.send(json.dumps([probe]))
            window = await self._until_probe(probe)
        except websockets.ConnectionClosed as exc:
            raise FuzzFailure(f"connection closed ({exc}) after {frame.describe()}") from None
        if frame.expect == "answer" and not window & {"NOTICE", "CLOSED", "EOSE", "COUNT"}:
            raise FuzzFailure(f"no answer to {frame.describe()}")

    async def _expect_close(self, frame: Frame) -> None:
        """A frame the websocket layer refuses (invalid UTF-8, past its size limit): the
        server closes the connection (1007, 1009). The close frame itself may be lost: the
        server closes its socket right after it, and a client still sending then gets a
        reset. No probe is sent, so as not to provoke one. Answering instead is fine too."""
        try:
            await self.ws.send(frame.payload, text=frame.text)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic())
                kind = check_relay_message(json.loads(raw))
                if kind in ("NOTICE", "CLOSED"):
                    return
            raise FuzzFailure(f"neither an answer nor a close after {frame.describe()}")
        except websockets.ConnectionClosed as exc:
            self.closes[exc.rcvd.code if exc.rcvd is not None else 0] += 1
            self.ws = None
        except TimeoutError:
            raise FuzzFailure(f"neither an answer nor a close after {frame.describe()}") from None

    async def _until_probe(self, probe: str) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FuzzFailure(f"no answer to probe {probe} within {ANSWER_TIMEOUT_S} s")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                raise FuzzFailure(f"the relay sent something that is not JSON: {raw[:200]!r}") from None
            kind = check_relay_message(msg)
            self.answers[kind] += 1
            if kind == "NOTICE" and f"{probe}'" in msg[1]:
                return seen
            if kind == "OK" and self.pending_oks[msg[1]] > 0:
                self.pending_oks[msg[1]] -= 1
                continue
            seen.add(kind)

    async def settle(self) -> None:
        """Wait for every OK still owed (one more probe collects them)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while self.ws is not None and +self.pending_oks and time.monotonic() < deadline:
            self.probes += 1
            await self.ws.send(json.dumps([f"FUZZ-PROBE-{self.probes}"]))
            await self._until_probe(f"FUZZ-PROBE-{self.probes}")
            await asyncio.sleep(0.05)
        if +self.pending_oks:
            raise FuzzFailure(f"no OK for {sorted(+self.pending_oks)[:5]}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


@dataclass
class GoodClient:
    """A client that behaves: asks, waits for its answer, sometimes publishes."""

    url: str
    secret: str = "9a" * 32
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rounds: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with websockets.connect(self.url, max_size=None, open_timeout=GOOD_TIMEOUT_S) as ws:
            while not self._stop.is_set():
                self.rounds += 1
                sub = f"good{self.rounds}"
                started = time.monotonic()
                try:
                    await ws.send(json.dumps(["REQ", sub, {"kinds": [10317], "limit": 3}]))
                    closed = await self._wait(ws, lambda m, sub=sub: m[0] in ("EOSE", "CLOSED") and m[1] == sub)
                    if closed[0] == "CLOSED":
                        self.failures.append(f"round {self.rounds}: {closed}")
                        return
                    await ws.send(json.dumps(["CLOSE", sub]))
                    if self.rounds % 5 == 0:
                        event = sign_event(self.secret, 10317, "", [["g", f"wss://r{self.rounds}.example"]],
                                           int(time.time()))
                        await ws.send(json.dumps(["EVENT", event.to_dict()]))
                        await self._wait(ws, lambda m, eid=event.id: m[0] == "OK" and m[1] == eid and m[2] is True)
                except (TimeoutError, websockets.ConnectionClosed) as exc:
                    self.failures.append(f"round {self.rounds}: {type(exc).__name__} {exc}")
                    return
                self.latencies.append(time.monotonic() - started)
                await asyncio.sleep(PACE_S)

    @staticmethod
    async def _wait(ws: Any, done: Any) -> list[Any]:
        deadline = time.monotonic() + GOOD_TIMEOUT_S
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
            if done(msg):
                return msg

    def stop(self) -> None:
        self._stop.set()


class LoopThread:
    """An asyncio loop on a thread, for synchronous callers (hypothesis)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel what still runs (a client after a failure), let it finish, stop."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def check_log(path: Path) -> list[str]:
    """Lines of the daemon's log that report an error or carry a traceback."""
    bad: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                bad.append(line[:500])
            continue
        if not isinstance(record, dict):
            continue
        if record.get("level") in ("error", "critical") or "exception" in record:
            bad.append(line[:1000])
    return bad
