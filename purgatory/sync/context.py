"""The one interface between the sync logic and the world.

The queue, throttle and URL selection are plain logic; everything that touches SQLite, the bare
repositories or the network goes through `SyncContext`, so the logic is unit-tested with a fake
(as the seed design does) and the real implementation stays a thin adapter over the store and
`purgatory/fetch/objects.py`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Protocol

FetchKind = Literal["ok", "timeout", "refused", "dns", "tls", "not-our-ref", "http", "error"]

# Failures that say "this host is unreachable right now", not "this repo lacks the data".
# They put the whole domain in a cool-off so we do not keep hammering a dead host.
NETWORK_FAILURES: frozenset[str] = frozenset({"timeout", "refused", "dns", "tls"})


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch from one URL did. `kind` is a small closed set so metrics stay bounded;
    `detail` is free text for logs only."""

    ok: bool
    kind: FetchKind = "ok"
    detail: str = ""

    @classmethod
    def success(cls, detail: str = "") -> FetchOutcome:
        return cls(True, "ok", detail)

    @classmethod
    def failure(cls, kind: FetchKind, detail: str = "") -> FetchOutcome:
        return cls(False, kind, detail)

    @property
    def network_failure(self) -> bool:
        return not self.ok and self.kind in NETWORK_FAILURES


@dataclass
class SyncStats:
    """Counters the sync service keeps; the relay's metrics read them."""

    fetch_outcomes: Counter[str] = field(default_factory=Counter)
    syncs_started: int = 0
    syncs_done: int = 0
    syncs_retried: int = 0
    handed_to_domains: int = 0
    splits_cut: int = 0  # one-object retries left for later: the domain had no slot


class SyncContext(Protocol):
    """Everything the sync logic needs to know or do, keyed by repository identifier.

    Contract for implementers (the purgatory service wiring):

    - `now()`: a monotonic clock in seconds (`time.monotonic` in production). Every timestamp
      the queue and throttle keep comes from here, so tests can drive time.
    - `has_pending(identifier)`: true while any purgatory entry (state or PR event) for this
      identifier is waiting, or a served repo of it lacks its state's objects (a gap the
      hourly check found). Cheap; called often.
    - `needed_oids(identifier)`: OIDs referenced by the pending entries (and the gaps) that
      are still missing from the target repositories. Empty means "nothing to fetch": the sync then calls
      `process_new_data` once and stops.
    - `clone_urls(identifier)`: candidate URLs, from the repository's announcements and the
      `clone` tags of waiting PRs, in a stable order. Our own origin may be included; the
      logic drops it.
    - `fetch(identifier, url, oids)`: fetch those OIDs from `url` into the owner's repo(s) and
      verify them, in one fetch session (the caller holds one throttle slot for it; a server
      lacking one of them answers `not-our-ref`, and the caller asks again per object).
      Never raise for network or protocol errors: classify them in the outcome (`timeout`,
      `refused`, `dns`, `tls` make the domain cool off; `not-our-ref`, `http`, `error` do
      not). Stop at `settings.fetch_timeout_s` and return a `timeout` outcome: the
      caller's own deadline (that plus `steps.CONTEXT_DEADLINE_GRACE_S`) is only a backstop,
      and frees the throttle slot while the work may still go on.
    - `process_new_data(identifier)`: the same "new data arrived" step a push runs: release
      what is now complete (and complete the repos with gaps). Called after a successful
      fetch that changed `needed_oids`, and once when a sync finds nothing needed any more.
      The sync logic serialises its own calls per identifier, but a push may run it at
      the same time, so it must be safe to call concurrently and repeatedly.

    All query methods are async so the implementation may use the store's async reads.
    """

    def now(self) -> float: ...

    async def has_pending(self, identifier: str) -> bool: ...

    async def needed_oids(self, identifier: str) -> set[str]: ...

    async def clone_urls(self, identifier: str) -> list[str]: ...

    async def fetch(self, identifier: str, url: str, oids: frozenset[str]) -> FetchOutcome: ...

    async def process_new_data(self, identifier: str) -> None: ...
