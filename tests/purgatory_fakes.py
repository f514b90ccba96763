"""In-memory stand-ins for the narrow interfaces of purgatory/ports.py (and the few repo calls
the parts make), for the unit tests tests/test_purgatory_*.py: each fake does what the real
store or repo store does for the calls it answers, and records what it was asked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from storage.nostr import nip34
from storage.nostr.event import Event, sign_event
from storage.nostr.filters import Filter
from storage.sqlite.records import HeldEntry, SaveResult

ALICE, BOB, CAROL, DAVE = ("a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32)
T0 = 1_700_000_000
OID = {n: f"{n:x}" * 40 for n in range(1, 10)}  # OID[1] = "111...", distinct object ids


def pk(secret: str) -> str:
    return sign_event(secret, 1, "", [], T0).pubkey


def announcement(secret: str, identifier: str, maintainers: tuple[str, ...] = (), t: int = T0) -> Event:
    tags = [["d", identifier]]
    if maintainers:
        tags.append(["maintainers", *maintainers])
    return sign_event(secret, nip34.ANNOUNCEMENT, "", tags, t)


def state(secret: str, identifier: str, refs: dict[str, str], t: int = T0) -> Event:
    tags = [["d", identifier], *[[name, oid] for name, oid in refs.items()], ["HEAD", "ref: refs/heads/main"]]
    return sign_event(secret, nip34.STATE, "", tags, t)


def pr(secret: str, owner: str, identifier: str, tip: str, t: int = T0) -> Event:
    tags = [["a", f"30617:{owner}:{identifier}"], ["c", tip], ["subject", "a change"]]
    return sign_event(secret, nip34.PR, "", tags, t)


def pr_update(secret: str, root: Event, tip: str, t: int = T0) -> Event:
    return sign_event(secret, nip34.PR_UPDATE, "", [["E", root.id], ["c", tip]], t)


def entry(event: Event, identifier: str | None = None, received_at: float = 0.0, expires_at: float = 1e12,
          source: str = "client") -> HeldEntry:
    return HeldEntry(event, identifier or event.d_tag, received_at, expires_at, source)


class FakeMetrics:
    def __init__(self) -> None:
        self.purgatory: list[tuple[int, str]] = []

    def purgatory_event(self, kind: int, outcome: str) -> None:
        self.purgatory.append((kind, outcome))


class FakeStore:
    """Held entries, expiries, placeholders and served events, as the event store and its
    view keep them (served first, then held, for the view reads)."""

    def __init__(self, clock: list[float] | None = None) -> None:
        self.now = clock if clock is not None else [0.0]
        self.entries: dict[str, HeldEntry] = {}
        self.expired: dict[str, float] = {}
        self.served: dict[str, Event] = {}
        self.placeholders: dict[str, tuple[str, str, float]] = {}
        self.calls: list[str] = []

    # HoldingStore / ReleaseStore
    async def held(self, identifier: str | None = None) -> list[HeldEntry]:
        found = [e for e in self.entries.values() if identifier is None or e.identifier == identifier]
        return sorted(found, key=lambda e: e.received_at)

    async def is_expired(self, event_id: str) -> bool:
        return event_id in self.expired

    async def hold(self, event: Event, identifier: str, expires_at: float, source: str) -> bool:
        self.calls.append(f"hold {event.id[:8]}")
        if event.id in self.entries:
            return False
        self.entries[event.id] = HeldEntry(event, identifier, self.now[0], expires_at, source)
        return True

    async def expired_due(self, now: float) -> list[HeldEntry]:
        return [e for e in await self.held() if e.expires_at <= now]

    async def discard(self, event_ids: list[str], reason: str) -> None:
        for event_id in event_ids:
            self.entries.pop(event_id, None)
            self.expired[event_id] = self.now[0]

    async def forget_expired(self, before: float) -> int:
        old = [i for i, at in self.expired.items() if at < before]
        for event_id in old:
            del self.expired[event_id]
        return len(old)

    async def release(self, event_ids: list[str]) -> list[SaveResult]:
        self.calls.append("release " + " ".join(i[:8] for i in event_ids))
        out = []
        for event_id in event_ids:
            held = self.entries.pop(event_id, None)
            if held is None:
                out.append(SaveResult.of("missing"))
            else:
                self.served[event_id] = held.event
                out.append(SaveResult.of("saved"))
        return out

    async def query(self, filters: list[Filter], default_limit: int) -> list[Event]:
        return [e for e in self.served.values() if any(f.matches(e) for f in filters)]

    # PlaceholderStore
    async def add_placeholder(self, event_id: str, repo: str, tip: str, expires_at: float) -> None:
        self.placeholders[event_id] = (repo, tip, expires_at)

    async def placeholders_due(self, now: float) -> list[tuple[str, str, str]]:
        return [(i, repo, tip) for i, (repo, tip, at) in self.placeholders.items() if at <= now]

    async def placeholder(self, event_id: str) -> tuple[str, str] | None:
        found = self.placeholders.get(event_id)
        return (found[0], found[1]) if found else None

    async def remove_placeholder(self, event_id: str) -> None:
        self.placeholders.pop(event_id, None)

    # the view reads
    def _all(self) -> list[Event]:
        return list(self.served.values()) + [e.event for e in self.entries.values()]

    def get_event(self, event_id: str) -> Event | None:
        held = self.entries.get(event_id)
        return self.served.get(event_id) or (held.event if held else None)

    def _by_kind_d(self, kind: int, identifier: str) -> list[Event]:
        served = [e for e in self.served.values() if e.kind == kind and e.d_tag == identifier]
        held = [e.event for e in self.entries.values() if e.event.kind == kind and e.event.d_tag == identifier]
        newest = lambda e: (-e.created_at, e.id)  # noqa: E731
        return sorted(served, key=newest) + sorted(held, key=newest)

    def announcements_for(self, identifier: str) -> list[Event]:
        return self._by_kind_d(nip34.ANNOUNCEMENT, identifier)

    def states_for(self, identifier: str) -> list[Event]:
        return self._by_kind_d(nip34.STATE, identifier)

    def served_announcement(self, pubkey: str, identifier: str) -> Event | None:
        return next((e for e in self.served.values() if e.kind == nip34.ANNOUNCEMENT
                     and e.pubkey == pubkey and e.d_tag == identifier), None)

    def announcement(self, pubkey: str, identifier: str) -> Event | None:
        return next((e for e in self.announcements_for(identifier) if e.pubkey == pubkey), None)


@dataclass
class FakeRepo:
    refs: dict[str, str] = field(default_factory=dict)
    head: str | None = None
    objects: set[str] = field(default_factory=set)


class FakeRepos:
    """Served repos and pending areas by (owner, identifier), objects as sets of ids; every
    write is logged in `log` in order (to check what happens before what)."""

    def __init__(self, root: Path = Path("/repos"), log: list[str] | None = None) -> None:
        self.root = root
        self.served: dict[tuple[str, str], FakeRepo] = {}
        self.pending: dict[tuple[str, str], FakeRepo] = {}
        self.log: list[str] = log if log is not None else []
        self._locks: dict[Path, asyncio.Lock] = {}

    def add(self, owner: str, identifier: str, *objects: str, refs: dict[str, str] | None = None) -> FakeRepo:
        repo = self.served.setdefault((owner, identifier), FakeRepo())
        repo.objects.update(objects)
        repo.refs.update(refs or {})
        return repo

    def add_pending(self, owner: str, identifier: str, refs: dict[str, str]) -> FakeRepo:
        repo = self.pending.setdefault((owner, identifier), FakeRepo())
        repo.refs.update(refs)
        repo.objects.update(refs.values())
        return repo

    def _at(self, path: Path) -> FakeRepo:
        by_path = {self.path(*k): r for k, r in self.served.items()}
        by_path |= {self.pending_path(*k): r for k, r in self.pending.items()}
        return by_path.get(path, FakeRepo())

    def path(self, owner: str, identifier: str) -> Path:
        return self.root / owner / f"{identifier}.git"

    def pending_path(self, owner: str, identifier: str) -> Path:
        return self.root / "pending" / owner / f"{identifier}.git"

    def exists(self, owner: str, identifier: str) -> bool:
        return (owner, identifier) in self.served

    def pending_exists(self, owner: str, identifier: str) -> bool:
        return (owner, identifier) in self.pending

    def ensure(self, owner: str, identifier: str) -> Path:
        self.served.setdefault((owner, identifier), FakeRepo())
        return self.path(owner, identifier)

    def remove_empty_pending(self) -> int:
        self.log.append("remove_empty_pending")
        return 0

    async def remove_async(self, owner: str, identifier: str) -> None:
        self.log.append(f"remove {owner[:4]}/{identifier}")
        del self.served[(owner, identifier)]

    def lock(self, path: Path) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    def refs(self, path: Path) -> dict[str, str]:
        return {k: v for k, v in self._at(path).refs.items() if k.startswith(nip34.BRANCH_AND_TAG)}

    def all_refs(self, path: Path) -> dict[str, str]:
        return dict(self._at(path).refs)

    def head(self, path: Path) -> str | None:
        return self._at(path).head

    def get_ref(self, path: Path, name: str) -> str | None:
        return self._at(path).refs.get(name)

    def pending_refs(self, owner: str, identifier: str) -> dict[str, str]:
        repo = self.pending.get((owner, identifier))
        return dict(repo.refs) if repo else {}

    def missing(self, path: Path, oids: object) -> set[str]:
        return set(oids) - self._at(path).objects  # type: ignore[call-overload]

    async def copy_objects_async(self, source: Path, target: Path, oids: list[str]) -> None:
        self.log.append(f"copy {source.parent.name[:4]}->{target.parent.name[:4]} {len(oids)}")
        self._at(target).objects.update(oids)

    async def set_refs_async(self, path: Path, refs: dict[str, str], head: str | None) -> None:
        self.log.append(f"set_refs {path.parent.name[:4]}")
        repo = self._at(path)
        repo.refs = {k: v for k, v in repo.refs.items() if not k.startswith(nip34.BRANCH_AND_TAG)} | refs
        repo.head = head

    def set_ref(self, path: Path, name: str, oid: str) -> None:
        self.log.append(f"set_ref {path.parent.name[:4]} {name[:15]}")
        self._at(path).refs[name] = oid

    def delete_ref(self, path: Path, name: str) -> bool:
        self.log.append(f"delete_ref {path.parent.name[:4]} {name[:15]}")
        return self._at(path).refs.pop(name, None) is not None

    def drop_pending_ref(self, owner: str, identifier: str, name: str) -> bool:
        self.log.append(f"drop_pending {owner[:4]} {name[:15]}")
        repo = self.pending.get((owner, identifier))
        if repo is None or repo.refs.pop(name, None) is None:
            return False
        if not repo.refs:
            del self.pending[(owner, identifier)]
        return True
