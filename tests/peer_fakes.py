"""A small NIP-01 relay as a raw websocket server on 127.0.0.1, for the peer sync's tests of
hostile or plain peers: no NIP-77 (a NOTICE, as relays without it answer), a cap on every
REQ's results, connections it drops on a chosen frame, rate-limit answers, a bad event before the good ones.
It records every frame it was sent, so tests can assert what the daemon asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from storage.nostr.event import Event
from storage.nostr.filters import Filter


@dataclass
class FakePeer:
    events: list[Event] = field(default_factory=list)
    limit_cap: int = 10_000
    #: answer every REQ with CLOSED "rate-limited: ..." for the first N connections
    rate_limit_connections: int = 0
    #: raw event dicts sent first to every REQ (a hostile peer's nonsense)
    bad: list[Any] = field(default_factory=list)
    #: events sent once, before the results of the first REQ ever answered (out of order)
    early: list[Event] = field(default_factory=list)
    #: drop the connection right after receiving a frame this says yes to
    close_on: Callable[[list[Any]], bool] | None = None
    received: list[list[Any]] = field(default_factory=list)
    #: the connection number of each received frame
    received_on: list[int] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reqs(self) -> list[list[Any]]:
        return [f for f in self.received if f and f[0] == "REQ"]

    def first_req_of(self, connection: int) -> int:
        """The index in `reqs()` of the first REQ sent on that connection (or past the end)."""
        numbers = [n for f, n in zip(self.received, self.received_on) if f and f[0] == "REQ"]
        return next((i for i, n in enumerate(numbers) if n >= connection), len(numbers))

    async def __aenter__(self) -> "FakePeer":
        self._server = await websockets.serve(self._serve, "127.0.0.1", 0, max_size=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def matching(self, filters: list[dict[str, Any]]) -> list[Event]:
        out: dict[str, Event] = {}
        for raw in filters:
            filt = Filter.from_dict({k: v for k, v in raw.items() if k != "limit"})
            found = sorted((e for e in self.events if filt.matches(e)), key=lambda e: (-e.created_at, e.id))
            for event in found[:min(raw.get("limit", self.limit_cap), self.limit_cap)]:
                out[event.id] = event
        return sorted(out.values(), key=lambda e: (-e.created_at, e.id))

    async def _serve(self, ws: Any) -> None:
        self.connections += 1
        number = self.connections

        async def send(frame: list[Any]) -> None:
            await ws.send(json.dumps(frame))

        try:
            async for message in ws:
                frame = json.loads(message)
                self.received.append(frame)
                self.received_on.append(number)
                if self.close_on is not None and self.close_on(frame):
                    await ws.close()
                    return
                if frame[0] == "NEG-OPEN":
                    await send(["NOTICE", "invalid: unsupported message type 'NEG-OPEN'"])
                elif frame[0] == "REQ":
                    sub = frame[1]
                    if number <= self.rate_limit_connections:
                        await send(["CLOSED", sub, "rate-limited: slow down"])
                        continue
                    for raw in self.bad:
                        await send(["EVENT", sub, raw])
                    early, self.early = self.early, []
                    for event in early:
                        await send(["EVENT", sub, event.to_dict()])
                    for event in self.matching(frame[2:]):
                        await send(["EVENT", sub, event.to_dict()])
                    await send(["EOSE", sub])
        except websockets.ConnectionClosed:
            return
