"""NIP-34 facts as pure functions: kinds, coordinates, tag readers, the recursive maintainer
set and "does this URL point at us".

No I/O here, so the acceptance policy, the push authoriser and the purgatory can share one
reading of the spec and it is unit-tested in isolation."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable
from urllib.parse import SplitResult, unquote, urlsplit

from storage.event import Event, is_hex

# --- kinds -------------------------------------------------------------------------------
DELETION = 5
PATCH = 1617
PR = 1618
PR_UPDATE = 1619
ISSUE = 1621
COMMENT = 1111
STATUS_OPEN = 1630
STATUS_APPLIED = 1631
STATUS_CLOSED = 1632
STATUS_DRAFT = 1633
STATUS_KINDS = frozenset({STATUS_OPEN, STATUS_APPLIED, STATUS_CLOSED, STATUS_DRAFT})
GRASP_LIST = 10317
ANNOUNCEMENT = 30617
STATE = 30618

#: Kinds the purgatory may hold: they promise git data that may not be here yet.
GIT_DATA_KINDS = frozenset({ANNOUNCEMENT, STATE, PR, PR_UPDATE})

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_CLONE_SCHEMES = frozenset({"http", "https"})
_RELAY_SCHEMES = frozenset({"ws", "wss"})
#: A repo lives at `<data_dir>/repos/<npub>/<identifier>.git`; the name must fit one
#: path component (255 bytes on common filesystems) with its `.git` suffix.
MAX_IDENTIFIER_BYTES = 251


# --- keys --------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def hex_to_npub(pubkey_hex: str) -> str:
    """Bech32 of a hex pubkey; cached because every announcement check needs the owner's."""
    from nostr_sdk import PublicKey

    return PublicKey.parse(pubkey_hex).to_bech32()


def npub_to_hex(value: str) -> str | None:
    """Hex pubkey of an `npub1...`, or None for anything else (operator lists hold junk too)."""
    if not value.startswith("npub1"):
        return None
    from nostr_sdk import PublicKey

    try:
        return PublicKey.parse(value).to_hex()
    except Exception:  # nostr-sdk raises its own error family; any failure means "not an npub"
        return None


def pubkey_from_operator_value(value: str) -> str | None:
    """Operators write pubkeys as hex or npub in settings; accept both."""
    value = value.strip()
    if is_hex(value.lower(), 64):
        return value.lower()
    return npub_to_hex(value)


# --- identifiers and coordinates -----------------------------------------------------------
def identifier_problem(identifier: str) -> str | None:
    """Why an identifier cannot name a repo here (it becomes a directory name), or None."""
    if not identifier:
        return "repository identifier (d tag) is empty"
    if identifier in (".", ".."):
        return "repository identifier cannot be '.' or '..'"
    if any(ch in identifier for ch in ("/", "\\", "\0")):
        return "repository identifier cannot contain '/', '\\' or NUL"
    if len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        return f"repository identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
    return None


def repo_coordinate(pubkey: str, identifier: str) -> str:
    return f"{ANNOUNCEMENT}:{pubkey}:{identifier}"


def parse_coordinate(value: str) -> tuple[int, str, str] | None:
    """`kind:pubkey:d` -> parts, or None. The d part may itself contain ':'."""
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    kind_s, pubkey, d = parts
    if not kind_s.isdigit() or len(kind_s) > 5 or not is_hex(pubkey, 64):
        return None
    kind = int(kind_s)
    return (kind, pubkey, d) if kind <= 65535 else None


# --- tag readers ---------------------------------------------------------------------------
def clone_urls(event: Event) -> list[str]:
    return event.tag_all_values("clone")


def relay_urls(event: Event) -> list[str]:
    return event.tag_all_values("relays")


def maintainers(event: Event) -> list[str]:
    """Valid hex pubkeys of the `maintainers` tags, deduplicated in order; junk is ignored
    because one bad entry must not void the rest of a signed list."""
    seen: dict[str, None] = {}
    for value in event.tag_all_values("maintainers"):
        if is_hex(value, 64):
            seen.setdefault(value, None)
    return list(seen)


def is_oid(value: object) -> bool:
    """A git object id as events and the git protocol spell it: 40 (SHA-1) or 64 (SHA-256)
    lowercase hex characters."""
    return is_hex(value, 40) or is_hex(value, 64)


def state_identifier(event: Event) -> str | None:
    return event.d_tag if event.kind == STATE else None


def pr_tip(event: Event) -> str | None:
    """The tip commit a PR or PR update promises (`c` tag), if it is a plausible object id."""
    if event.kind not in (PR, PR_UPDATE):
        return None
    for value in event.tag_values("c"):
        if is_oid(value):
            return value
    return None


def pr_repo_coordinates(event: Event) -> list[str]:
    """The repository coordinates (`a` tags of kind 30617) an event is about."""
    out: list[str] = []
    for value in event.tag_values("a"):
        parsed = parse_coordinate(value)
        if parsed is not None and parsed[0] == ANNOUNCEMENT and value not in out:
            out.append(value)
    return out


def pr_root(event: Event) -> str | None:
    """The root PR id of a PR update (NIP-22 `E` tag)."""
    if event.kind != PR_UPDATE:
        return None
    for value in event.tag_values("E"):
        if is_hex(value, 64):
            return value
    return None


# --- repository state ----------------------------------------------------------------------
BRANCH_AND_TAG = ("refs/heads/", "refs/tags/")


def state_refs(event: Event) -> tuple[dict[str, str], str | None]:
    """Branches/tags and the HEAD branch a 30618 state event lists.

    Peeled entries (`refs/tags/v1^{}`) and values that are not object ids are ignored: they
    are not refs a repo can hold."""
    refs: dict[str, str] = {}
    head: str | None = None
    for tag in event.tags:
        if len(tag) < 2:
            continue
        name, value = tag[0], tag[1]
        if name == "HEAD":
            if value.startswith("ref: refs/heads/"):
                head = value[5:].strip()
        elif name.startswith(BRANCH_AND_TAG) and "^{}" not in name:
            value = value.strip().lower()
            if is_oid(value):
                refs[name] = value
    return refs, head


# --- maintainers ---------------------------------------------------------------------------
def maintainer_set(
    owner: str, identifier: str, announcement_of: Callable[[str], Event | None]
) -> frozenset[str]:
    """Everyone whose state events are authoritative for `owner`'s repo `identifier`.

    Starts from the owner and follows the `maintainers` of every member that has its own
    announcement for the same identifier, until nothing new is added. Each member is looked
    up at most once, so cycles (A lists B, B lists A) end."""
    members: set[str] = {owner}
    pending = [owner]
    while pending:
        member = pending.pop()
        ann = announcement_of(member)
        if ann is None or ann.kind != ANNOUNCEMENT or ann.pubkey != member:
            continue
        if ann.d_tag != identifier:
            continue
        for maintainer in maintainers(ann):
            if maintainer not in members:
                members.add(maintainer)
                pending.append(maintainer)
    return frozenset(members)


def owners_authorising(
    author: str, announcements: list[Event], announcement_of: Callable[[str], Event | None]
) -> list[str]:
    """Owners (authors of `announcements`, one identifier) whose maintainer set holds `author`."""
    owners: list[str] = []
    for ann in announcements:
        if ann.pubkey in owners:
            continue
        if author in maintainer_set(ann.pubkey, ann.d_tag, announcement_of):
            owners.append(ann.pubkey)
    return owners


# --- does a URL point at this service? -----------------------------------------------------
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
