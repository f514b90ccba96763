"""Which earlier events of the same connection an event must wait for.

A connection's EVENTs are checked and stored concurrently, so that the store can commit many
in one transaction. But the acceptance rules read what is already stored: a state sent right
behind its announcement, or a comment right behind its issue, would be judged before the
event it depends on is committed. These pure functions name what an event provides and what
it may depend on; the connection makes an event wait only for in-flight events it depends on,
so independent events (the common case) still go in together."""

from __future__ import annotations

from typing import Hashable

from storage.nostr import nip34
from storage.nostr.event import Event, is_hex

_ID_TAGS = ("e", "E", "q")
_COORD_TAGS = ("a", "A", "q")
#: Kinds whose acceptance reads the other announcements of the same identifier.
_BY_IDENTIFIER = (nip34.ANNOUNCEMENT, nip34.STATE)


def provides(event: Event) -> set[Hashable]:
    """The keys other events may depend on: its id, its address, its repo identifier."""
    keys: set[Hashable] = {event.id}
    if event.coordinate is not None:
        keys.add(event.coordinate)
    if event.kind == nip34.ANNOUNCEMENT:
        keys.add(("d", event.d_tag))
    return keys


def depends_on(event: Event) -> set[Hashable]:
    """Keys of events this one may need stored first: what it tags, and for announcements
    and states the announcements of their identifier."""
    keys: set[Hashable] = set()
    for tag in event.tags:
        if len(tag) < 2:
            continue
        if tag[0] in _ID_TAGS and is_hex(tag[1], 64):
            keys.add(tag[1])
        if tag[0] in _COORD_TAGS and nip34.parse_coordinate(tag[1]) is not None:
            keys.add(tag[1])
    if event.kind in _BY_IDENTIFIER:
        keys.add(("d", event.d_tag))
    keys -= provides(event) - {("d", event.d_tag)}
    return keys
