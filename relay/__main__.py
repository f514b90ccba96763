"""`grasp-relay` (serve in the foreground) and `grasp-relay check-config`.

A bad setting stops the start with one line naming it and exit code 2, so a typo in an
env file is found by the operator, not by a client."""

from __future__ import annotations

import asyncio
import signal
import sys

from types import FrameType
from typing import TYPE_CHECKING

import structlog
import uvicorn
import uvloop

from config import Settings, SettingsError, load_settings
from relay import logs, sdnotify

if TYPE_CHECKING:
    from relay.app import Relay

EXIT_BAD_CONFIG = 2
_SECRET_WORDS = ("secret", "password", "token", "nsec")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command in ("-h", "--help", "help"):
        sys.stderr.write("usage: grasp-relay [serve|check-config]\nsettings come from GRASP_* env vars and .env\n")
        return 0
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"grasp-relay: {exc}\n")
        return EXIT_BAD_CONFIG
    if command == "check-config":
        return check_config(settings)
    if command != "serve":
        sys.stderr.write(f"grasp-relay: unknown command {command!r} (use serve or check-config)\n")
        return EXIT_BAD_CONFIG
    logs.configure(settings.log_level, settings.log_format)
    return serve(settings)


def check_config(settings: Settings) -> int:
    """Print the effective settings (secrets masked), one per line, as env assignments."""
    for name, value in sorted(settings.model_dump().items()):
        if any(word in name for word in _SECRET_WORDS) and value:
            value = "********"
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        sys.stdout.write(f"GRASP_{name.upper()}={value}\n")
    return 0


def serve(settings: Settings) -> int:
    from relay.app import Relay

    relay = Relay(settings)
    config = uvicorn.Config(
        relay,
        host=settings.bind_host,
        port=settings.bind_port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes * 4,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=30,
        ws_ping_timeout=60,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is honoured by relay/ratelimit.py for GRASP_TRUSTED_PROXIES only;
        # uvicorn's own default would believe it from any local peer
        proxy_headers=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = NotifyingServer(config)
    try:
        uvloop.run(_serve(server, relay))
    except KeyboardInterrupt:
        pass
    if not server.started:
        structlog.get_logger(__name__).error("start_failed", bind=settings.bind)
        return 1
    return 0


class NotifyingServer(uvicorn.Server):
    """Tells systemd the moment a stop begins, before the drain, as Type=notify expects."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        sdnotify.stopping()
        super().handle_exit(sig, frame)


async def _serve(server: uvicorn.Server, relay: "Relay") -> None:
    """Run uvicorn (it owns SIGTERM/SIGINT: stop accepting, drain requests, close websockets,
    then our lifespan shutdown flushes the store), reload on SIGHUP, and tell systemd
    (Type=notify) once the socket is listening."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, relay.reload)
    # uvicorn re-raises the stop signal once it has shut down; after a clean drain the
    # process should exit 0, not die of the signal, so the handler it restores is a no-op
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        sdnotify.ready()
    await task


if __name__ == "__main__":
    sys.exit(main())
