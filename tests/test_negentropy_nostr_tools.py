"""nostr-tools' NIP-77 client (`nip77.NegentropySync`, a second independent negentropy
implementation, in JavaScript) reconciles against the daemon both ways. It runs under node
from tests/node, whose packages .ci/run installs (`npm ci`); without node or those packages
the test is skipped, never installed from the network here."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from storage.nostr.event import Event, sign_event
from tests.daemon import Client

NODE_DIR = Path(__file__).parent / "node"
KIND = 10317

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "nostr-tools").is_dir(),
    reason="node or tests/node's packages (npm ci in tests/node) are missing")


def grasp_list(created_at: int) -> Event:
    return sign_event(os.urandom(32).hex(), KIND, "", [["g", "wss://example.invalid"]], created_at)


def nostr_tools_sync(url: str, filter_: dict[str, object], items: list[Event], tmp: Path) -> dict[str, object]:
    job = tmp / "nip77-input.json"
    job.write_text(json.dumps({"filter": filter_, "items": [[e.created_at, e.id] for e in items]}))
    done = subprocess.run(["node", str(NODE_DIR / "nip77_sync.mjs"), url, str(job)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_nostr_tools_reconciles_both_ways(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(negentropy_frame_max_bytes="4096")  # several rounds for 300 ids
    relay_events = [grasp_list(1_600_000_000 + i // 2) for i in range(400)]
    client_only = [grasp_list(1_650_000_000 + i) for i in range(9)]
    raw = await Client.connect(daemon.ws_url)
    try:
        for event in relay_events:
            await raw.ws.send(json.dumps(["EVENT", event.to_dict()]))
        for _ in relay_events:
            assert (await raw.recv())[2]
    finally:
        await raw.close()
    result = await asyncio.to_thread(nostr_tools_sync, daemon.ws_url, {"kinds": [KIND]},
                                     relay_events[:100] + client_only, tmp_path)
    assert result["error"] is None
    assert set(result["have"]) == {e.id for e in client_only}  # type: ignore[arg-type]
    assert set(result["need"]) == {e.id for e in relay_events[100:]}  # type: ignore[arg-type]
