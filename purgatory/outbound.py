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
from dataclasses import dataclass
from urllib.parse import urlsplit


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class OutboundCheck:
    """The verdict on a URL and, when it may be reached, the addresses that were checked:
    connecting to one of those (not to the name again) leaves no room for a DNS answer that
    changes between the check and the connection."""

    refusal: str | None
    addresses: tuple[str, ...] = ()


async def check_outbound(url: str, allow_private: bool) -> OutboundCheck:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return OutboundCheck("malformed URL")
    if not host:
        return OutboundCheck("URL has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        if allow_private:
            return OutboundCheck(None)  # let the connection itself report it
        return OutboundCheck(f"cannot resolve {host}: {exc.strerror or exc}")
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    private = sorted(a for a in addresses if not is_public(a))
    if private and not allow_private:
        return OutboundCheck(
            f"{host} resolves to a non-public address ({private[0]}); set GRASP_OUTBOUND_ALLOW_PRIVATE to allow")
    return OutboundCheck(None, addresses)


async def outbound_refusal(url: str, allow_private: bool) -> str | None:
    """Why the relay must not connect to this URL, or None when it may."""
    return (await check_outbound(url, allow_private)).refusal
