"""Plain HTTP responses for the ASGI app, each with the CORS headers browsers need (errors
included: a browser git client must be able to read why it failed)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from relay.cors import cors_headers

Send = Callable[[dict[str, Any]], Awaitable[None]]


def header(scope: dict[str, Any], name: bytes) -> bytes:
    """A request header's value (`name` lowercase, as ASGI servers give them), b"" if absent."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return b""


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    head: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += cors_headers()
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
