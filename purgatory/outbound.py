"""Which addresses the relay may connect to on its own initiative (fetching git data from
announced clone URLs, following announced relays).

Anyone who gets an announcement accepted chooses those URLs, so by default the relay refuses
to reach loopback, private, link-local and other non-public addresses: an announcement must
not turn the relay into a probe of its own network. Development setups and tests with every
server on 127.0.0.1 turn this off with GRASP_OUTBOUND_ALLOW_PRIVATE."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


async def outbound_refusal(url: str, allow_private: bool) -> str | None:
    """Why the relay must not connect to this URL, or None when it may."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "malformed URL"
    if not host:
        return "URL has no host"
    if allow_private:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    addresses = {info[4][0] for info in infos}
    private = sorted(a for a in addresses if not is_public(a))
    if private:
        return f"{host} resolves to a non-public address ({private[0]}); set GRASP_OUTBOUND_ALLOW_PRIVATE to allow"
    return None
