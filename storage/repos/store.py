"""`RepoStore`: all bare repos under one directory, the one object the relay and the
purgatory hold for them. It names repos (`paths`), creates and removes them, keeps the one
lock over each repo's refs, and offers the per-repo operations of `refs`, `objects` and
`pending` bound to its directories and git binary.

Ref reads are cheap and synchronous; anything that may touch many objects (copying between
repos, removing a tree) has an async wrapper running in a thread so the event loop keeps
serving."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

import pygit2
import structlog

from storage.repos import objects, pending
from storage.repos import refs as git_refs
from storage.repos.errors import BadRepoPath
from storage.repos.git_config import REPO_CONFIG, apply_config
from storage.repos.paths import pending_repo_path, remove_tree, repo_path

log = structlog.get_logger(__name__)


class RepoStore:
    """All bare repos under one directory."""

    def __init__(self, repos_dir: Path, git_binary: str = "git", pending_dir: Path | None = None) -> None:
        self.repos_dir = Path(repos_dir).resolve()
        self.git_binary = git_binary
        # refs/nostr pushes land beside the served repos, in repos that are never served
        self.pending_dir = Path(pending_dir).resolve() if pending_dir else self.repos_dir.parent / "pending"
        self._locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, path: Path) -> asyncio.Lock:
        """The one lock over a repo's refs. Pushes, alignment to a state, PR-ref writes and
        the integrity pass all take it: a push checks the refs git left against the refs it
        authorised, so nothing else may move them in between (it would be "restored")."""
        lock = self._locks.get(path)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[path] = lock
        return lock

    # --- naming -----------------------------------------------------------------------
    def path(self, npub_or_hex: str, identifier: str) -> Path:
        """The repo path for an owner and an already-decoded identifier (validated again)."""
        return repo_path(self.repos_dir, npub_or_hex, identifier)

    def exists(self, npub_or_hex: str, identifier: str) -> bool:
        try:
            path = self.path(npub_or_hex, identifier)
        except BadRepoPath:
            return False
        return (path / "HEAD").is_file()

    # --- lifecycle --------------------------------------------------------------------
    def ensure(self, npub_or_hex: str, identifier: str) -> Path:
        """Create the bare repo if needed and (re)apply our config; safe to call repeatedly."""
        path = self.path(npub_or_hex, identifier)
        if (path / "HEAD").is_file():
            repo = pygit2.Repository(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
            log.info("repo_created", path=str(path))
        apply_config(repo, path, REPO_CONFIG)
        if "uploadpack.allowAnySHA1InWant" in repo.config:
            del repo.config["uploadpack.allowAnySHA1InWant"]
        return path

    def remove(self, npub_or_hex: str, identifier: str) -> None:
        self.remove_pending(npub_or_hex, identifier)
        remove_tree(self.path(npub_or_hex, identifier))

    async def remove_async(self, npub_or_hex: str, identifier: str) -> None:
        await asyncio.to_thread(self.remove, npub_or_hex, identifier)

    # --- the pending area: refs/nostr pushes nobody has signed yet (`pending`) ---------
    def pending_path(self, npub_or_hex: str, identifier: str) -> Path:
        """Where `refs/nostr/<id>` pushes to this repo wait until a PR event claims them."""
        return pending_repo_path(self.pending_dir, self.path(npub_or_hex, identifier))

    def ensure_pending(self, npub_or_hex: str, identifier: str) -> Path:
        path = self.pending_path(npub_or_hex, identifier)
        return pending.ensure_pending_repo(path, self.path(npub_or_hex, identifier))

    def pending_exists(self, npub_or_hex: str, identifier: str) -> bool:
        try:
            return (self.pending_path(npub_or_hex, identifier) / "HEAD").is_file()
        except BadRepoPath:
            return False

    def pending_refs(self, npub_or_hex: str, identifier: str) -> dict[str, str]:
        """The PR refs waiting in a repo's pending area ({} when it has none)."""
        return pending.waiting_refs(self.pending_path(npub_or_hex, identifier))

    def drop_pending_ref(self, npub_or_hex: str, identifier: str, name: str) -> bool:
        """Remove one waiting PR ref (the pending repo goes with its last); True when it was there."""
        return pending.drop_waiting_ref(self.pending_path(npub_or_hex, identifier), name)

    def remove_pending(self, npub_or_hex: str, identifier: str) -> None:
        remove_tree(self.pending_path(npub_or_hex, identifier))

    def remove_empty_pending(self) -> int:
        """Pending repos left without a ref (a crash between a claim and the removal): gone."""
        return pending.remove_empty_pending(self.pending_dir)

    def remove_empty_repos(self) -> int:
        """Repos holding no ref at all: gone (GRASP-06 contributor repos, which are only
        their PR refs; never used on announced repos, whose emptiness means "not pushed yet")."""
        return pending.remove_empty_repos(self.repos_dir)

    def remove_if_empty(self, path: Path) -> bool:
        """Remove the repo at `path` (not its pending area) when it holds no ref; True if it did."""
        if not (path / "HEAD").is_file() or git_refs.all_refs(path):
            return False
        remove_tree(path)
        return True

    # --- refs of one repo, by path (`refs`) ---------------------------------------------
    refs = staticmethod(git_refs.branches_and_tags)
    all_refs = staticmethod(git_refs.all_refs)
    restore_refs = staticmethod(git_refs.restore_refs)
    get_ref = staticmethod(git_refs.get_ref)
    head = staticmethod(git_refs.head_branch)
    set_ref = staticmethod(git_refs.set_ref)
    delete_ref = staticmethod(git_refs.delete_ref)
    set_refs = staticmethod(git_refs.set_refs)

    async def set_refs_async(self, path: Path, refs: dict[str, str], head: str | None) -> None:
        await asyncio.to_thread(git_refs.set_refs, path, refs, head)

    # --- objects of one repo, by path (`objects`) -------------------------------------
    packs = staticmethod(objects.packs)
    missing = staticmethod(objects.missing)
    has_objects = staticmethod(objects.has_objects)
    remove_packs_since = staticmethod(objects.remove_packs_since)

    def drop_unreachable_in(self, path: Path, packs: set[str], old_tips: set[str]) -> int:
        """`objects.drop_unreachable_in`: keep of these packs only what the refs now reach."""
        return objects.drop_unreachable_in(self.git_binary, path, packs, old_tips)

    def copy_objects(self, src_path: Path, dst_path: Path, oids: list[str]) -> None:
        """`objects.copy_objects`: everything reachable from `oids` in src, made available in dst."""
        objects.copy_objects(self.git_binary, src_path, dst_path, oids)

    async def copy_objects_async(self, src_path: Path, dst_path: Path, oids: list[str]) -> None:
        await asyncio.to_thread(self.copy_objects, src_path, dst_path, oids)

    def housekeeping(self, path: Path) -> None:
        """`objects.housekeeping`: git's `gc --auto`, in the foreground, under the repo lock."""
        objects.housekeeping(self.git_binary, path)
