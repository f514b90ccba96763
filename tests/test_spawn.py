"""relay.git.spawn under uvloop with real processes: the streams carry every byte, exit codes
arrive through the pidfd, and many spawns beside threads that start processes of their own
(git's housekeeping does) never close another thread's file descriptor (with pipes, uvloop
closed each fd twice: EBADF, or one process's input read as another's error pipe)."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import tempfile

import uvloop

from relay.git.spawn import PIPE, spawn


async def _piped() -> bytes:
    proc = await spawn(["sh", "-c", "printf hello; printf oops >&2; exit 3"], dict(os.environ))
    assert proc.stdout and proc.stderr
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    assert await proc.wait() == 3 and err == b"oops"
    return out


async def _filed() -> bytes:
    with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as sink:
        source.write(b"x" * 100_000)
        source.flush()
        source.seek(0)
        proc = await spawn(["cat"], dict(os.environ), stdin=source, stdout=sink)
        assert proc.stderr
        await proc.stderr.read()
        assert await proc.wait() == 0
        sink.seek(0)
        return sink.read()


async def _fed() -> bytes:
    proc = await spawn(["cat"], dict(os.environ), stdin=PIPE)
    assert proc.stdin and proc.stdout
    proc.stdin.write(b"y" * 300_000)
    await proc.stdin.drain()
    proc.stdin.close()
    out = await proc.stdout.read()
    await proc.wait()
    return out


async def _many() -> None:
    async def threads() -> None:
        for _ in range(150):
            await asyncio.to_thread(subprocess.run, ["true"], capture_output=True)

    background = asyncio.create_task(threads())
    for round_ in range(60):
        outs = await asyncio.gather(_piped(), _piped(), _filed(), _fed())
        assert outs == [b"hello", b"hello", b"x" * 100_000, b"y" * 300_000]
        if round_ % 10 == 0:
            gc.collect()
    await background


def test_spawn_beside_threads_under_uvloop() -> None:
    uvloop.run(_many())


def test_spawn_on_the_standard_loop() -> None:
    asyncio.run(_many())
