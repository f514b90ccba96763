"""Starting and stopping the relays the benchmark compares.

The peer is the PyPI `nostr-relay` 1.14 (gunicorn + SQLite), installed in its own venv under
bench/.peer/venv so its pinned dependencies never touch the project's. Our relay is the
`grasp-relay` console script of the project venv. Both run as subprocesses on a free
127.0.0.1 port with their data in a temporary directory, and both are stopped (SIGTERM, then
SIGKILL) by whoever started them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEER_DIR = BENCH_DIR / ".peer"
PEER_VENV = PEER_DIR / "venv"
PEER_PACKAGE = "nostr-relay==1.14"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_peer_venv(venv: Path = PEER_VENV) -> Path:
    """Create the peer's venv on first use; returns its `nostr-relay` executable."""
    exe = venv / "bin" / "nostr-relay"
    if exe.exists():
        return exe
    print(f"creating {venv} and installing {PEER_PACKAGE} ...", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PEER_PACKAGE], check=True)
    return exe


def peer_config(workdir: Path, port: int) -> dict[str, object]:
    """nostr-relay's YAML config (its package ships config.yaml with these keys). JSON is
    valid YAML, so no YAML library is needed to write it."""
    return {
        "DEBUG": False,
        "relay_name": "nostr-relay bench peer",
        "relay_description": "benchmark peer",
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{workdir / 'nostr.sqlite3'}",
            "num_concurrent_reqs": 10,
            "num_concurrent_adds": 2,
            "validators": [
                "nostr_relay.validators.is_not_too_large",
                "nostr_relay.validators.is_signed",
                "nostr_relay.validators.is_recent",
                "nostr_relay.validators.is_not_hellthread",
            ],
        },
        "verification": {"nip05_verification": "disabled", "expiration": 2592000, "update_frequency": 3600},
        "gunicorn": {"bind": f"127.0.0.1:{port}", "workers": 1, "loglevel": "warning", "reload": False},
        "authentication": {"enabled": False},
        "message_timeout": 1800,
        "subscription_limit": 32,
        "max_limit": 6000,
        "max_event_size": 16384,
        "hellthread_limit": 100,
        "logging": {
            "version": 1,
            "formatters": {"simple": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING",
                                     "formatter": "simple", "stream": "ext://sys.stderr"}},
            "root": {"level": "WARNING", "handlers": ["console"]},
        },
    }


@dataclass
class RelayProcess:
    """One relay under test: its name, websocket URL and process."""

    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> "RelayProcess":
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group (gunicorn has workers), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "RelayProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def peer_relay(workdir: Path, venv: Path = PEER_VENV) -> RelayProcess:
    exe = ensure_peer_venv(venv)
    port = free_port()
    config = workdir / "nostr-relay.yaml"
    config.write_text(json.dumps(peer_config(workdir, port), indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{exe.parent}{os.pathsep}{env.get('PATH', '')}"
    return RelayProcess("nostr-relay", port, [str(exe), "-c", str(config), "serve"], env, workdir)


def default_grasp_binary() -> Path:
    return Path(sys.executable).parent / "grasp-relay"


UNLIMITED = str(10**9)


def grasp_relay(workdir: Path, binary: Path | None = None) -> RelayProcess:
    """Our relay with its per-connection/per-IP rate limits lifted: the bench is one client
    on 127.0.0.1 sending far more than any real client may."""
    binary = binary or default_grasp_binary()
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found (is the project installed in this venv?)")
    port = free_port()
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env.update({
        "GRASP_BIND": f"127.0.0.1:{port}",
        "GRASP_DOMAIN": f"127.0.0.1:{port}",
        "GRASP_DATA_DIR": str(data),
        "GRASP_LOG_LEVEL": "warning",
        "GRASP_SYNC_ENABLED": "false",
        "GRASP_EVENTS_PER_MINUTE_PER_CONN": UNLIMITED,
        "GRASP_EVENTS_PER_MINUTE_PER_IP": UNLIMITED,
        "GRASP_REQS_PER_MINUTE_PER_CONN": UNLIMITED,
    })
    return RelayProcess("grasp-relay", port, [str(binary)], env, workdir)
