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
import socket
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
        self.transports: list[asyncio.StreamWriter] = []

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
    """Start `cmd`; PIPE ends become asyncio streams, files and DEVNULL are passed as they are.

    The streams run over socket pairs, not pipes: uvloop closes a pipe transport's fd through
    libuv and then closes the file object it was given as well, a second close of the same
    number, which in a process with threads (git's housekeeping runs in one) may already
    belong to a file another thread just opened (seen here: EBADF, and one process's stdin
    read as another's error pipe). A socket given to a transport is detached instead, and
    git reads and writes a socket like a pipe."""
    ends: dict[str, tuple[socket.socket, socket.socket]] = {}
    for name, wanted in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        if wanted == PIPE:
            ends[name] = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def child_side(name: str, given: Stdio) -> Stdio:
        return ends[name][1].fileno() if name in ends else given

    try:
        popen = subprocess.Popen(cmd, stdin=child_side("stdin", stdin), stdout=child_side("stdout", stdout),
                                 stderr=child_side("stderr", stderr), env=env, close_fds=True)
    except BaseException:
        for ours, theirs in ends.values():
            ours.close()
            theirs.close()
        raise
    for _, theirs in ends.values():
        theirs.close()  # the child has its copy
    streams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    try:
        for name, (ours, _) in ends.items():
            streams[name] = await asyncio.open_unix_connection(sock=ours, limit=limit)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    proc = GitProcess(popen, streams["stdin"][1] if "stdin" in streams else None,
                      streams["stdout"][0] if "stdout" in streams else None,
                      streams["stderr"][0] if "stderr" in streams else None)
    # a stream's writer owns its transport: dropping it would close the connection early
    proc.transports = [writer for _, writer in streams.values()]
    return proc
