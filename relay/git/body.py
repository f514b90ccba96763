"""Request bodies for git smart HTTP: streamed, gunzipped incrementally, and capped, so
neither a large push nor a small gzip bomb is ever held whole in memory."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: The unit git bodies move in: one read from a git pipe, one body message to the client, the
#: largest piece one decompress step may produce.
CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The request body went over a cap; the message is client-facing."""


class BadBody(Exception):
    """The request body is malformed (bad gzip, truncated commands); client-facing."""


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


@dataclass(frozen=True, slots=True)
class Pace:
    """How slowly a body may arrive: `idle` seconds without a byte, `deadline` seconds in
    all, and after `grace` seconds at least `min_rate` bytes/s on average (0: no minimum).
    A push no longer holds its repo's lock while it arrives, but a body that drips still
    holds a connection, a spool file and memory: it is cut off, not waited for."""

    idle: float = 60
    deadline: float = 1800
    min_rate: int = 0
    grace: float = 30


async def body_chunks(receive: Receive, gzip: bool, cap: int, gzip_cap: int,
                      pace: Pace | None = None, clock: Callable[[], float] = time.monotonic,
                      ) -> AsyncIterator[bytes]:
    """The request body, gunzipped incrementally when needed, raising once it exceeds `cap`
    (decoded bytes) or, for gzip, `gzip_cap`: a small compressed body must not expand into
    gigabytes in memory. A body slower than `pace` allows is abandoned with BadBody."""
    pace = pace or Pace()
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    total = 0
    raw = 0
    limit = min(cap, gzip_cap) if gzip else cap
    started = clock()
    more = True
    while more:
        left = pace.deadline - (clock() - started)
        wait = min(pace.idle, left)
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), wait)
        except asyncio.TimeoutError:
            if wait < pace.idle:
                raise BadBody(f"request body not complete within the limit of {pace.deadline:g} s") from None
            raise BadBody(f"request body stalled for {pace.idle:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        data = message.get("body", b"")
        more = message.get("more_body", False)
        raw += len(data)
        elapsed = clock() - started
        if more and pace.min_rate and elapsed > pace.grace and raw < pace.min_rate * elapsed:
            raise BadBody(f"request body arrives at {raw / elapsed:.0f} bytes/s, below the minimum of "
                          f"{pace.min_rate} bytes/s")
        pieces = [data] if decoder is None else _gunzip(decoder, data)
        for piece in pieces:
            total += len(piece)
            if total > limit:
                what = "decoded gzip body" if gzip and gzip_cap <= cap else "request body"
                raise BodyTooLarge(f"{what} exceeds the limit of {limit} bytes")
            if piece:
                yield piece
    if decoder is not None and not decoder.eof:
        raise BadBody("truncated gzip body")


def _gunzip(decoder: Any, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    try:
        while data:
            out.append(decoder.decompress(data, CHUNK))
            data = decoder.unconsumed_tail
    except zlib.error as exc:
        raise BadBody(f"bad gzip body: {exc}") from None
    return out


def is_gzip(content_encoding: bytes) -> bool:
    return content_encoding.strip().lower() in (b"gzip", b"x-gzip")
