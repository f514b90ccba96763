"""The pending area: repos where `refs/nostr/<id>` pushes nobody has signed yet wait until a
PR event claims them.

Anyone may push a PR ref, and protocol v2 serves any object of a repo by id, so those
objects must not enter the served repo before a signed event names them. A pending repo
borrows its served repo's objects (alternates: the client's pack is thin against what it saw
advertised), never the other way round, and goes whole with its last ref."""

from __future__ import annotations

from pathlib import Path

import pygit2

from storage.repos.git_config import PENDING_REPO_CONFIG, apply_config
from storage.repos.paths import remove_tree
from storage.repos.refs import all_refs, delete_ref


def ensure_pending_repo(path: Path, served: Path) -> Path:
    """Create the pending repo at `path` if needed, borrowing the objects of `served`."""
    if not (path / "HEAD").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(path), bare=True)
        apply_config(repo, path, PENDING_REPO_CONFIG)
    info = path / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    alternates = info / "alternates"
    if (served / "objects").is_dir():
        alternates.write_text(f"{(served / 'objects').resolve()}\n")
    else:  # a GRASP-06 contributor repo serving nothing yet: the push's pack is complete
        alternates.unlink(missing_ok=True)
    return path


def waiting_refs(path: Path) -> dict[str, str]:
    """The PR refs waiting in the pending repo at `path` ({} when there is none)."""
    return all_refs(path) if (path / "HEAD").is_file() else {}


def drop_waiting_ref(path: Path, name: str) -> bool:
    """Remove one waiting PR ref; the pending repo goes with its last ref, and with it
    every object only unclaimed pushes brought. True when the ref was there."""
    if not (path / "HEAD").is_file():
        return False
    found = delete_ref(path, name)
    if not all_refs(path):
        remove_tree(path)
    return found


def remove_empty_pending(pending_dir: Path) -> int:
    """Pending repos left without a ref (a crash between a claim and the removal): gone."""
    removed = 0
    if not pending_dir.is_dir():
        return 0
    for path in pending_dir.glob("*/*.git"):
        try:
            empty = not all_refs(path)
        except pygit2.GitError:
            empty = True
        if empty:
            remove_tree(path)
            removed += 1
    return removed


def remove_empty_repos(repos_dir: Path) -> int:
    """Repos left without any ref (GRASP-06 contributor repos whose last ref went): gone."""
    return remove_empty_pending(repos_dir)
