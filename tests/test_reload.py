"""SIGHUP re-reads GRASP_CONFIG_FILE, through the real daemon: the file is edited, the signal
sent, and the change observed from outside (a blocked author, the NIP-11 name, the log
level), with the reload's log line saying what was applied and what needs a restart."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from relay.daemon.reload import RELOADABLE, plan
from storage.nostr.event import sign_event
from tests.daemon import BOB, CAROL, Client, Daemon, now, npub_of, wait_for, wait_log


def nip11(daemon: Daemon) -> dict[str, Any]:
    return json.loads(daemon.get("/", {"Accept": "application/nostr+json"})[2])


@pytest.fixture
def daemon_with_config(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """A daemon whose GRASP_CONFIG_FILE sets the log level (the environment does not)."""
    started: list[Daemon] = []

    def start(conf: Path, **env: str) -> Daemon:
        daemon = Daemon(tmp_path / "data", {"GRASP_CONFIG_FILE": str(conf), **env},
                        unset=frozenset({"GRASP_LOG_LEVEL"}))
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


async def test_sighup_applies_the_config_file_and_says_what_needs_a_restart(daemon_with_config,
                                                                           tmp_path: Path) -> None:
    conf = tmp_path / "grasp-relay.env"
    conf.write_text("GRASP_RELAY_NAME=before\nGRASP_LOG_LEVEL=info\n")
    daemon = daemon_with_config(conf, GRASP_RELAY_CONTACT="from-the-environment")
    assert nip11(daemon)["name"] == "before"
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(sign_event(CAROL, 10317, "", [], now() - 5)))[0]
        conf.write_text(
            "# edited while the relay runs\n"
            f"GRASP_PUBKEY_BLACKLIST={npub_of(CAROL)}\n"
            "GRASP_RELAY_NAME=after\n"
            "GRASP_LOG_LEVEL=debug\n"
            "GRASP_MAX_PUSH_BYTES=2GiB\n"
            "GRASP_RELAY_CONTACT=from-the-file\n"
        )
        mark = daemon.log_length()
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        line = await wait_log(daemon, "reloaded", mark)
        assert line["applied"] == ["GRASP_LOG_LEVEL", "GRASP_PUBKEY_BLACKLIST", "GRASP_RELAY_NAME"]
        assert line["restart_needed"] == ["GRASP_MAX_PUSH_BYTES"]
        assert line["overridden_by_environment"] == ["GRASP_RELAY_CONTACT"]
        assert line["config_file"] == str(conf)
        ok, msg = await client.publish(sign_event(CAROL, 10317, "", [["g", "x"]], now()))
        assert not ok and msg.startswith("blocked:")
        assert (await client.publish(sign_event(BOB, 10317, "", [], now())))[0]
        doc = nip11(daemon)
        assert doc["name"] == "after" and doc["contact"] == "from-the-environment"
        assert "curation" in doc
        # a bad edit keeps the running settings, and says why
        conf.write_text("GRASP_MAX_LIMIT=lots\n")
        mark = daemon.log_length()
        daemon.proc.send_signal(signal.SIGHUP)
        failed = await wait_log(daemon, "reload_failed", mark)
        assert "GRASP_MAX_LIMIT" in failed["error"]
        ok, _ = await client.publish(sign_event(CAROL, 10317, "", [["g", "y"]], now()))
        assert not ok and nip11(daemon)["name"] == "after"
    finally:
        await client.close()


async def test_sighup_log_level_takes_effect(daemon_with_config, tmp_path: Path) -> None:
    """warning: per-connection info lines stop; back to info: they come back."""
    conf = tmp_path / "grasp-relay.env"
    conf.write_text("GRASP_LOG_LEVEL=info\n")
    daemon = daemon_with_config(conf)
    assert daemon.proc is not None

    async def connection_lines_after(mark: int) -> int:
        client = await Client.connect(daemon.ws_url)
        await client.query({"kinds": [1]})
        await client.close()
        return sum('"connection_open"' in line for line in
                   daemon.log_path.read_text().splitlines()[mark:])

    conf.write_text("GRASP_LOG_LEVEL=warning\n")
    mark = daemon.log_length()
    daemon.proc.send_signal(signal.SIGHUP)
    # the reload line itself is info, so it is not shown at warning: wait for the effect
    async def quiet() -> bool:
        return await connection_lines_after(daemon.log_length()) == 0

    await wait_for(quiet, "no connection_open line at level warning", timeout=10)
    conf.write_text("GRASP_LOG_LEVEL=info\n")
    mark = daemon.log_length()
    daemon.proc.send_signal(signal.SIGHUP)
    line = await wait_log(daemon, "reloaded", mark)
    assert line["applied"] == ["GRASP_LOG_LEVEL"]
    assert await connection_lines_after(daemon.log_length()) == 1


def test_plan_lists_changes_by_kind() -> None:
    running = Settings(_env_file=None)  # type: ignore[call-arg]
    fresh = Settings(_env_file=None, max_limit=10, default_limit=10, bind="127.0.0.1:9999",  # type: ignore[call-arg]
                     log_level="debug")
    change = plan(running, fresh)
    assert change.applied == ("default_limit", "log_level", "max_limit")
    assert change.restart_needed == ("bind",)
    assert plan(running, running).applied == () == plan(running, running).restart_needed
    assert RELOADABLE <= set(Settings.model_fields)
