"""The integrity pass over the repos on disk: read each served repo and its states, compare
(`purgatory/integrity/compare.py`, pure), and optionally repair, under the repo's lock.

Used by `grasp-relay integrity-check` and, once after start-up, by the daemon
(`StartupIntegrity`, a background task). A served repo is a bare repo
`<repos_dir>/<npub>/<identifier>.git` whose owner has a served (released) announcement of
that identifier; repos of announcements still held in the purgatory are the purgatory's
business (they are empty until a push authorised by a held state lands, and that state is
released right after).

Each repo is read and changed while holding `RepoStore.lock(path)`, the lock pushes and the
purgatory's alignment take, and the states are read inside it too: within one process the
pass never sees a push half applied, nor reverts one whose state is being released. Repo
reads and writes run in worker threads and the pass yields between repos, so thousands of
repos do not stall clients. The lock is an asyncio lock: it orders the pass against the
daemon only when the pass runs inside the daemon; see `grasp-relay integrity-check --help`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, TypeVar

import structlog

from purgatory.integrity import compare as integrity
from purgatory.integrity.compare import Difference
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)
T = TypeVar("T")


class StateReader(Protocol):
    """The store reads the pass needs; `storage.sqlite.view.StoreView` has them."""

    def served_announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def states_for(self, identifier: str) -> list[Event]: ...
    def is_served(self, event_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ServedRepo:
    owner: str  # hex pubkey
    npub: str
    identifier: str
    path: Path

    @property
    def name(self) -> str:
        """The repo as its URL path names it."""
        return f"{self.npub}/{self.identifier}.git"


@dataclass(frozen=True, slots=True)
class RepoReport:
    """One repo's outcome. `differences` were found; with repair, `repaired` were fixed and
    `blocked` could not be (the state's object is missing here). `error`: the repo could not
    be checked or repaired (then nothing in `differences` counts as repaired)."""

    repo: ServedRepo
    state_id: str | None
    differences: tuple[Difference, ...] = ()
    repaired: tuple[Difference, ...] = ()
    blocked: tuple[Difference, ...] = ()
    pending_state_id: str | None = None
    error: str | None = None
    kept_state_id: str | None = None

    @property
    def clean(self) -> bool:
        return not self.differences and self.error is None

    @property
    def unresolved(self) -> bool:
        """Something is still wrong after this run (no repair asked, or it fell short)."""
        return self.error is not None or len(self.repaired) < len(self.differences)

    def outcome(self, diff: Difference) -> str:
        if diff in self.repaired:
            return "repaired"
        if diff in self.blocked:
            return "not_repairable"
        return "reported"


@dataclass(slots=True)
class Summary:
    repos: int = 0
    differences: int = 0
    repaired: int = 0
    unresolved_repos: int = 0
    reports: list[RepoReport] = field(default_factory=list)  # the repos that were not clean


def repo_dirs(repos_dir: Path, identifier: str | None = None) -> list[tuple[str, str, Path]]:
    """(npub, identifier, path) of the bare repos under `repos_dir`, sorted; only `identifier`'s
    when given. Blocking (lists directories): run it in a thread."""
    out: list[tuple[str, str, Path]] = []
    if not repos_dir.is_dir():
        return out
    for owner_dir in sorted(repos_dir.iterdir()):
        if not owner_dir.name.startswith("npub1") or not owner_dir.is_dir():
            continue
        if identifier is not None:
            candidates = [owner_dir / f"{identifier}.git"]
        else:
            candidates = sorted(p for p in owner_dir.iterdir() if p.name.endswith(".git"))
        for path in candidates:
            name = path.name[: -len(".git")]
            if nip34.identifier_problem(name) is None and (path / "HEAD").is_file():
                out.append((owner_dir.name, name, path))
    return out


def choice_for(view: StateReader, owner: str, identifier: str, *, now: float,
               limits: nip34.WalkLimits) -> integrity.Choice:
    """The states that rule `owner`'s repo, read from the store (`integrity.choose`)."""
    states = view.states_for(identifier)
    served_ids = {s.id for s in states if view.is_served(s.id)}
    served = [s for s in states if s.id in served_ids]
    held = [s for s in states if s.id not in served_ids]
    return integrity.choose(owner, identifier, served, held, lambda pubkey: view.announcement(pubkey, identifier),
                            now=now, limits=limits)


def _read(path: Path) -> tuple[dict[str, str], str | None]:
    return RepoStore.refs(path), RepoStore.head(path)


def _repair(path: Path, refs: dict[str, str], differences: tuple[Difference, ...]
            ) -> tuple[integrity.Repair, dict[str, str], str | None]:
    """Write the repair (objects checked first by `set_refs`) and read the repo back."""
    wanted = {d.expected for d in differences if d.kind in ("moved", "missing") and d.expected}
    plan = integrity.plan_repair(refs, differences, RepoStore.missing(path, wanted))
    if plan.fixes:
        RepoStore.set_refs(path, plan.refs, plan.head)
    return (plan, *_read(path))


async def to_thread_to_the_end(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking repo write in a thread; a cancellation (shutdown) waits for the write
    to finish before it propagates, so the repo lock is never released mid-write."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait({job})
        raise


class IntegrityPass:
    """Check (and with `repair`, align) served repos. `on_report` hears every repo that was
    not clean, whose release is pending or that is kept at a former maintainer's state, as
    soon as it is done."""

    def __init__(self, view: StateReader, repos: RepoStore, *, repair: bool, metrics: Any = None,
                 on_report: Callable[[RepoReport], Awaitable[None] | None] | None = None,
                 limits: nip34.WalkLimits = nip34.WalkLimits(),
                 clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.limits = limits
        self.clock = clock
        self.repos = repos
        self.repair = repair
        self.metrics = metrics
        self.on_report = on_report

    async def served_repos(self, identifier: str | None = None) -> list[ServedRepo]:
        found = await asyncio.to_thread(repo_dirs, self.repos.repos_dir, identifier)
        out: list[ServedRepo] = []
        owners: dict[str, str | None] = {}
        for npub, ident, path in found:
            if npub not in owners:
                owners[npub] = nip34.npub_to_hex(npub)
            owner = owners[npub]
            if owner is None or self.repos.path(owner, ident) != path:
                continue  # not a name a URL leads to
            if self.view.served_announcement(owner, ident) is not None:
                out.append(ServedRepo(owner, npub, ident, path))
        return out

    async def run(self, identifier: str | None = None) -> Summary:
        summary = Summary()
        for repo in await self.served_repos(identifier):
            report = await self.check_repo(repo)
            summary.repos += 1
            summary.differences += len(report.differences)
            summary.repaired += len(report.repaired)
            if not report.clean:
                summary.reports.append(report)
                summary.unresolved_repos += report.unresolved
            if not report.clean or report.pending_state_id is not None or report.kept_state_id is not None:
                if self.on_report is not None:
                    maybe = self.on_report(report)
                    if maybe is not None:
                        await maybe
            await asyncio.sleep(0)  # a clean repo costs one thread hop; let clients in anyway
        return summary

    def _choice(self, repo: ServedRepo) -> integrity.Choice:
        return choice_for(self.view, repo.owner, repo.identifier, now=self.clock(), limits=self.limits)

    async def check_repo(self, repo: ServedRepo) -> RepoReport:
        try:
            async with self.repos.lock(repo.path):
                return await self._check_locked(repo)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one unreadable repo must not end the pass
            return RepoReport(repo, None, error=f"{type(exc).__name__}: {exc}")

    async def _check_locked(self, repo: ServedRepo) -> RepoReport:
        choice = self._choice(repo)
        refs, head = await asyncio.to_thread(_read, repo.path)
        finding = integrity.check(refs, head, choice)
        report = RepoReport(repo, finding.state_id, finding.differences,
                            pending_state_id=finding.pending_state_id, kept_state_id=finding.kept_state_id)
        if not self.repair or not finding.differences:
            return report
        plan, after_refs, after_head = await to_thread_to_the_end(_repair, repo.path, refs, finding.differences)
        for diff in plan.fixes:
            if self.metrics is not None:
                self.metrics.integrity_repair(diff.kind)
        left = integrity.compare(after_refs, after_head, choice.authority)
        report = RepoReport(repo, finding.state_id, finding.differences, plan.fixes, plan.blocked)
        if set(left) != set(plan.blocked):
            return RepoReport(repo, finding.state_id, finding.differences, (), plan.blocked,
                              error=f"repair did not take: {len(left)} differences left")
        return report


# --- the daemon's pass after start-up ------------------------------------------------------
def log_report(report: RepoReport) -> None:
    """One error line per difference (with what the pass did about it), as operators grep."""
    repo = report.repo.name
    if report.pending_state_id is not None:
        log.info("integrity_release_pending", repo=repo, state=report.pending_state_id,
                 authoritative=report.state_id)
    if report.kept_state_id is not None:
        log.info("integrity_kept", repo=repo, state=report.kept_state_id, authoritative=report.state_id,
                 reason="refs set by a state whose author is no longer a confirmed maintainer")
    if report.error is not None:
        log.error("integrity_check_failed", repo=repo, error=report.error)
    for diff in report.differences:
        log.error("integrity_difference", repo=repo, ref=diff.ref, kind=diff.kind,
                  expected=diff.expected, found=diff.found, state=report.state_id,
                  outcome=report.outcome(diff))


class StartupIntegrity:
    """Runs the pass once, in the background, after the daemon has started (unless
    `integrity_check_on_start` is off); repairs unless `integrity_repair_on_start` is off."""

    def __init__(self, settings: Any, repos: RepoStore, metrics: Any = None) -> None:
        self.settings = settings
        self.repos = repos
        self.metrics = metrics
        self.task: asyncio.Task[Summary | None] | None = None

    def start(self, view: StateReader) -> None:
        if self.settings.integrity_check_on_start and self.task is None:
            self.task = asyncio.create_task(self._run(view), name="integrity-pass")

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self, view: StateReader) -> Summary | None:
        await asyncio.sleep(0)  # the start-up finishes (and the port opens) first
        repair = self.settings.integrity_repair_on_start
        started = time.monotonic()
        try:
            summary = await IntegrityPass(view, self.repos, repair=repair, metrics=self.metrics,
                                          on_report=log_report,
                                          limits=nip34.WalkLimits.of(self.settings)).run()
        except asyncio.CancelledError:
            log.info("integrity_pass_cancelled")
            raise
        except Exception:
            log.exception("integrity_pass_failed")
            return None
        log.info("integrity_pass_done", repos=summary.repos, differences=summary.differences,
                 repaired=summary.repaired, unresolved_repos=summary.unresolved_repos, repair=repair,
                 seconds=round(time.monotonic() - started, 3))
        return summary
