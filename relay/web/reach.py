"""Is a commit id served? Only commits reachable from the repo's branches and tags are: an
object can be in the bare repo without being served (a claimed PR's commits under
`refs/nostr/*`, objects a push brought along). A URL may name any 40-hex id, so each is
checked against the set of commits reachable from the served tips, walked once per set of
tips (at most `max_commits` of them) and kept for a few repos.

Memory: each remembered commit is its 20-byte raw id in a set, about 90 bytes; a repo costs
at most `max_commits` of those, and `repos` of them are kept (least recently used goes)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import SortMode


@dataclass(frozen=True, slots=True)
class Reachable:
    commits: frozenset[bytes]
    complete: bool  # False: the walk stopped at the bound, older commits are not in the set


def walk_reachable(repo: pygit2.Repository, tips: frozenset[str], max_commits: int) -> Reachable:
    if not tips:
        return Reachable(frozenset(), True)
    ordered = sorted(tips)
    walker = repo.walk(pygit2.Oid(hex=ordered[0]), SortMode.NONE)
    for tip in ordered[1:]:
        walker.push(pygit2.Oid(hex=tip))
    seen: set[bytes] = set()
    for commit in walker:
        if len(seen) >= max_commits:
            return Reachable(frozenset(seen), False)
        seen.add(commit.id.raw)
    return Reachable(frozenset(seen), True)


class ReachCache:
    """The reachable sets of the most recently asked repos, keyed by their tips (a push
    changes the tips, so a stale set is never used)."""

    def __init__(self, repos: int, max_commits: int) -> None:
        self.repos = repos
        self.max_commits = max_commits
        self._sets: OrderedDict[Path, tuple[frozenset[str], Reachable]] = OrderedDict()
        self._lock = threading.Lock()

    def is_served(self, path: Path, repo: pygit2.Repository, tips: dict[str, str], commit: str) -> bool:
        if commit in tips.values():
            return True
        key = frozenset(tips.values())
        with self._lock:
            cached = self._sets.get(path)
            if cached is not None and cached[0] == key:
                self._sets.move_to_end(path)
                found = cached[1]
            else:
                found = None
        if found is None:
            found = walk_reachable(repo, key, self.max_commits)
            if self.repos > 0:
                with self._lock:
                    self._sets[path] = (key, found)
                    self._sets.move_to_end(path)
                    while len(self._sets) > self.repos:
                        self._sets.popitem(last=False)
        try:
            return pygit2.Oid(hex=commit).raw in found.commits
        except ValueError:
            return False
