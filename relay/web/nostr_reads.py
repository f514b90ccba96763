"""What the web view reads from the event store: served announcements (the landing page),
and a repo's issues and PRs with their statuses and replies. Served events only: the
queries go through `EventStore.query`, which never sees the purgatory, and every read has a
limit from the settings. NIP-19 links (`nevent`, `naddr`) are encoded with nostr-sdk."""

from __future__ import annotations

import time
from typing import AsyncIterator

import nostr_sdk

from config import Settings
from relay.web.shown import Listed, Thread, listed, listing, threads
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.sqlite.events import EventStore
from storage.sqlite.view import StoreView

REPLY_KINDS = frozenset({nip34.COMMENT, 1})


SCAN_CHUNK = 200


async def _scan(store: EventStore, kind: int, authors: frozenset[str] | None, cap: int) -> AsyncIterator[Event]:
    """Up to `cap` served events of `kind`, newest first, read `SCAN_CHUNK` at a time so
    that only one chunk of (possibly large) events is in memory at once."""
    until: int | None = None
    seen: set[str] = set()
    while len(seen) < cap:
        want = min(SCAN_CHUNK, cap - len(seen))
        batch = await store.query([Filter(kinds=frozenset({kind}), authors=authors, until=until, limit=want)], want)
        fresh = [event for event in batch if event.id not in seen]
        for event in fresh:
            seen.add(event.id)
            yield event
        if len(batch) < want or not batch:
            return
        # `until` is inclusive: the last second comes again (deduplicated); when a whole
        # chunk shares it, step past it rather than read the same chunk forever
        until = batch[-1].created_at - (0 if fresh else 1)


async def served_repos(store: EventStore, settings: Settings, needle: str, owner: str | None = None) -> list[Listed]:
    authors = frozenset({owner}) if owner else None
    cap = settings.web_repos_scan_max
    repos = [listed(event) async for event in _scan(store, nip34.ANNOUNCEMENT, authors, cap)]
    newest_state: dict[str, int] = {}
    async for st in _scan(store, nip34.STATE, None, cap):
        newest_state[st.d_tag] = max(newest_state.get(st.d_tag, 0), st.created_at)
    return listing(repos, newest_state, needle)


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
