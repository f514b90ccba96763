"""A bounded map from a key to the events (or purgatory entries) a read returned, that can
be emptied by event id: the store's writes say which ids they touched, not which reads."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class IdIndexedCache(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._values: dict[K, tuple[V, ...]] = {}
        self._keys_by_id: dict[str, set[K]] = {}
        self._ids_by_key: dict[K, tuple[str, ...]] = {}

    def get(self, key: K) -> tuple[V, ...] | None:
        return self._values.get(key)

    def put(self, key: K, values: tuple[V, ...], ids: Iterable[str]) -> None:
        """Remember a read; `ids` are the event ids in it (a write to any of them forgets it)."""
        if not self._max:
            return
        self.forget(key)
        if len(self._values) >= self._max:
            self.forget(next(iter(self._values)))  # the oldest entry
        self._values[key] = values
        self._ids_by_key[key] = tuple(ids)
        for event_id in self._ids_by_key[key]:
            self._keys_by_id.setdefault(event_id, set()).add(key)

    def forget(self, key: K) -> None:
        if self._values.pop(key, None) is None and key not in self._ids_by_key:
            return
        for event_id in self._ids_by_key.pop(key, ()):
            keys = self._keys_by_id.get(event_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_id[event_id]

    def forget_ids(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            for key in list(self._keys_by_id.get(event_id, ())):
                self.forget(key)

    def clear(self) -> None:
        self._values.clear()
        self._keys_by_id.clear()
        self._ids_by_key.clear()

    def __len__(self) -> int:
        return len(self._values)
