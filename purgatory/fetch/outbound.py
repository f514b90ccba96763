"""Which addresses the relay may connect to on its own initiative (fetching git data from
announced clone URLs, following announced relays).

Anyone who gets an announcement accepted chooses those URLs, so by default the relay refuses
to reach loopback, private, link-local and other non-public addresses: an announcement must
not turn the relay into a probe of its own network. Development setups and tests with every
server on 127.0.0.1 turn this off with GRASP_OUTBOUND_ALLOW_PRIVATE.

The scheme rule holds even then: a git fetch may only speak http or https (libgit2 would
otherwise read local paths, `file://`, `ssh://`, `git://` and scp-like `host:path` clone URLs
too, reaching the relay's own disk or other services), and a peer relay only ws or wss."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

# What each kind of outbound connection may speak.
GIT_SCHEMES: frozenset[str] = frozenset({"http", "https"})
PEER_SCHEMES: frozenset[str] = frozenset({"ws", "wss"})


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
    changes between the check and the connection. No addresses with no refusal means the name
    did not resolve while private addresses are allowed; the connection then fails."""

    refusal: str | None
    addresses: tuple[str, ...] = ()


def _has_unsafe_characters(url: str) -> bool:
    # urlsplit silently drops tabs and newlines and strips leading spaces; libgit2 would not,
    # so a URL that reads differently to the two is refused rather than guessed at.
    return any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url)


def scheme_refusal(url: str, schemes: Collection[str]) -> str | None:
    """Why `url` may not be used for a connection that speaks only `schemes`, or None.
    Only the syntax is looked at; no name is resolved."""
    if _has_unsafe_characters(url):
        return "URL contains whitespace or control characters"
    allowed = ", ".join(sorted(schemes))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "malformed URL"
    if "://" not in url or not parts.scheme:
        return f"not a URL with a scheme (a local path or scp-like host:path); only {allowed} allowed"
    if parts.scheme not in schemes:
        return f"scheme {parts.scheme!r} is not allowed; only {allowed}"
    return None


def _host_and_port(url: str) -> tuple[str | None, int | None] | str:
    """The URL's host and port, or why they cannot be read."""
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:
        return "malformed URL"


async def check_outbound(url: str, allow_private: bool, schemes: Collection[str] = PEER_SCHEMES) -> OutboundCheck:
    """Whether the relay may connect to `url`, speaking one of `schemes` (the default is the
    peer relays' ws/wss; git fetches use `check_clone_url`), and the addresses to use."""
    refusal = scheme_refusal(url, schemes)
    if refusal is not None:
        return OutboundCheck(refusal)
    parsed = _host_and_port(url)
    if isinstance(parsed, str):
        return OutboundCheck(parsed)
    host, port = parsed
    if not host:
        return OutboundCheck("URL has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        if allow_private:
            return OutboundCheck(None)  # let the connection itself report it
        return OutboundCheck(f"cannot resolve {host}: {exc.strerror or exc}")
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    private = sorted(a for a in addresses if not is_public(a))
    if private and not allow_private:
        return OutboundCheck(
            f"{host} resolves to a non-public address ({private[0]}); set GRASP_OUTBOUND_ALLOW_PRIVATE to allow")
    return OutboundCheck(None, addresses)


async def check_clone_url(url: str, allow_private: bool) -> OutboundCheck:
    """`check_outbound` for a git clone URL: http or https only."""
    return await check_outbound(url, allow_private, GIT_SCHEMES)


async def outbound_refusal(url: str, allow_private: bool, schemes: Collection[str] = PEER_SCHEMES) -> str | None:
    """Why the relay must not connect to this URL, or None when it may."""
    return (await check_outbound(url, allow_private, schemes)).refusal
