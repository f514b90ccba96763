"""Starting git processes without stalling the event loop.

uvloop (libuv) starts a child with `fork()` on the event loop thread, and fork copies the
page tables of the whole daemon: measured here 5 ms at 70 MB RSS, 16 ms at 260 MB, 76 ms at
2 GB, during which no websocket client is served; a clone or push starts one or two git
processes. CPython's `subprocess.Popen` uses vfork (or posix_spawn), whose cost does not grow
with the parent's memory (0.3 to 0.6 ms at any size: see bench/spawn_bench.py), so git is
started with it, directly on the loop, and its pipes are handed to asyncio. Its exit is
awaited through a pidfd (Linux >= 5.3), so no thread waits per process and libuv's SIGCHLD
handler, which reaps only the children libuv started, never races us for the status.

`GitProcess` offers what the callers used of `asyncio.subprocess.Process`: `stdin`,
`stdout`, `stderr` streams, `returncode`, `wait()` and `kill()`."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import IO, Any

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
Stdio = int | IO[Any] | None


class GitProcess:
    """A child started by `spawn`, with asyncio streams on its pipes."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter | None,
                 stdout: asyncio.StreamReader | None, stderr: asyncio.StreamReader | None) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._exited: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    async def wait(self) -> int:
        code = self.popen.poll()
        if code is not None:
            return code
        if self._exited is None:
            self._exited = _exit_future(self.popen)
        return await asyncio.shield(self._exited)


def _exit_future(popen: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """Resolves with the exit code once the child ends: a pidfd becomes readable then."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    pidfd = os.pidfd_open(popen.pid)

    def ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not future.done():
            future.set_result(popen.wait())  # exited: waitpid returns at once

    loop.add_reader(pidfd, ready)
    if popen.poll() is not None:  # ended between the first look and the reader
        ready()
    return future


async def spawn(cmd: list[str], env: dict[str, str], stdin: Stdio = DEVNULL, stdout: Stdio = PIPE,
                stderr: Stdio = PIPE, limit: int = 64 * 1024) -> GitProcess:
    """Start `cmd`; PIPE ends become asyncio streams, files and DEVNULL are passed as they are."""
    loop = asyncio.get_running_loop()
    popen = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env, close_fds=True)
    try:
        writer = await _writer(loop, popen.stdin) if stdin == PIPE else None
        out = await _reader(loop, popen.stdout, limit) if stdout == PIPE else None
        err = await _reader(loop, popen.stderr, limit) if stderr == PIPE else None
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return GitProcess(popen, writer, out, err)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes] | None, limit: int) -> asyncio.StreamReader:
    assert pipe is not None
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


async def _writer(loop: asyncio.AbstractEventLoop, pipe: IO[bytes] | None) -> asyncio.StreamWriter:
    assert pipe is not None
    transport, protocol = await loop.connect_write_pipe(lambda: _DrainProtocol(loop), pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)


class _DrainProtocol(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """Flow control for a pipe we write to (what asyncio's subprocess transport uses)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
