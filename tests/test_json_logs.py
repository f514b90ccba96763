"""GRASP_LOG_FORMAT=json means one JSON object per line, for every line the process writes
(stdout and stderr together, uvicorn's own lines included), across a run that starts,
serves a websocket, a push and a clone, and stops; client addresses appear only with
GRASP_ACCESS_LOG on."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.daemon import ALICE, Client, Daemon, announcement, npub_of, state
from tests.gitutil import git, make_repo, push, rev


def parsed_lines(daemon: Daemon) -> list[dict[str, Any]]:
    """Every line of the daemon's output as JSON; fails naming the first that is not."""
    out = []
    for number, line in enumerate(daemon.log_path.read_text(errors="replace").splitlines(), 1):
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(value, dict), f"line {number} is not an object: {line!r}"
        assert {"event", "level", "timestamp"} <= set(value), line
        out.append(value)
    return out


async def serve_a_little(daemon: Daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=2)
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(announcement(ALICE, daemon.domain, "logs")))[0]
        assert (await client.publish(state(ALICE, "logs", {"refs/heads/main": rev(work)})))[0]
        url = f"{daemon.http_url}/{npub_of(ALICE)}/logs.git"
        assert push(work, url, "main").returncode == 0
        git("clone", "--quiet", url, str(tmp_path / "clone"))
        assert rev(tmp_path / "clone") == rev(work)
        assert await client.query({"kinds": [30617]}) != []
    finally:
        await client.close()
    assert daemon.get("/health")[0] == 200
    assert daemon.get("/no-such-page")[0] == 404


async def test_every_line_of_a_run_is_one_json_object_without_client_addresses(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    await serve_a_little(daemon, tmp_path)
    assert daemon.stop(signal.SIGTERM) == 0
    lines = parsed_lines(daemon)
    events = [line["event"] for line in lines]
    # uvicorn's own lines are among them, rendered by the same processors
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
    for expected in ("relay_started", "connection_open", "pushed", "relay_stopped"):
        assert expected in events, (expected, events)
    for line in lines:
        assert "ip" not in line and "client" not in line, line
        assert "WebSocket" not in line["event"] and "HTTP/1.1" not in line["event"], line


async def test_access_log_when_enabled_is_json_with_the_client(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(access_log="true")
    client = await Client.connect(daemon.ws_url)
    await client.query({"kinds": [1]})
    await client.close()
    assert daemon.get("/health")[0] == 200
    assert daemon.stop(signal.SIGTERM) == 0
    lines = parsed_lines(daemon)
    requests = [line for line in lines if line["event"] == "http_request"]
    assert any(r["path"] == "/health" and r["status"] == 200 and r["method"] == "GET"
               and r["client"].startswith("127.0.0.1:") for r in requests), requests
    upgrades = [line for line in lines if line["event"] == "websocket_upgrade"]
    assert upgrades and upgrades[0]["client"].startswith("127.0.0.1:") and upgrades[0]["path"] == "/"
    assert any(line["event"] == "connection_open" and line["ip"] == "127.0.0.1" for line in lines)
