"""Does a URL point at this service? An announcement's clone URL naming the owner's repo here,
a relay URL naming this relay, any http(s)/ws(s) URL naming our domain: hosts compare
case-insensitively and a missing port is the scheme's default."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from storage.nostr.event import Event
from storage.nostr.nip34.keys import hex_to_npub
from storage.nostr.nip34.tags import clone_urls, relay_urls

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_CLONE_SCHEMES = frozenset({"http", "https"})
_RELAY_SCHEMES = frozenset({"ws", "wss"})


def _host_port(domain: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + domain.strip())
        return (parts.hostname or "", parts.port)
    except ValueError:
        return None


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts


def _points_at(parts: SplitResult, domain: str) -> bool:
    default = _DEFAULT_PORTS.get(parts.scheme)
    ours = _host_port(domain)
    if default is None or ours is None or not parts.hostname:
        return False
    our_host, our_port = ours
    url_port = parts.port if parts.port is not None else default
    return parts.hostname == our_host.lower() and url_port == (our_port or default)


def service_urls_match(url: str, domain: str) -> bool:
    """Does an http(s)/ws(s) URL point at `domain` (host[:port])? Hosts compare
    case-insensitively; a missing port on either side is the scheme's default."""
    parts = _split(url)
    return parts is not None and _points_at(parts, domain)


def is_our_relay_url(url: str, domain: str) -> bool:
    """A `relays` entry naming this relay: ws(s)://domain with no path beyond `/`."""
    parts = _split(url)
    if parts is None or parts.scheme not in _RELAY_SCHEMES:
        return False
    return parts.path in ("", "/") and not parts.query and not parts.fragment and _points_at(parts, domain)


def is_our_clone_url(url: str, domain: str, owner: str, identifier: str) -> bool:
    """A `clone` entry naming the owner's repo here: http(s)://domain/<npub>/<d>.git.
    Contributor URLs under `/prs/` never match (they have an extra path segment)."""
    parts = _split(url)
    if parts is None or parts.scheme not in _CLONE_SCHEMES or parts.query or parts.fragment:
        return False
    if not _points_at(parts, domain):
        return False
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")
    if len(segments) != 3 or segments[0] != "":
        return False
    npub, repo = segments[1].lower(), unquote(segments[2])
    return npub == hex_to_npub(owner) and repo == f"{identifier}.git"


def announcement_lists_us(event: Event, domain: str) -> tuple[bool, bool]:
    """(our clone URL is in `clone`, our relay is in `relays`) for an announcement."""
    identifier = event.d_tag
    clone_ok = any(is_our_clone_url(u, domain, event.pubkey, identifier) for u in clone_urls(event))
    relay_ok = any(is_our_relay_url(u, domain) for u in relay_urls(event))
    return clone_ok, relay_ok
