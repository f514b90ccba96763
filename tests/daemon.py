"""Run the real daemon (the `grasp-relay` console script) for integration tests, and talk to
it with a real websocket client. Every process started here is stopped by the test's fixture."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import websockets

from storage.nostr.event import Event, sign_event

START_TIMEOUT_S = 20.0
#: how long a test waits for a signal before it fails; generous, since a slow machine only
#: makes the wait longer, never the test's claim weaker
WAIT_TIMEOUT_S = 20.0
POLL_S = 0.05

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def console_script() -> list[str]:
    exe = shutil.which("grasp-relay", path=os.path.dirname(sys.executable)) or shutil.which("grasp-relay")
    return [exe] if exe else [sys.executable, "-m", "relay"]


@dataclass
class Daemon:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: GRASP_* names to leave out of the environment (so a config file can set them)
    unset: frozenset[str] = frozenset()

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.domain}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.domain}"

    def start(self) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
        env.update(
            GRASP_BIND=self.domain,
            GRASP_DOMAIN=self.domain,
            GRASP_DATA_DIR=str(self.data_dir),
            GRASP_LOG_LEVEL="info",
            GRASP_LOG_FORMAT="json",
        )
        env.update(self.env)
        for name in self.unset:
            env.pop(name, None)
        self.log_path = self.data_dir.parent / f"daemon-{self.port}.log"
        self._log = open(self.log_path, "ab")
        # the working dir is the test's own, so a `.env` written there is the daemon's
        self.proc = subprocess.Popen(console_script(), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.data_dir.parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.http_url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daemon did not start: {self.log()}")

    def log(self) -> str:
        """The log's tail, to show in a failure message; assertions read `log_text()`."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        code, self.proc = self.proc.returncode, None
        return code

    def wait_exit(self, timeout: float = 15.0) -> int | None:
        """Wait for an exit a signal already asked for, without signalling again (a second
        SIGTERM makes uvicorn quit at once, without its graceful shutdown)."""
        if self.proc is None:
            return None
        self.proc.wait(timeout)
        return self.stop()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def log_length(self) -> int:
        """Lines logged so far: a mark for `log_events(after=...)`."""
        return len(self.log_text().splitlines())

    def log_text(self) -> str:
        """The whole log (`log()` is its tail, for failure messages only)."""
        return self.log_path.read_text(errors="replace")

    def log_records(self, after: int = 0) -> list[dict[str, Any]]:
        """Every JSON log line after line `after`, parsed."""
        found = []
        for line in self.log_text().splitlines()[after:]:
            if not line.startswith("{"):
                continue
            try:
                found.append(json.loads(line))
            except ValueError:  # a line still being written
                continue
        return found

    def log_events(self, name: str, after: int = 0) -> list[dict[str, Any]]:
        """The JSON log lines whose event is `name`, among those after line `after`."""
        return [record for record in self.log_records(after) if record.get("event") == name]

    def metrics(self) -> str:
        return self.get("/metrics")[2].decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the relay's /metrics (0 when absent)."""
        return metric(self.metrics(), name, **labels)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        req = urllib.request.Request(self.http_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()


class Client:
    """A bare NIP-01 websocket client with bounded waits."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str) -> "Client":
        return cls(await websockets.connect(url, max_size=2**24, open_timeout=10))

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, message: list[Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def publish(self, event: Event, timeout: float = 10.0) -> tuple[bool, str]:
        await self.ws.send(json.dumps(["EVENT", event.to_dict()]))
        while True:
            msg = await self.recv(timeout)
            if msg[0] == "OK" and msg[1] == event.id:
                return msg[2], msg[3]

    async def query(self, *filters: dict[str, Any], sub_id: str = "q", timeout: float = 10.0) -> list[dict[str, Any]]:
        await self.send(["REQ", sub_id, *filters])
        events = []
        while True:
            msg = await self.recv(timeout)
            if msg[0] == "EVENT" and msg[1] == sub_id:
                events.append(msg[2])
            elif msg[0] == "EOSE" and msg[1] == sub_id:
                await self.send(["CLOSE", sub_id])
                return events
            elif msg[0] == "CLOSED" and msg[1] == sub_id:
                raise AssertionError(f"subscription closed: {msg[2]}")


# --- keys and events ---------------------------------------------------------------------

ALICE = "a1" * 32
BOB = "b2" * 32
CAROL = "c3" * 32


def pubkey_of(secret: str) -> str:
    from coincurve import PrivateKey

    return PrivateKey(bytes.fromhex(secret)).public_key_xonly.format().hex()


def npub_of(secret_or_pubkey: str, is_secret: bool = True) -> str:
    from nostr_sdk import PublicKey

    hex_key = pubkey_of(secret_or_pubkey) if is_secret else secret_or_pubkey
    return PublicKey.parse(hex_key).to_bech32()


def now() -> int:
    return int(time.time())


def announcement(secret: str, domain: str, identifier: str, maintainers: list[str] | None = None,
                 extra_clone: list[str] | None = None, created_at: int | None = None) -> Event:
    npub = npub_of(secret)
    tags = [
        ["d", identifier],
        ["name", identifier],
        ["description", f"test repo {identifier}"],
        ["clone", f"http://{domain}/{npub}/{identifier}.git", *(extra_clone or [])],
        ["relays", f"ws://{domain}"],
    ]
    if maintainers:
        tags.append(["maintainers", *maintainers])
    return sign_event(secret, 30617, "", tags, created_at or now())


def state(secret: str, identifier: str, refs: dict[str, str], head: str = "refs/heads/main",
          created_at: int | None = None) -> Event:
    tags = [["d", identifier], *[[name, oid] for name, oid in refs.items()], ["HEAD", f"ref: {head}"]]
    return sign_event(secret, 30618, "", tags, created_at or now())


def issue(secret: str, owner_pubkey: str, identifier: str, subject: str = "bug",
          created_at: int | None = None) -> Event:
    tags = [["a", f"30617:{owner_pubkey}:{identifier}"], ["p", owner_pubkey], ["subject", subject]]
    return sign_event(secret, 1621, f"issue {subject}", tags, created_at or now())


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if got == want:
            return float(match.group(3))
    return 0.0


# --- waiting for signals -------------------------------------------------------------------

async def wait_for(check: Callable[[], T | Awaitable[T]], what: str, timeout: float = WAIT_TIMEOUT_S,
                   every: float = POLL_S) -> T:
    """Poll `check` (plain or async) until it returns something truthy, and return that; fail
    naming `what` once `timeout` has passed. The one bounded wait of these tests: they wait
    for what the relay shows (a metric, a log line, a state), never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:g} s: {what}")
        await asyncio.sleep(every)


async def wait_metric(daemon: Daemon, name: str, at_least: float = 1, timeout: float = WAIT_TIMEOUT_S,
                      **labels: str) -> float:
    """Wait until a sample of the relay's /metrics reaches `at_least`; returns its value."""
    def reached() -> tuple[float] | None:
        value = daemon.metric(name, **labels)
        return (value,) if value >= at_least else None

    return (await wait_for(reached, f"{name}{labels or ''} >= {at_least:g}", timeout))[0]


async def wait_log(daemon: Daemon, event: str, after: int = 0, timeout: float = WAIT_TIMEOUT_S,
                   **fields: Any) -> dict[str, Any]:
    """Wait for a JSON log line with this event (and these field values) after line `after`;
    returns the first such line."""
    def found() -> dict[str, Any] | None:
        for record in daemon.log_events(event, after):
            if all(record.get(k) == v for k, v in fields.items()):
                return record
        return None

    return await wait_for(found, f"log line {event} {fields or ''}", timeout)
