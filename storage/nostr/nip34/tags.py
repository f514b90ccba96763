"""Readers of the tags NIP-34 events carry: an announcement's clone and relay URLs and its
legacy `maintainers` list, a PR's tip and the repositories it is about, a PR update's root.
Values that cannot be what the tag promises are skipped, not fatal: one bad entry must not
void the rest of a signed event."""

from __future__ import annotations

from storage.nostr.event import Event, is_hex
from storage.nostr.nip34.coordinates import parse_coordinate
from storage.nostr.nip34.kinds import ANNOUNCEMENT, PR, PR_UPDATE, STATE
from storage.nostr.nip34.refs import is_oid


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
