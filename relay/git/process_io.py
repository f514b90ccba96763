"""Moving bytes between one HTTP exchange and one git process: feeding the request into
git's stdin, keeping the end of its stderr, noticing a client that hung up, stopping git,
and starting or ending the streamed answer. `smart_http`, `upload` and `receive` decide what
to run; this only moves bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

from relay.cors import cors_headers
from relay.git.body import CHUNK, BadBody, BodyTooLarge, ClientGone
from relay.git.spawn import GitProcess, spawn
from relay.http import respond

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]



async def stderr_tail(stream: asyncio.StreamReader, keep: int = 4096) -> str:
    tail = b""
    while chunk := await stream.read(CHUNK):
        tail = (tail + chunk)[-keep:]
    return tail.decode(errors="replace")


async def client_gone(receive: Receive) -> None:
    """Resolves when the client hangs up. Called once the request body was read in full, so
    the disconnect is the only message still to come."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def stop_git(proc: GitProcess, kill: bool = False) -> None:
    """Close git's stdin so a half-received pack fails cleanly (git removes its temporary
    pack and updates no ref); kill only if it does not exit by itself soon, or at once when
    asked (an abandoned upload-pack writes nothing that matters)."""
    if proc.returncode is not None:
        return
    if kill:
        proc.kill()
        await proc.wait()
        return
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


#: git's own http-backend marks every answer uncacheable; proxies must not serve stale refs
NO_CACHE = [(b"cache-control", b"no-cache, max-age=0, must-revalidate"), (b"pragma", b"no-cache"),
            (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT")]


async def start_stream(send: Send, status: int, content_type: str) -> None:
    """Start a streamed answer (no length known yet)."""
    headers = [(b"content-type", content_type.encode()), *NO_CACHE, *cors_headers()]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def respond_text(send: Send, status: int, text: str,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete plain-text answer (errors and 204s), CORS headers included."""
    await respond(send, status, text.encode(), extra=[*NO_CACHE, *(extra or [])])


async def spool(dest: BinaryIO, head: bytes, body: AsyncIterator[bytes], limit: int, what: str,
                already: int = 0) -> int:
    """Write `head`, then the rest of the body, to `dest`; raise BodyTooLarge once the client
    sent more than `limit` bytes (`already` of them before the rest of the body). A push is
    received whole before its repo is locked: a client that drips must not hold the lock,
    only its own connection. Page-cache writes of 64 KiB take microseconds: done on the loop.
    Returns the bytes the client sent."""
    total = already
    if total > limit:
        raise BodyTooLarge(f"{what} exceeds the limit of {limit} bytes")
    dest.write(head)
    async for chunk in body:
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(f"{what} exceeds the limit of {limit} bytes")
        dest.write(chunk)
    dest.flush()
    return total


async def drain(body: AsyncIterator[bytes]) -> int | None:
    """Read a body to its end without keeping it (curl must finish sending before it reads
    an answer); the bytes read, or None when the client went away meanwhile."""
    read = 0
    try:
        async for chunk in body:
            read += len(chunk)
    except (BodyTooLarge, BadBody):
        pass
    except ClientGone:
        return None
    return read


async def run_git(cmd: list[str], env: dict[str, str], stdin: BinaryIO, stdout: BinaryIO) -> tuple[int, str]:
    """Run git with files as its stdin and stdout (no Python copy of the pack on the way in,
    and the answer kept until the push was checked); returns the exit code and the end of
    stderr."""
    proc = await spawn(cmd, env, stdin=stdin, stdout=stdout)
    assert proc.stderr is not None
    try:
        stderr = await stderr_tail(proc.stderr)
        rc = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return rc, stderr


async def send_file(send: Send, source: BinaryIO) -> int:
    """Stream a file's contents as the body of a started answer; returns the bytes sent."""
    source.seek(0)
    sent = 0
    while data := source.read(CHUNK):
        await send({"type": "http.response.body", "body": data, "more_body": True})
        sent += len(data)
    return sent
