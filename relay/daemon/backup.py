"""`grasp-relay backup DEST`: a consistent online snapshot of a running relay's data
directory, written into the new directory DEST, which is itself a data directory a relay
can start from (`GRASP_DATA_DIR=DEST`).

Consistent means the repos agree with the events of the snapshot, although the daemon keeps
taking events and pushes while the backup runs:

1. The event store is copied first, with SQLite's online backup API in one step: one read
   transaction, so the copy is the database as of one commit (WAL: the daemon's writes go on
   meanwhile, into the WAL, and are not in the copy).
2. Each repo is then copied with `git fetch` from the live repo (git sends only objects
   reachable from the refs it copies and checks their connectivity), so every copied ref has
   its objects. A repo created after the snapshot (no announcement in it) is left out.
3. What landed after the snapshot is undone in the copy: the integrity pass, run with the
   snapshot's events over the copied repos, puts every branch and tag where the snapshot's
   signed state says (a push that arrived after the snapshot moved them on), fetching the
   state's commits from the live repo when the copy lacks them; PR refs (`refs/nostr/<id>`)
   are kept only for PR events in the snapshot, and refs/nostr pushes waiting in the
   pending area only for the snapshot's placeholders. A repo whose refs changed is then
   garbage-collected so that no object the snapshot does not reach is left to serve by id.
   A repo of an announcement still held in the snapshot keeps its refs only if they are
   exactly a state of the snapshot.

GRASP-06 contributor repos (`<data>/prs`) are copied the same way, with only the PR refs whose
PR event the snapshot serves; their waiting pushes (`prs-pending`) are not: a contributor pushes
again. The fetch quarantine and the push spool are not copied: what waits in the purgatory is
fetched again by the restored relay. Restore: stop the relay, point GRASP_DATA_DIR at the
snapshot (or copy it back in place of the old data directory), start."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from config import Settings
from purgatory.integrity.sweep import IntegrityPass, RepoReport, repo_dirs
from storage.nostr import nip34
from storage.repos import RepoError, RepoStore
from storage.sqlite.view import StoreView

log = structlog.get_logger(__name__)

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
COPY_ATTEMPTS = 3  # a repack by the daemon's gc can remove a pack a fetch is reading: retry
_HELP = """Write a consistent snapshot of this relay's data directory (GRASP_DATA_DIR, from the same
settings the daemon reads) into DEST, a new or empty directory, while the relay runs.

DEST is itself a data directory: the event store (SQLite online backup, one consistent
copy), every repo of the snapshot's announcements with exactly the branches, tags and PR
refs the snapshot's events sign, and the refs/nostr pushes still waiting for their PR event.
The fetch quarantine and spool are left out (the restored relay fetches again what its
purgatory waits for).

Restore: stop the relay; set GRASP_DATA_DIR=DEST (or move DEST to where the data directory
was); start it. Its start-up integrity pass finds nothing to repair.

exit codes: 0 snapshot complete; 1 written, but some repo could not be made to match the
snapshot (each is printed); 2 usage error, bad setting, DEST not empty or no event store."""


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="grasp-relay backup", description=_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("dest", metavar="DEST", help="a new (or empty) directory for the snapshot")
    return out


@dataclass(slots=True)
class BackupReport:
    """What was written, and what could not be made to match the snapshot."""

    served_events: int = 0
    held_events: int = 0
    repos: int = 0
    skipped_newer: int = 0
    realigned: int = 0
    pr_refs: int = 0
    pending_refs: int = 0
    prs_repos: int = 0
    problems: list[str] = field(default_factory=list)


def run(settings: Settings, dest_arg: str) -> int:
    """The command: checks, then the snapshot; the summary goes to stdout."""
    dest = Path(dest_arg)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        sys.stderr.write(f"grasp-relay: backup: {dest} exists and is not an empty directory\n")
        return EXIT_USAGE
    if not settings.db_path.is_file():
        sys.stderr.write(f"grasp-relay: backup: no event store at {settings.db_path} (is GRASP_DATA_DIR right?)\n")
        return EXIT_USAGE
    if dest.resolve() == settings.data_dir.resolve() or settings.data_dir.resolve() in dest.resolve().parents:
        sys.stderr.write(f"grasp-relay: backup: {dest} is inside the data directory {settings.data_dir}\n")
        return EXIT_USAGE
    started = time.monotonic()
    _read_foreign_repos()
    target = settings.model_copy(update={"data_dir": dest})
    dest.mkdir(parents=True, exist_ok=True)
    report = BackupReport()
    snapshot_store(settings.db_path, target.db_path, report)
    asyncio.run(copy_repos(settings, target, report))
    out = sys.stdout
    out.write(f"store: {target.db_path} ({report.served_events} events served, {report.held_events} held)\n")
    out.write(f"repos: {report.repos} copied, {report.realigned} set back to the snapshot's states, "
              f"{report.skipped_newer} newer than the snapshot left out\n")
    out.write(f"pull requests: {report.pr_refs} PR refs ({report.prs_repos} contributor repos), "
              f"{report.pending_refs} waiting refs/nostr pushes\n")
    for problem in report.problems:
        out.write(f"NOT CONSISTENT: {problem}\n")
    out.write(f"backup {'written' if not report.problems else 'INCOMPLETE'}: {dest}\n")
    out.flush()
    log.info("backup_done", dest=str(dest), repos=report.repos, realigned=report.realigned,
             problems=len(report.problems), seconds=round(time.monotonic() - started, 3))
    return EXIT_INCOMPLETE if report.problems else 0


def _read_foreign_repos() -> None:
    """The live repos may belong to the relay's own user (systemd's DynamicUser) while the
    backup runs as root: git and libgit2 refuse repos owned by someone else unless told
    otherwise. The backup only reads them and writes its own copies, so in this process
    ownership is not checked: libgit2's check is switched off, and git gets a global config
    that includes the usual one and adds `safe.directory=*` (git clears `-c` settings for the
    upload-pack it runs on a local source, but not the global config file)."""
    import atexit
    import tempfile

    import pygit2

    pygit2.option(pygit2.enums.Option.SET_OWNER_VALIDATION, False)
    usual = os.environ.get("GIT_CONFIG_GLOBAL") or str(Path.home() / ".gitconfig")
    handle, name = tempfile.mkstemp(prefix="grasp-backup-", suffix=".gitconfig")
    with os.fdopen(handle, "w", encoding="utf-8") as config:
        config.write(f"[include]\n\tpath = {usual}\n[safe]\n\tdirectory = *\n")
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    os.environ["GIT_CONFIG_GLOBAL"] = name


def snapshot_store(source: Path, dest: Path, report: BackupReport) -> None:
    """SQLite's online backup in one step (one read transaction: one consistent copy), then
    the copy's WAL folded into its file, so DEST holds a single self-contained file."""
    src = sqlite3.connect(source, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: everything in one step
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                report.problems.append(f"the copied store fails SQLite's quick_check: {check}")
            report.served_events = dst.execute("SELECT count(*) FROM events").fetchone()[0]
            report.held_events = dst.execute("SELECT count(*) FROM held").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()


def _placeholders(db_path: Path) -> list[tuple[str, str, str]]:
    """(event id, "owner/identifier", tip) of the refs/nostr pushes waiting in the snapshot."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [(str(a), str(b), str(c)) for a, b, c in conn.execute("SELECT event_id, repo, tip FROM placeholders")]
    finally:
        conn.close()


def _copy(src_repos: RepoStore, src: Path, dst: Path, wanted: dict[str, str]) -> dict[str, str]:
    """Copy the objects of `wanted` (ref -> oid); returns the refs whose objects arrived.
    Retried with the live repo's refs read again when the daemon moved them meanwhile (a ref
    that moved on is set back by the integrity pass later)."""
    for attempt in range(COPY_ATTEMPTS):
        present = {name: oid for name, oid in wanted.items() if oid not in RepoStore.missing(src, [oid])}
        try:
            src_repos.copy_objects(src, dst, sorted(set(present.values())))
            return present
        except RepoError as exc:
            if attempt == COPY_ATTEMPTS - 1:
                raise
            log.info("backup_copy_retry", repo=str(src), error=str(exc)[-200:])
            time.sleep(0.2 * (attempt + 1))
    return {}  # pragma: no cover - the loop returns or raises


def _set_refs(path: Path, refs: dict[str, str], head: str | None) -> None:
    """Branches and tags exactly `refs`, other refs (refs/nostr) set one by one."""
    branches = {n: o for n, o in refs.items() if n.startswith(nip34.BRANCH_AND_TAG)}
    RepoStore.set_refs(path, branches, head if head and head.startswith("refs/heads/") else None)
    for name, oid in refs.items():
        if name not in branches:
            RepoStore.set_ref(path, name, oid)


def _gc(git_binary: str, path: Path) -> None:
    """Drop every object no ref reaches (the copy is not served yet, so nothing races it)."""
    subprocess.run([git_binary, "-C", str(path), "-c", "gc.autoDetach=false", "gc", "--quiet", "--prune=now"],
                   capture_output=True, check=False, timeout=3600)


async def copy_repos(settings: Settings, target: Settings, report: BackupReport) -> None:
    view = StoreView(target.db_path, cache_entries=0)
    src_repos = RepoStore(settings.repos_dir, settings.git_binary, settings.pending_dir)
    dst_repos = RepoStore(target.repos_dir, settings.git_binary, target.pending_dir)
    changed: set[Path] = set()
    try:
        for npub, identifier, src in await asyncio.to_thread(repo_dirs, settings.repos_dir):
            owner = nip34.npub_to_hex(npub)
            if owner is None or src_repos.path(owner, identifier) != src:
                continue
            if view.announcement(owner, identifier) is None:
                report.skipped_newer += 1  # created after the snapshot
                continue
            try:
                # on this thread: the view's connection is bound to it (a CLI has no one to wait)
                if _copy_repo(view, src_repos, dst_repos, owner, identifier, src, report):
                    changed.add(dst_repos.path(owner, identifier))
            except (RepoError, OSError, subprocess.SubprocessError) as exc:
                report.problems.append(f"{npub}/{identifier}.git: could not be copied: {exc}")
            report.repos += 1
        for event_id, repo, tip in _placeholders(target.db_path):
            owner, _, identifier = repo.partition("/")
            try:
                _copy_pending(src_repos, dst_repos, owner, identifier, event_id, tip, report)
            except (RepoError, OSError, ValueError) as exc:
                report.problems.append(f"{nip34.PR_REF_PREFIX}{event_id} of {repo}: could not be copied: {exc}")
        if settings.prs_dir.is_dir():
            changed |= _copy_prs_repos(view, settings, target, report)  # the view is bound to this thread
        await _align(view, settings, src_repos, dst_repos, report, changed)
        for path in sorted(changed):
            await asyncio.to_thread(_gc, settings.git_binary, path)
    finally:
        view.close()


def _copy_repo(view: StoreView, src_repos: RepoStore, dst_repos: RepoStore, owner: str, identifier: str,
               src: Path, report: BackupReport) -> bool:
    """One repo into the snapshot; True when refs were left out (the copy needs a gc)."""
    dst = dst_repos.ensure(owner, identifier)
    live = RepoStore.all_refs(src)
    head = RepoStore.head(src)
    wanted: dict[str, str] = {}
    for name, oid in live.items():
        if name.startswith(nip34.BRANCH_AND_TAG):
            wanted[name] = oid
        elif name.startswith(nip34.PR_REF_PREFIX) and view.is_served(name.removeprefix(nip34.PR_REF_PREFIX)):
            wanted[name] = oid  # a PR ref whose PR event the snapshot serves
    if view.served_announcement(owner, identifier) is None:
        # a held announcement: its refs count only if they are exactly a state of the snapshot
        branches = {n: o for n, o in wanted.items() if n.startswith(nip34.BRANCH_AND_TAG)}
        signed = any(nip34.state_refs(st)[0] == branches for st in view.states_for(identifier))
        if branches and not signed:
            wanted = {n: o for n, o in wanted.items() if n not in branches}
    copied = _copy(src_repos, src, dst, wanted)
    _set_refs(dst, copied, head)
    report.pr_refs += sum(name.startswith(nip34.PR_REF_PREFIX) for name in copied)
    return copied != {n: o for n, o in live.items() if n.startswith((*nip34.BRANCH_AND_TAG, nip34.PR_REF_PREFIX))}


def _copy_prs_repos(view: StoreView, settings: Settings, target: Settings, report: BackupReport) -> set[Path]:
    """The contributor repos: their PR refs whose event the snapshot serves, nothing else
    (a /prs/ repo holds refs/nostr only); the copies to gc, as a ref left out leaves objects."""
    src_repos = RepoStore(settings.prs_dir, settings.git_binary, settings.prs_pending_dir)
    dst_repos = RepoStore(target.prs_dir, settings.git_binary, target.prs_pending_dir)
    changed: set[Path] = set()
    for npub, identifier, src in repo_dirs(settings.prs_dir):
        owner = nip34.npub_to_hex(npub)
        if owner is None or src_repos.path(owner, identifier) != src:
            continue
        live = {n: o for n, o in RepoStore.all_refs(src).items() if n.startswith(nip34.PR_REF_PREFIX)}
        wanted = {n: o for n, o in live.items() if view.is_served(n.removeprefix(nip34.PR_REF_PREFIX))}
        if not wanted:
            continue
        try:
            dst = dst_repos.ensure(owner, identifier)
            copied = _copy(src_repos, src, dst, wanted)
            _set_refs(dst, copied, None)
        except (RepoError, OSError, subprocess.SubprocessError) as exc:
            report.problems.append(f"prs/{npub}/{identifier}.git: could not be copied: {exc}")
            continue
        report.prs_repos += 1
        report.pr_refs += len(copied)
        if copied != live:
            changed.add(dst)
    return changed


def _copy_pending(src_repos: RepoStore, dst_repos: RepoStore, owner: str, identifier: str, event_id: str,
                  tip: str, report: BackupReport) -> None:
    src = src_repos.pending_path(owner, identifier)
    name = f"{nip34.PR_REF_PREFIX}{event_id}"
    if not (src / "HEAD").is_file() or RepoStore.get_ref(src, name) != tip:
        return  # claimed or dropped since the snapshot: the restored purgatory expires it
    if not (dst_repos.path(owner, identifier) / "HEAD").is_file():
        return  # its repo is not in the snapshot
    dst = dst_repos.ensure_pending(owner, identifier)
    src_repos.copy_objects(src, dst, [tip])
    RepoStore.set_ref(dst, name, tip)
    report.pending_refs += 1


async def _align(view: StoreView, settings: Settings, src_repos: RepoStore, dst_repos: RepoStore,
                 report: BackupReport, changed: set[Path]) -> None:
    """The integrity pass with the snapshot's events over the copies: refs a push moved
    after the snapshot go back to the snapshot's state; commits the copy lacks for that are
    fetched from the live repo, and the repo checked once more."""
    limits = nip34.WalkLimits.of(settings)
    summary = await IntegrityPass(view, dst_repos, repair=True, limits=limits).run()
    for repo_report in summary.reports:
        changed.add(repo_report.repo.path)
        report.realigned += 1
        final = repo_report
        if repo_report.blocked:
            final = await _fetch_and_recheck(view, src_repos, dst_repos, repo_report, limits)
        if final.unresolved:
            left = [d.problem(final.state_id) for d in final.differences if d not in final.repaired]
            report.problems.append(f"{final.repo.name}: {final.error or '; '.join(left)}")


async def _fetch_and_recheck(view: StoreView, src_repos: RepoStore, dst_repos: RepoStore, first: RepoReport,
                             limits: nip34.WalkLimits) -> RepoReport:
    src = src_repos.path(first.repo.owner, first.repo.identifier)
    wanted = sorted({d.expected for d in first.blocked if d.expected})
    try:
        await asyncio.to_thread(src_repos.copy_objects, src, first.repo.path, wanted)
    except RepoError as exc:
        return RepoReport(first.repo, first.state_id, first.differences, first.repaired, first.blocked,
                          error=f"the snapshot's state needs objects the live repo no longer has: {exc}")
    return await IntegrityPass(view, dst_repos, repair=True, limits=limits).check_repo(first.repo)
