"""A repository's refs, read and moved with pygit2: branches and tags as a state event lists
them, every direct ref as a push is checked against, HEAD, and the alignment of a repo to a
state. Cheap and synchronous; callers hold the repo lock (`RepoStore.lock`) around writes."""

from __future__ import annotations

from pathlib import Path

import pygit2

from storage.nostr import nip34
from storage.repos.errors import RepoError
from storage.repos.objects import missing

BRANCH_AND_TAG_PREFIXES = nip34.BRANCH_AND_TAG


def branches_and_tags(path: Path) -> dict[str, str]:
    """Branches and tags -> oid, unpeeled: exactly what a state event lists."""
    repo = pygit2.Repository(str(path))
    out: dict[str, str] = {}
    for name in repo.references:
        if not name.startswith(BRANCH_AND_TAG_PREFIXES):
            continue
        ref = repo.references[name]
        if ref.type == pygit2.enums.ReferenceType.DIRECT:
            out[name] = str(ref.target)
    return out


def all_refs(path: Path) -> dict[str, str]:
    """Every direct ref (any namespace) -> oid: what a push is checked against afterwards."""
    repo = pygit2.Repository(str(path))
    out: dict[str, str] = {}
    for name in repo.references:
        ref = repo.references[name]
        if ref.type == pygit2.enums.ReferenceType.DIRECT:
            out[name] = str(ref.target)
    return out


def restore_refs(path: Path, before: dict[str, str]) -> list[str]:
    """Put every ref back as it was in `before` (complete map); returns the refs changed.
    The objects are there: they were before."""
    repo = pygit2.Repository(str(path))
    now = all_refs(path)
    changed = sorted(name for name in set(now) | set(before) if now.get(name) != before.get(name))
    for name in changed:
        if name in before:
            repo.references.create(name, pygit2.Oid(hex=before[name]), force=True)
        else:
            repo.references.delete(name)
    return changed


def get_ref(path: Path, name: str) -> str | None:
    repo = pygit2.Repository(str(path))
    ref = repo.references.get(name)
    if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
        return None
    return str(ref.target)


def head_branch(path: Path) -> str | None:
    """The branch HEAD points at (it may not exist yet), or None if HEAD is detached."""
    repo = pygit2.Repository(str(path))
    ref = repo.references.get("HEAD")
    if ref is None or ref.type != pygit2.enums.ReferenceType.SYMBOLIC:
        return None
    return str(ref.target)


def set_ref(path: Path, name: str, oid: str) -> None:
    """Point a ref at an oid; libgit2 refuses an oid whose object is not in the repo."""
    repo = pygit2.Repository(str(path))
    try:
        repo.references.create(name, pygit2.Oid(hex=oid), force=True)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise RepoError(f"cannot set {name} to {oid}: {exc}") from None


def delete_ref(path: Path, name: str) -> bool:
    repo = pygit2.Repository(str(path))
    if name not in repo.references:
        return False
    repo.references.delete(name)
    return True


def set_refs(path: Path, refs: dict[str, str], head: str | None) -> None:
    """Make branches and tags exactly `refs` (a state event's) and point HEAD at `head`.

    Objects are checked first so a missing one leaves the repo untouched rather than half
    aligned."""
    bad = [name for name in refs if not name.startswith(BRANCH_AND_TAG_PREFIXES)]
    if bad:
        raise RepoError(f"only branches and tags can be aligned, got {bad[0]}")
    absent = missing(path, refs.values())
    if absent:
        raise RepoError(f"objects missing for alignment: {sorted(absent)[:3]}")
    repo = pygit2.Repository(str(path))
    current = branches_and_tags(path)
    for name in current.keys() - refs.keys():
        repo.references.delete(name)
    for name, oid in refs.items():
        if current.get(name) != oid:
            repo.references.create(name, pygit2.Oid(hex=oid), force=True)
    if head is not None:
        if not head.startswith("refs/heads/"):
            raise RepoError(f"HEAD must point at a branch, got {head}")
        repo.references.create("HEAD", head, force=True)
