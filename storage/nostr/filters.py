"""NIP-01 filters, parsed by our own code.

nostr-sdk's `Filter.from_json` drops keys it does not know, which would silently widen a
query; here an unknown key or a multi-letter tag key is an error the client is told about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.nostr.event import SQLITE_INT_MAX, Event, is_hex

TAG_KEY_PREFIX = "#"
KNOWN_KEYS = frozenset({"ids", "authors", "kinds", "since", "until", "limit", "search"})


class FilterError(ValueError):
    """A filter we refuse; the message is client-facing."""


@dataclass(frozen=True, slots=True)
class Filter:
    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: tuple[tuple[str, frozenset[str]], ...] = ()
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    @classmethod
    def from_dict(cls, obj: Any, max_limit: int | None = None) -> Filter:
        if not isinstance(obj, dict):
            raise FilterError("filter is not a JSON object")
        tags: list[tuple[str, frozenset[str]]] = []
        for key, value in obj.items():
            if key.startswith(TAG_KEY_PREFIX):
                name = key[1:]
                if len(name) != 1 or not name.isalpha():
                    raise FilterError(f"unsupported tag filter {shown(key)}: only single-letter tags")
                tags.append((name, frozenset(_strings(key, value))))
            elif key not in KNOWN_KEYS:
                raise FilterError(f"unknown filter key {shown(key)}")
        if "search" in obj:
            raise FilterError("search (NIP-50) is not supported")
        limit = _int_or_none(obj, "limit")
        if limit is not None and max_limit is not None:
            limit = min(limit, max_limit)
        return cls(
            ids=_hex_set(obj, "ids"),
            authors=_hex_set(obj, "authors"),
            kinds=_kinds(obj),
            tags=tuple(sorted(tags)),
            since=_int_or_none(obj, "since"),
            until=_int_or_none(obj, "until"),
            limit=limit,
        )

    def matches(self, event: Event) -> bool:
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for name, values in self.tags:
            if not any(t[0] == name and len(t) > 1 and t[1] in values for t in event.tags):
                return False
        return True

    @property
    def is_empty_result(self) -> bool:
        """A filter that can match nothing (an empty list, `limit: 0`) needs no query."""
        return (
            self.limit == 0
            or self.ids == frozenset()
            or self.authors == frozenset()
            or self.kinds == frozenset()
            or any(not values for _, values in self.tags)
        )


def _strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"{key} must be a list of strings")
    for v in value:
        if not encodable(v):
            raise FilterError(f"{key} holds a string that is not valid Unicode (a lone surrogate)")
    return value


def shown(value: str, limit: int = 40) -> str:
    """A client's string as quoted in an answer: repr (so lone surrogates are escaped and the
    frame stays valid UTF-8) and cut short (a 200 kB key must not come back as a 200 kB
    NOTICE)."""
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def encodable(text: str) -> bool:
    """Can `text` be sent or bound as UTF-8? JSON's `\\ud800` escapes decode to lone
    surrogates, which SQLite and the websocket both refuse, so they are caught while parsing
    instead of as an exception deep in a query or a send."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hex_set(obj: dict[str, Any], key: str) -> frozenset[str] | None:
    if key not in obj:
        return None
    values = _strings(key, obj[key])
    if not all(is_hex(v, 64) for v in values):
        raise FilterError(f"{key} must be 64-character lowercase hex strings")
    return frozenset(values)


def _kinds(obj: dict[str, Any]) -> frozenset[int] | None:
    if "kinds" not in obj:
        return None
    value = obj["kinds"]
    if not isinstance(value, list) or not all(type(k) is int and 0 <= k <= 65535 for k in value):
        raise FilterError("kinds must be a list of integers between 0 and 65535")
    return frozenset(value)


def _int_or_none(obj: dict[str, Any], key: str) -> int | None:
    if key not in obj:
        return None
    value = obj[key]
    if type(value) is not int or not 0 <= value <= SQLITE_INT_MAX:
        raise FilterError(f"{key} must be an integer between 0 and 2^63-1")
    return value
