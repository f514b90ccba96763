"""What the web view reads from the event store: served announcements (the landing page),
and a repo's issues and PRs with their statuses and replies. Served events only: the
queries go through `EventStore.query`, which never sees the purgatory, and every read has a
limit from the settings. NIP-19 links (`nevent`, `naddr`) are encoded with nostr-sdk."""

from __future__ import annotations

import time

import nostr_sdk

from config import Settings
from relay.web.shown import Listed, Thread, listing, threads
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.sqlite.events import EventStore
from storage.sqlite.view import StoreView

REPLY_KINDS = frozenset({nip34.COMMENT, 1})


async def served_repos(store: EventStore, settings: Settings, needle: str, owner: str | None = None) -> list[Listed]:
    authors = frozenset({owner}) if owner else None
    cap = settings.web_repos_scan_max
    announcements = await store.query([Filter(kinds=frozenset({nip34.ANNOUNCEMENT}), authors=authors, limit=cap)], cap)
    states = await store.query([Filter(kinds=frozenset({nip34.STATE}), limit=cap)], cap)
    return listing(announcements, states, needle)


def maintainers_of(view: StoreView, settings: Settings, owner: str, identifier: str) -> frozenset[str]:
    """The confirmed maintainers, read from served announcements only."""
    return nip34.maintainer_set(owner, identifier, lambda key: view.served_announcement(key, identifier),
                                now=time.time(), limits=nip34.WalkLimits.of(settings))


async def repo_threads(store: EventStore, settings: Settings, coordinates: frozenset[str], kind: int,
                       maintainers: frozenset[str]) -> tuple[list[Thread], bool]:
    """The served issues (1621) or PRs (1618) tagging one of the repo's coordinates, newest
    first, with statuses and reply counts; and whether the list was cut at the limit."""
    cap = settings.web_events_max
    roots = await store.query([Filter(kinds=frozenset({kind}), tags=(("a", coordinates),), limit=cap + 1)], cap + 1)
    more = len(roots) > cap
    roots = roots[:cap]
    if not roots:
        return [], False
    ids = frozenset(e.id for e in roots)
    budget = settings.max_limit
    statuses = await store.query([Filter(kinds=nip34.STATUS_KINDS, tags=(("e", ids),), limit=budget)], budget)
    replies = await store.query([Filter(kinds=REPLY_KINDS, tags=(("E", ids),), limit=budget),
                                 Filter(kinds=REPLY_KINDS, tags=(("e", ids),), limit=budget)], budget)
    return threads(roots, statuses, replies, maintainers), more


def _relays(settings: Settings) -> list[nostr_sdk.RelayUrl]:
    host = settings.domain.split(":")[0]
    scheme = "ws" if host in ("127.0.0.1", "localhost", "::1") else "wss"
    try:
        return [nostr_sdk.RelayUrl.parse(f"{scheme}://{settings.domain}")]
    except Exception:  # nostr-sdk raises its own error family; a link without a relay hint still works
        return []


def nevent(event: Event, settings: Settings) -> str:
    return nostr_sdk.Nip19Event(nostr_sdk.EventId.parse(event.id), nostr_sdk.PublicKey.parse(event.pubkey),
                                nostr_sdk.Kind(event.kind), _relays(settings)).to_bech32()


def naddr(owner: str, identifier: str, settings: Settings) -> str:
    coordinate = nostr_sdk.Coordinate(nostr_sdk.Kind(nip34.ANNOUNCEMENT), nostr_sdk.PublicKey.parse(owner), identifier)
    return nostr_sdk.Nip19Coordinate(coordinate, _relays(settings)).to_bech32()
