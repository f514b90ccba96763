"""Which peer relays to follow and what to ask each for (pure: values in, plans out).

A peer is every other relay named in the `relays` tag of an accepted announcement, plus the
operator's bootstrap relays (GRASP_SYNC_BOOTSTRAP_RELAYS), which are asked about every
repository. What a peer is asked for comes in three layers, because the events that make a
repository's life do not all carry its address:

1. announcements and states, by `#d` (the identifier);
2. events tagging a repository's coordinate (`#a`, `#A`, `#q`): issues, patches, PRs;
3. events tagging those root events (`#e`, `#E`, `#q`): NIP-22 comments (1111, `E`) and
   status events (1630-1633, `e`), so whole conversations arrive, not only their openings.

Each layer's values are cut into filters of at most `values_per_filter`, so a peer never
gets a filter longer than it will read. An announcement still held in the purgatory adds its
identifier only: events tagging it would be refused while it anchors nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storage.nostr import nip34
from storage.nostr.event import Event

#: the tags of layer 2 (naming a repository coordinate) and layer 3 (naming a root event)
COORDINATE_TAGS = ("a", "A", "q")
ROOT_TAGS = ("e", "E", "q")


@dataclass(frozen=True)
class PeerPlan:
    """The identifiers, repository coordinates and root event ids to ask one peer about."""

    identifiers: frozenset[str] = frozenset()
    coordinates: frozenset[str] = frozenset()
    roots: frozenset[str] = frozenset()
    #: a bootstrap relay is also asked for every announcement: how repositories listing us
    #: are discovered at all (the policy refuses those that do not)
    discover: bool = False

    def __bool__(self) -> bool:
        return bool(self.identifiers or self.coordinates or self.roots or self.discover)

    def minus(self, other: PeerPlan) -> PeerPlan:
        """What this plan asks for that `other` does not (the values new to a connection)."""
        return PeerPlan(self.identifiers - other.identifiers, self.coordinates - other.coordinates,
                        self.roots - other.roots, self.discover and not other.discover)

    def union(self, other: PeerPlan) -> PeerPlan:
        return PeerPlan(self.identifiers | other.identifiers, self.coordinates | other.coordinates,
                        self.roots | other.roots, self.discover or other.discover)

    def filters(self, values_per_filter: int, since: int | None = None) -> list[dict[str, Any]]:
        """The layered filters, in layer order (parents are asked for before what hangs on
        them); with `since`, only what is newer than that."""
        out: list[dict[str, Any]] = [{"kinds": [nip34.ANNOUNCEMENT]}] if self.discover else []
        for chunk in chunks(sorted(self.identifiers), values_per_filter):
            out.append({"kinds": [nip34.ANNOUNCEMENT, nip34.STATE], "#d": chunk})
        for values, tags in ((self.coordinates, COORDINATE_TAGS), (self.roots, ROOT_TAGS)):
            for chunk in chunks(sorted(values), values_per_filter):
                out.extend({f"#{tag}": chunk} for tag in tags)
        if since is not None:
            out = [{**f, "since": since} for f in out]
        return out


def chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def normalise(url: str) -> str | None:
    """A relay URL as it is followed (ws/wss only, no trailing slash), or None."""
    url = url.strip().rstrip("/")
    return url if url.startswith(("ws://", "wss://")) else None


def plan_peers(announcements: Iterable[Event], own_domain: str, max_peers: int,
               waiting: frozenset[str] = frozenset(), roots: dict[str, frozenset[str]] | None = None,
               bootstrap: Iterable[str] = ()) -> dict[str, PeerPlan]:
    """Every other relay named by an accepted announcement, with what to ask it for; at most
    `max_peers`, the bootstrap relays first, then the most named. `waiting` holds the ids of
    announcements still in the purgatory; `roots` maps a coordinate to the ids of the served
    events tagging it (layer 3)."""
    roots = roots or {}
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    every: tuple[set[str], set[str]] = (set(), set())
    for ann in announcements:
        coordinate = nip34.repo_coordinate(ann.pubkey, ann.d_tag)
        targets = [every]
        for raw in nip34.relay_urls(ann):
            url = normalise(raw)
            if url is not None and not nip34.is_our_relay_url(url, own_domain):
                targets.append(wanted.setdefault(url, (set(), set())))
        for identifiers, coordinates in targets:
            identifiers.add(ann.d_tag)
            if ann.id not in waiting:
                coordinates.add(coordinate)
    boot = [u for u in dict.fromkeys(normalise(b) for b in bootstrap)
            if u is not None and not nip34.is_our_relay_url(u, own_domain)]
    for url in boot:
        identifiers, coordinates = wanted.setdefault(url, (set(), set()))
        identifiers |= every[0]
        coordinates |= every[1]
    ranked = sorted(wanted, key=lambda u: (u not in boot, -len(wanted[u][1]), -len(wanted[u][0]), u))[:max_peers]
    plans = {}
    for url in ranked:
        identifiers, coordinates = wanted[url]
        ids = frozenset(i for c in coordinates for i in roots.get(c, ()))
        plans[url] = PeerPlan(frozenset(identifiers), frozenset(coordinates), ids, url in boot)
    return plans


def root_map(events: Iterable[Event], coordinates: frozenset[str]) -> dict[str, frozenset[str]]:
    """coordinate -> ids of the served events tagging it (issues, patches, PRs): the roots
    whose conversations layer 3 asks for."""
    found: dict[str, set[str]] = {}
    for event in events:
        for tag in event.tags:
            if len(tag) >= 2 and tag[0] in COORDINATE_TAGS and tag[1] in coordinates:
                found.setdefault(tag[1], set()).add(event.id)
    return {c: frozenset(ids) for c, ids in found.items()}


def is_root_candidate(event: Event) -> bool:
    """Does storing this event possibly change a plan (a new repository, new relays, or a new
    root whose conversation layer 3 should ask for)?"""
    if event.kind == nip34.ANNOUNCEMENT:
        return True
    return any(len(t) >= 2 and t[0] in COORDINATE_TAGS and t[1].startswith(f"{nip34.ANNOUNCEMENT}:")
               for t in event.tags)
