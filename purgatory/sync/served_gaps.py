"""The second source of needed objects the identifier sync serves: served repos that lack
their state's objects (found by the hourly check, `purgatory/integrity/served_data.py`).

The purgatory's held events say which objects are wanted; so do these gaps. Both feed the
same queue, throttle, URL choice and quarantine (`StoreSyncContext` asks this registry
beside the held entries), so a served repo's missing data is fetched exactly as a held
state's is. Plain logic: time is passed in, nothing here touches a repo.

Bounded: at most `max_gaps` repos are remembered at once (a gap is a handful of oids, at
most one per ref of a state, itself bounded by the event size limit); past it the ones
found last wait for a later round. A gap the check stops confirming (the repo went, or is
no longer served) is forgotten after `ttl_s`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from purgatory.integrity.gaps import Gap


@dataclass(slots=True)
class _Known:
    gap: Gap
    expires_at: float


class ServedGaps:
    def __init__(self, max_gaps: int, ttl_s: float) -> None:
        self.max_gaps = max_gaps
        self.ttl_s = ttl_s
        self._by_identifier: dict[str, dict[Path, _Known]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def record(self, gap: Gap, now: float) -> bool:
        """Remember (or refresh) a gap; False when the registry is full of others."""
        known = self._by_identifier.setdefault(gap.identifier, {})
        if gap.path not in known:
            if self._count >= self.max_gaps:
                if not known:
                    del self._by_identifier[gap.identifier]
                return False
            self._count += 1
        known[gap.path] = _Known(gap, now + self.ttl_s)
        return True

    def resolve(self, identifier: str, path: Path) -> None:
        """The repo holds its state's objects now, or follows no state we could complete."""
        known = self._by_identifier.get(identifier)
        if known is None or known.pop(path, None) is None:
            return
        self._count -= 1
        if not known:
            del self._by_identifier[identifier]

    def of(self, identifier: str, now: float) -> list[Gap]:
        """The identifier's live gaps (expired ones are dropped on the way)."""
        known = self._by_identifier.get(identifier)
        if not known:
            return []
        for path in [p for p, k in known.items() if k.expires_at <= now]:
            self.resolve(identifier, path)
        return [k.gap for k in self._by_identifier.get(identifier, {}).values()]

    def has(self, identifier: str, now: float) -> bool:
        return bool(self.of(identifier, now))

    def needed(self, identifier: str, now: float) -> set[str]:
        """Every object the identifier's gaps lack (some may be elsewhere here already)."""
        out: set[str] = set()
        for gap in self.of(identifier, now):
            out |= gap.missing
        return out
