"""A commit's diff against its first parent, bounded: at most `max_files` files, and patch
text until `max_bytes` in all; files past the budget are listed without their patch
("diff too large"), and a file whose blob alone is larger is never diffed."""

from __future__ import annotations

from dataclasses import dataclass

import pygit2

from relay.web.gitread import CommitInfo, commit_info, get_commit

ZERO = "0" * 40


@dataclass(frozen=True, slots=True)
class FileDiff:
    status: str  # git's letter: A, D, M, R, T ...
    old_path: str
    new_path: str
    additions: int | None
    deletions: int | None
    lines: list[tuple[str, str]]  # (css class, text)
    note: str  # why there is no patch ("binary", "diff too large", ...) or ""


@dataclass(frozen=True, slots=True)
class CommitPage:
    commit: CommitInfo
    files: list[FileDiff]
    total_files: int
    additions: int
    deletions: int
    truncated: bool


def _classes(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("@@"):
            out.append(("hunk", line))
        elif line.startswith("diff --git"):
            continue  # the file's name heads its box already
        elif line.startswith(("+++", "---", "index ", "new file", "deleted file", "similarity",
                              "rename ", "old mode", "new mode")):
            out.append(("meta", line))
        elif line.startswith("+"):
            out.append(("add", line))
        elif line.startswith("-"):
            out.append(("del", line))
        else:
            out.append(("ctx", line))
    return out


def _size(repo: pygit2.Repository, oid: pygit2.Oid) -> int:
    if str(oid) == ZERO:
        return 0
    try:
        return int(repo.odb.read_header(oid)[1])
    except (KeyError, pygit2.GitError):
        return 0


def commit_page(repo: pygit2.Repository, commit_id: str, max_files: int, max_bytes: int) -> CommitPage:
    commit = get_commit(repo, commit_id)
    if commit.parents:
        diff = repo.diff(commit.parents[0], commit, context_lines=3)
    else:
        diff = commit.tree.diff_to_tree(swap=True, context_lines=3)
    files: list[FileDiff] = []
    budget = max_bytes
    adds = dels = 0
    truncated = False
    total = len(diff)
    for index, delta in enumerate(diff.deltas):
        if index >= max_files:
            truncated = True
            break
        status = delta.status_char()
        old, new = delta.old_file.path, delta.new_file.path
        largest = max(_size(repo, delta.old_file.id), _size(repo, delta.new_file.id))
        if budget <= 0 or largest > max_bytes:
            truncated = truncated or budget <= 0
            files.append(FileDiff(status, old, new, None, None, [], "diff too large"))
            continue
        patch = diff[index]
        if patch is None or patch.delta.is_binary:
            files.append(FileDiff(status, old, new, None, None, [], "binary file"))
            continue
        text = patch.text or ""
        _, added, deleted = patch.line_stats
        adds, dels = adds + added, dels + deleted
        if len(text) > budget:
            truncated = True
            files.append(FileDiff(status, old, new, added, deleted, [], "diff too large"))
            budget = 0
            continue
        budget -= len(text)
        files.append(FileDiff(status, old, new, added, deleted, _classes(text), ""))
    return CommitPage(commit_info(commit), files, total, adds, dels, truncated)
