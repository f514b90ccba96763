"""Request bodies for git smart HTTP: streamed, gunzipped incrementally, and capped, so
neither a large push nor a small gzip bomb is ever held whole in memory."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]

CHUNK = 64 * 1024  # largest piece one decompress step may produce


class BodyTooLarge(Exception):
    """The request body went over a cap; the message is client-facing."""


class BadBody(Exception):
    """The request body is malformed (bad gzip, truncated commands); client-facing."""


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


async def body_chunks(receive: Receive, gzip: bool, cap: int, gzip_cap: int,
                      idle_timeout: float = 60) -> AsyncIterator[bytes]:
    """The request body, gunzipped incrementally when needed, raising once it exceeds `cap`
    (decoded bytes) or, for gzip, `gzip_cap`: a small compressed body must not expand into
    gigabytes in memory. A body that stalls is abandoned: a push holds its repo's lock."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    total = 0
    limit = min(cap, gzip_cap) if gzip else cap
    more = True
    while more:
        try:
            message = await asyncio.wait_for(receive(), idle_timeout)
        except asyncio.TimeoutError:
            raise BadBody(f"request body stalled for {idle_timeout:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        data = message.get("body", b"")
        more = message.get("more_body", False)
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


async def capped(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in body:
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(f"refs/nostr push exceeds the limit of {limit} bytes")
        yield chunk


def is_gzip(content_encoding: bytes) -> bool:
    return content_encoding.strip().lower() in (b"gzip", b"x-gzip")
