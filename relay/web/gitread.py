"""Reading one served bare repo with pygit2 for the web view: its branches and tags, a page
of history, a tree, a blob, the README. Synchronous and bounded (every walk and listing
stops at a limit the caller passes); the handlers run these in a thread.

Only the served repo under the repos directory is opened, and only `refs/heads/*` and
`refs/tags/*` are read: PR refs (`refs/nostr/*`) and anything else in the repo are never
listed, and a commit is reached from those tips only."""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pygit2
from pygit2.enums import ObjectType

from relay.web.shown import NotFound
from storage.nostr.nip34 import BRANCH_AND_TAG

README_NAMES = ("README.md", "readme.md", "README.markdown", "Readme.md", "README", "README.txt", "readme.txt")
SUBMODULE = 0o160000
BINARY_SNIFF_BYTES = 8000


_OPEN = threading.local()


def open_repo(path: Path, keep: int = 0) -> pygit2.Repository:
    """The repo at `path`, kept open in this worker thread for the next page (at most `keep`
    repos per thread; libgit2 keeps parsed commits, so a log page does not parse the whole
    history again). A kept object is safe to reuse: every ref is read from disk on each
    page, what is shown is reachable from those refs, and objects are named by their
    content; a repo removed and made again (another inode) is opened afresh."""
    try:
        inode = path.stat().st_ino
    except OSError:
        raise NotFound("no git data here yet") from None
    kept: OrderedDict[Path, tuple[int, pygit2.Repository]] = getattr(_OPEN, "repos", None) or OrderedDict()
    _OPEN.repos = kept
    found = kept.get(path)
    if found is not None and found[0] == inode:
        kept.move_to_end(path)
        return found[1]
    try:
        repo = pygit2.Repository(str(path))
    except (pygit2.GitError, KeyError):
        raise NotFound("no git data here yet") from None
    if keep > 0:
        kept[path] = (inode, repo)
        while len(kept) > keep:
            kept.popitem(last=False)
    return repo


def get_commit(repo: pygit2.Repository, oid: str) -> pygit2.Commit:
    obj = repo.get(oid)
    if not isinstance(obj, pygit2.Commit):
        raise NotFound("no such commit")
    return obj


def _blob_data(repo: pygit2.Repository, oid: pygit2.Oid) -> bytes:
    obj = repo.get(oid)
    if not isinstance(obj, pygit2.Blob):
        raise NotFound("not a file")
    return bytes(obj.data)


@dataclass(frozen=True, slots=True)
class CommitInfo:
    id: str
    subject: str
    message: str
    author: str
    author_email: str
    when: str
    when_iso: str
    committer: str
    parents: tuple[str, ...]
    time: int

    @property
    def short(self) -> str:
        return self.id[:10]


def _when(sig: pygit2.Signature) -> tuple[str, str]:
    stamp = datetime.fromtimestamp(sig.time, timezone(timedelta(minutes=sig.offset)))
    return stamp.strftime("%Y-%m-%d %H:%M"), stamp.isoformat()


def commit_info(commit: pygit2.Commit) -> CommitInfo:
    message = commit.message if isinstance(commit.message, str) else ""
    when, iso = _when(commit.author)
    return CommitInfo(str(commit.id), message.split("\n", 1)[0].strip(), message, commit.author.name,
                      commit.author.email, when, iso, commit.committer.name,
                      tuple(str(p) for p in commit.parent_ids), commit.commit_time)


@dataclass(frozen=True, slots=True)
class RefRow:
    name: str
    short: str
    is_tag: bool
    commit: CommitInfo | None


def served_tips(repo: pygit2.Repository) -> dict[str, str]:
    """Branches and tags -> the commit each names (annotated tags peeled); refs that name no
    commit are left out (nothing to browse)."""
    tips: dict[str, str] = {}
    for name in repo.references:
        if not name.startswith(BRANCH_AND_TAG):
            continue
        ref = repo.references.get(name)
        if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
            continue
        try:
            obj = repo[ref.target].peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            continue
        tips[name] = str(obj.id)
    return tips


def default_branch(repo: pygit2.Repository, tips: dict[str, str]) -> str | None:
    """HEAD's branch when it is served, else main/master, else the first branch."""
    head = repo.references.get("HEAD")
    if head is not None and head.type == pygit2.enums.ReferenceType.SYMBOLIC and str(head.target) in tips:
        return str(head.target)
    for name in ("refs/heads/main", "refs/heads/master"):
        if name in tips:
            return name
    branches = sorted(n for n in tips if n.startswith("refs/heads/"))
    return branches[0] if branches else None


def ref_rows(repo: pygit2.Repository, tips: dict[str, str], limit: int) -> tuple[list[RefRow], bool]:
    """Branches then tags (newest commit first within each), at most `limit` rows."""
    rows = []
    for name, oid in tips.items():
        rows.append(RefRow(name, name.split("/", 2)[2], name.startswith("refs/tags/"),
                           commit_info(get_commit(repo, oid))))
    rows.sort(key=lambda r: (r.is_tag, -(r.commit.time if r.commit else 0), r.short))
    return rows[:limit], len(rows) > limit


def history(repo: pygit2.Repository, start: str) -> Iterator[pygit2.Commit]:
    """Commits from `start`, newest committer date first, ties in the order they were
    reached (children before parents, as `git log` shows them). Lazy: a page of 50 costs
    about 50 commit reads, where libgit2's topological sort reads the whole history first
    and its date sort leaves equal dates (a rebase's commits) in no particular order."""
    first = get_commit(repo, start)
    seen = {first.id}
    order = 0
    queue: list[tuple[int, int, pygit2.Commit]] = [(-first.commit_time, order, first)]
    while queue:
        _, _, commit = heapq.heappop(queue)
        yield commit
        for parent_id in commit.parent_ids:
            if parent_id in seen:
                continue
            seen.add(parent_id)
            parent = repo.get(parent_id)
            if isinstance(parent, pygit2.Commit):
                order += 1
                heapq.heappush(queue, (-parent.commit_time, order, parent))


def log_page(repo: pygit2.Repository, start: str, ofs: int, count: int) -> tuple[list[CommitInfo], bool]:
    """`count` commits from `start` (newest first, as git log), after skipping `ofs`; and
    whether more follow."""
    out: list[CommitInfo] = []
    for index, commit in enumerate(history(repo, start)):
        if index < ofs:
            continue
        if len(out) == count:
            return out, True
        out.append(commit_info(commit))
    return out, False


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    kind: str  # "tree", "blob", "link" (symlink), "submodule"
    mode: str
    size: int | None
    target: str  # the submodule's commit id, else ""


def _lookup(repo: pygit2.Repository, commit: pygit2.Commit, parts: tuple[str, ...]) -> pygit2.Object:
    obj: pygit2.Object = commit.tree
    for index, part in enumerate(parts):
        if not isinstance(obj, pygit2.Tree) or part not in obj:
            raise NotFound("no such path at this commit")
        entry = obj[part]
        if entry.filemode == SUBMODULE:
            raise NotFound("that path is a submodule")
        obj = repo[entry.id]
    return obj


@dataclass(frozen=True, slots=True)
class TreePage:
    entries: list[Entry]
    total: int


@dataclass(frozen=True, slots=True)
class BlobPage:
    size: int
    text: str | None  # None: offered as raw only
    why_raw: str  # "binary", "large" or ""
    is_link: bool


def path_kind(repo: pygit2.Repository, commit_id: str, parts: tuple[str, ...]) -> str:
    """"tree" or "blob": what the path names at this commit (NotFound if nothing)."""
    obj = _lookup(repo, get_commit(repo, commit_id), parts)
    return "tree" if isinstance(obj, pygit2.Tree) else "blob"


def tree_page(repo: pygit2.Repository, commit_id: str, parts: tuple[str, ...], limit: int) -> TreePage:
    tree = _lookup(repo, get_commit(repo, commit_id), parts)
    if not isinstance(tree, pygit2.Tree):
        raise NotFound("not a directory")
    entries: list[Entry] = []
    for item in tree:
        if len(entries) >= limit:
            break
        mode = item.filemode
        if mode == SUBMODULE:
            entries.append(Entry(item.name or "", "submodule", "m---------", None, str(item.id)))
            continue
        kind = "tree" if item.type_str == "tree" else ("link" if mode == 0o120000 else "blob")
        size = None if kind == "tree" else repo.odb.read_header(item.id)[1]
        entries.append(Entry(item.name or "", kind, _mode_text(mode), size, ""))
    entries.sort(key=lambda e: (e.kind != "tree", e.name))
    return TreePage(entries, len(tree))


def _mode_text(mode: int) -> str:
    if mode == 0o40000:
        return "d---------"
    if mode == 0o120000:
        return "l---------"
    return "-rwxr-xr-x" if mode & 0o111 else "-rw-r--r--"


def blob_page(repo: pygit2.Repository, commit_id: str, parts: tuple[str, ...], max_bytes: int) -> BlobPage:
    if not parts:
        raise NotFound("not a file")
    tree = _lookup(repo, get_commit(repo, commit_id), parts[:-1])
    entry = tree[parts[-1]] if isinstance(tree, pygit2.Tree) and parts[-1] in tree else None
    if entry is None or entry.filemode == SUBMODULE or entry.type_str != "blob":
        raise NotFound("not a file")
    kind, size = repo.odb.read_header(entry.id)
    if kind != ObjectType.BLOB:
        raise NotFound("not a file")
    if size > max_bytes:
        return BlobPage(size, None, "large", False)
    data = _blob_data(repo, entry.id)
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return BlobPage(size, None, "binary", False)
    return BlobPage(size, data.decode("utf-8", "replace"), "", entry.filemode == 0o120000)


def raw_blob(repo: pygit2.Repository, commit_id: str, parts: tuple[str, ...], max_bytes: int) -> bytes | None:
    """The blob's bytes, or None when it is larger than `max_bytes` (never read then)."""
    if not parts:
        raise NotFound("not a file")
    obj = _lookup(repo, get_commit(repo, commit_id), parts)
    if not isinstance(obj, pygit2.Blob):
        raise NotFound("not a file")
    if repo.odb.read_header(obj.id)[1] > max_bytes:
        return None
    return bytes(obj.data)


def readme(repo: pygit2.Repository, commit_id: str, max_bytes: int) -> tuple[str, str] | None:
    """(file name, text) of the README at the root of this commit, if small enough."""
    tree = get_commit(repo, commit_id).tree
    for name in README_NAMES:
        if name in tree:
            entry = tree[name]
            if entry.type_str != "blob":
                continue
            if repo.odb.read_header(entry.id)[1] > max_bytes:
                return name, ""
            return name, _blob_data(repo, entry.id).decode("utf-8", "replace")
    return None
