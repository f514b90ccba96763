"""The fetch path: `git upload-pack` for a clone or fetch. The request (wants and haves) is
received whole, capped, into a spool file, so a bad or oversized body is answered 4xx before
git runs; then git's pack is streamed out as it comes, and git is stopped at once if the
client hangs up half way."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from typing import BinaryIO

import structlog

from config.settings import Settings
from relay.git.body import BadBody, BodyTooLarge, ClientGone, Pace
from relay.git.process_io import (
    CHUNK,
    Receive,
    Send,
    client_gone,
    end_stream,
    respond_text,
    spool,
    start_stream,
    stderr_tail,
    stop_git,
)
from relay.git.request import RepoRef, Scope, git_env, request_body
from relay.git.spawn import spawn
from relay.metrics import GitService, MetricsSink

log = structlog.get_logger(__name__)


async def upload_pack(scope: Scope, receive: Receive, send: Send, repo: RepoRef, settings: Settings,
                      metrics: MetricsSink, pace: Pace) -> None:
    """A fetch: spool the request, run upload-pack on it and stream the pack out."""
    cap = settings.max_gzip_bytes  # wants/haves only: the gzip cap bounds it too
    body = request_body(scope, receive, cap, settings.max_gzip_bytes, pace)
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=settings.spool_dir) as request:
        try:
            received = await spool(request, b"", body, cap, "request body")
        except (BodyTooLarge, BadBody) as exc:
            metrics.git_operation("upload-pack", "cut", 0, 0)
            await respond_text(send, 413 if isinstance(exc, BodyTooLarge) else 400, f"{exc}\n")
            return
        except ClientGone:
            return
        request.seek(0)
        cmd = [settings.git_binary, "upload-pack", "--stateless-rpc", str(repo.path)]
        await stream_out(send, cmd, git_env(scope, "git-upload-pack"), request, received,
                         "application/x-git-upload-pack-result", lambda: client_gone(receive), metrics)


async def stream_out(send: Send, cmd: list[str], env: dict[str, str], stdin: BinaryIO, received: int,
                     content_type: str, gone: Callable[[], Awaitable[None]], metrics: MetricsSink) -> None:
    """Run git on a received request and stream its stdout to the client as it comes.
    `gone` resolves when the client hangs up: a clone abandoned half way then stops git
    at once instead of packing the rest for nobody."""
    proc = await spawn(cmd, env, stdin=stdin, limit=CHUNK)
    assert proc.stdout and proc.stderr
    errors = asyncio.create_task(stderr_tail(proc.stderr))
    watch = asyncio.ensure_future(gone())
    started = False
    sent = 0
    service: GitService = "upload-pack"
    try:
        while True:
            read = asyncio.ensure_future(proc.stdout.read(CHUNK))
            await asyncio.wait({read, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                raise ClientGone()
            data = read.result()
            if not data:
                break
            if not started:
                await start_stream(send, 200, content_type)
                started = True
            await send({"type": "http.response.body", "body": data, "more_body": True})
            sent += len(data)
        rc = await proc.wait()
    except ClientGone:
        metrics.git_operation(service, "cut", received, sent)
        await stop_git(proc, kill=True)
        log.warning("git_rpc_cut", cmd=service, error="ClientGone")
        return
    finally:
        watch.cancel()
        await stop_git(proc)
    stderr = await errors
    metrics.git_operation(service, "ok" if rc == 0 else "failed", received, sent)
    if rc != 0:
        log.warning("git_rpc_failed", cmd=service, rc=rc, stderr=stderr[-500:])
        if not started:
            await respond_text(send, 500, "git failed\n")
            return
    elif not started:
        await start_stream(send, 200, content_type)
    await end_stream(send)
