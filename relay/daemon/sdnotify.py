"""systemd's readiness protocol, without a dependency.

The unit runs with `Type=notify`, so systemd holds back `systemctl start` (and units ordered
after us) until the daemon reports READY=1: only then is the port really accepting
connections. The protocol is one datagram of `KEY=VALUE` lines to the unix socket named in
$NOTIFY_SOCKET; outside systemd the variable is unset and every call is a cheap no-op."""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def _socket_address(raw: str) -> str | None:
    """Path sockets start with '/', abstract ones with '@' (a leading NUL on the wire).
    Other forms (vsock:...) are for VMs and not ours to support."""
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    return None


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd. Returns False when there is no
    manager listening or the send failed; callers carry on either way, since readiness
    reporting must never take the relay down."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if not raw:
        return False
    address = _socket_address(raw)
    if address is None:
        log.warning("sd_notify_unsupported_socket", notify_socket=raw)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify_failed", notify_socket=raw, error=str(exc))
        return False
    return True


def ready(status: str = "") -> bool:
    """Tell systemd we accept connections; call once the listening socket is bound."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    """Tell systemd a graceful shutdown has begun, so it does not count it as a crash."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """Announce a SIGHUP reload; follow with ready() when it is done."""
    return notify("RELOADING=1")


def status(text: str) -> bool:
    """Free text shown by `systemctl status`."""
    return notify(f"STATUS={text}")
