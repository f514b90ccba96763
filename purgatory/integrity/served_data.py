"""GRASP-02's "pull missing git data at least hourly", for repos already served.

Every `served_data_check_s` a round looks at the served repos (at most
`served_data_check_max_repos` of them, continuing next round where this one stopped): under
each repo's lock it reads the refs and looks up the tips of the state the repo follows in
the object database, one lookup per ref and no walk (`purgatory/integrity/gaps.py` decides
which state that is). A repo lacking some is recorded in `ServedGaps` and its identifier is
put in the purgatory's sync queue, so the objects are fetched from the other clone URLs by
the same code, through the same per-domain throttle, into the same quarantine as a held
state's. When data arrived, the sync calls `complete` before the release: it copies the
objects into the repo and sets its refs to that served state, under the lock, only if the
repo still follows that state. Nothing unsigned is ever written, and no ref moves to a value
no served state names."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import structlog

from config import Settings
from purgatory.integrity import gaps as selection
from purgatory.integrity.compare import Choice
from purgatory.integrity.sweep import StateReader, choice_for, repo_dirs, to_thread_to_the_end
from purgatory.locate import Locator
from purgatory.sync.served_gaps import ServedGaps
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)

#: puts an identifier in the sync queue (`SyncRequests.enqueue`): (identifier, delay_s)
Enqueue = Callable[[str, float], None]
Completion = Literal["completed", "waiting", "moved"]


class ServedDataMetrics(Protocol):
    """The calls `relay.metrics.MetricsSink` answers for this check."""

    def served_data_checked(self, repos: int) -> None: ...
    def set_served_data_missing(self, repos: int) -> None: ...
    def served_data_recovered(self, objects: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Round:
    checked: int
    missing: int
    left_for_later: int


def _look(path: Path, choice: Choice) -> tuple[Event | None, set[str]]:
    """The state this repo follows and which of its tips it lacks (blocking: opens the repo)."""
    refs, head = RepoStore.refs(path), RepoStore.head(path)
    state = selection.target_state(refs, head, choice)
    return state, (RepoStore.missing(path, selection.tips(state)) if state is not None else set())


def _complete(repos: RepoStore, locator: Locator, gap: selection.Gap, choice: Choice,
              sources: list[Path]) -> tuple[Completion, int]:
    """Copy the state's objects into the repo and set its refs to the state, if the repo still
    follows it (blocking: run it under the repo's lock, in a thread)."""
    path = gap.path
    if not selection.may_complete(repos.refs(path), repos.head(path), gap.state, choice):
        return "moved", 0
    wanted = selection.tips(gap.state)
    missing = repos.missing(path, wanted)
    if missing:
        source = locator.first_holding(sources, wanted)
        if source is None:
            return "waiting", 0
        repos.copy_objects(source, path, sorted(wanted))
    repos.set_refs(path, gap.refs, gap.head)
    return "completed", len(missing)


class ServedDataCheck:
    def __init__(self, settings: Settings, view: StateReader, repos: RepoStore, locator: Locator,
                 gaps: ServedGaps, enqueue: Enqueue, metrics: ServedDataMetrics, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.view = view
        self.repos = repos
        self.locator = locator
        self.gaps = gaps
        self.enqueue = enqueue
        self.metrics = metrics
        self.clock = clock  # the sync queue's clock: gaps expire on it
        self.wall = wall  # maintainer walks read announcement times on it
        self.limits = nip34.WalkLimits.of(settings)
        self._cursor: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.sync_enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="served-data-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end the hourly duty
                log.exception("served_data_round_failed")
            await asyncio.sleep(self.settings.served_data_check_s)

    # --- the check ----------------------------------------------------------------------

    async def run_round(self) -> Round:
        started = time.monotonic()
        found = await asyncio.to_thread(repo_dirs, self.repos.repos_dir)
        paths = {(npub, ident): path for npub, ident, path in found}
        keys = sorted(paths)
        batch = selection.batch_after(keys, self._cursor, self.settings.served_data_check_max_repos)
        checked = missing = 0
        for key in batch:
            owner = nip34.npub_to_hex(key[0])
            if owner is None or self.repos.path(owner, key[1]) != paths[key]:
                continue  # not a name a URL leads to
            if self.view.served_announcement(owner, key[1]) is None:
                continue  # held announcements are the purgatory's
            checked += 1
            missing += await self.check_repo(owner, key[1], paths[key])
            await asyncio.sleep(0)  # a repo costs one thread hop; let clients in anyway
        self._cursor = batch[-1] if batch else None
        self.metrics.served_data_checked(checked)
        self.metrics.set_served_data_missing(len(self.gaps))
        later = max(0, len(keys) - len(batch))
        log.info("served_data_round", repos=checked, missing=missing, left_for_later=later,
                 seconds=round(time.monotonic() - started, 3))
        return Round(checked, missing, later)

    async def check_repo(self, owner: str, identifier: str, path: Path) -> bool:
        """Look one repo up; True when it lacks objects (then its identifier is synced)."""
        try:
            async with self.repos.lock(path):
                choice = choice_for(self.view, owner, identifier, now=self.wall(), limits=self.limits)
                state: Event | None = None
                lacking: set[str] = set()
                if choice.state is not None:
                    state, lacking = await asyncio.to_thread(_look, path, choice)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unreadable repo is the integrity pass's to report
            log.warning("served_data_check_failed", owner=owner, identifier=identifier, error=repr(exc))
            return False
        gap = selection.gap_of(identifier, owner, path, state, lacking)
        if gap is None:
            self.gaps.resolve(identifier, path)
            return False
        if not self.gaps.record(gap, self.clock()):
            log.info("served_data_gaps_full", identifier=identifier, tracked=len(self.gaps))
            return True
        log.info("served_data_missing", owner=owner, identifier=identifier, state=gap.state.id,
                 objects=len(gap.missing))
        self.enqueue(identifier, 0.0)
        return True

    # --- completing a repo once the data is here --------------------------------------------

    async def complete(self, identifier: str) -> None:
        """Complete every repo of this identifier whose gap the data here now fills (the sync
        calls it after a fetch brought data, before the release)."""
        for gap in self.gaps.of(identifier, self.clock()):
            try:
                await self._complete_one(gap)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("served_data_complete_failed", identifier=identifier, repo=str(gap.path))
        self.metrics.set_served_data_missing(len(self.gaps))

    async def _complete_one(self, gap: selection.Gap) -> None:
        sources = [p for p in self.locator.sources(gap.identifier) if p != gap.path]
        async with self.repos.lock(gap.path):
            if not (gap.path / "HEAD").is_file():
                self.gaps.resolve(gap.identifier, gap.path)
                return
            choice = choice_for(self.view, gap.owner, gap.identifier, now=self.wall(), limits=self.limits)
            outcome, objects = await to_thread_to_the_end(_complete, self.repos, self.locator, gap, choice, sources)
        if outcome == "waiting":
            return
        self.gaps.resolve(gap.identifier, gap.path)
        if outcome == "moved":
            log.info("served_data_target_moved", identifier=gap.identifier, repo=str(gap.path), state=gap.state.id)
            return
        self.metrics.served_data_recovered(objects)
        log.info("served_data_recovered", owner=gap.owner, identifier=gap.identifier, state=gap.state.id,
                 objects=objects)
