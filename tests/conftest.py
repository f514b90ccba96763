"""Shared fixtures: a fresh real daemon per test that needs one, always stopped afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.daemon import Daemon


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start one or more daemons (each with its own data dir and port) with extra GRASP_ env."""
    started: list[Daemon] = []

    def start(data_dir: Path | None = None, **env: str) -> Daemon:
        target = data_dir or tmp_path / f"data{len(started)}"
        daemon = Daemon(target, {f"GRASP_{k.upper()}": str(v) for k, v in env.items()})
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon()
