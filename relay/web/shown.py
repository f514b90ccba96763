"""What the web view may show, decided without I/O: which ref or commit a request names,
which paths are acceptable, how far a page may page, what an issue's status is.

Everything a browser sends is hostile until one of these functions accepts it. A ref is only
ever looked up among the repo's own branches and tags (never handed to libgit2's revparse,
which understands `@{-1}`, `HEAD~3`, `:/text` and the like); a commit id must be 40 hex
digits and is then checked for reachability by the caller; a path is split into plain
segments (no `.`, `..`, empty parts, NUL or backslash)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from storage.nostr.event import Event
from storage.nostr.nip34 import BRANCH_AND_TAG, STATUS_KINDS, STATUS_OPEN

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
MAX_PATH_BYTES = 4096
MAX_REF_BYTES = 1024
STATUS_NAMES = {1630: "open", 1631: "applied", 1632: "closed", 1633: "draft"}


class BadRequest(ValueError):
    """A request the view refuses (400); the message is shown to the user."""


class NotFound(LookupError):
    """A request for something the view does not serve (404); the message is shown."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a tree/blob/log/raw page is about: a ref among the served ones, or a commit id
    (to be checked reachable). `ref` is the full ref name when named by ref."""

    ref: str | None
    commit: str | None

    @property
    def query(self) -> str:
        """The query string naming this target in links."""
        if self.ref is not None:
            return "h=" + short_ref(self.ref)
        return f"id={self.commit}"


def short_ref(name: str) -> str:
    for prefix in BRANCH_AND_TAG:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def resolve_ref(refs: dict[str, str], wanted: str) -> str:
    """The full name of the served branch or tag `wanted` names (`main`, `refs/heads/main`,
    `v1.0`); branches win over tags of the same short name, as git's own lookup does."""
    if not wanted or len(wanted.encode("utf-8", "surrogatepass")) > MAX_REF_BYTES:
        raise BadRequest("bad ref name")
    if wanted in refs and wanted.startswith(BRANCH_AND_TAG):
        return wanted
    for prefix in BRANCH_AND_TAG:
        if prefix + wanted in refs:
            return prefix + wanted
    raise NotFound(f"no branch or tag {wanted!r}")


def target_of(params: dict[str, str], refs: dict[str, str], default: str | None) -> Target:
    """The target of `?h=<ref>` or `?id=<commit>`, else the default branch."""
    if "id" in params:
        commit = params["id"]
        if not _HEX40.match(commit):
            raise BadRequest("id must be a full 40-digit lowercase commit id")
        return Target(None, commit)
    if "h" in params:
        return Target(resolve_ref(refs, params["h"]), None)
    if default is None or default not in refs:
        raise NotFound("this repository has no default branch yet")
    return Target(default, None)


def commit_id(value: str) -> str:
    if not _HEX40.match(value):
        raise BadRequest("a commit is named by its full 40-digit lowercase id")
    return value


def split_path(raw: str) -> tuple[str, ...]:
    """Plain path segments inside a tree; "" is the root. Refuses anything that could mean
    something other than a name in a git tree."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest("path too long")
    stripped = raw.strip("/")
    if not stripped:
        return ()
    parts = tuple(stripped.split("/"))
    for part in parts:
        if part in ("", ".", "..") or "\0" in part or "\\" in part:
            raise BadRequest("bad path")
    return parts


def offset(params: dict[str, str], limit: int) -> int:
    """`?ofs=` as a bounded non-negative integer."""
    raw = params.get("ofs", "0")
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest("ofs must be a small non-negative integer")
    value = int(raw)
    if value > limit:
        raise BadRequest(f"ofs beyond {limit}: use a commit further down the history instead")
    return value


def page_number(params: dict[str, str]) -> int:
    raw = params.get("page", "1")
    if not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise BadRequest("page must be a positive integer")
    return int(raw)


def shorten_npub(npub: str) -> str:
    return npub if len(npub) <= 20 else f"{npub[:12]}…{npub[-6:]}"


def first_tag(event: Event, name: str, default: str = "") -> str:
    values = event.tag_values(name)
    return values[0] if values else default


# --- repositories listed on the landing page ---------------------------------------------
MAX_LISTED_TEXT = 300


@dataclass(frozen=True, slots=True)
class Listed:
    """What the landing page keeps of one served announcement (not the event: a page scans
    thousands, and an announcement may be large)."""

    pubkey: str
    identifier: str
    name: str
    description: str
    activity: int


def listed(announcement: Event) -> Listed:
    name = first_tag(announcement, "name", announcement.d_tag) or announcement.d_tag
    return Listed(announcement.pubkey, announcement.d_tag, name[:MAX_LISTED_TEXT],
                  first_tag(announcement, "description")[:MAX_LISTED_TEXT], announcement.created_at)


def listing(repos: Iterable[Listed], newest_state: dict[str, int], needle: str) -> list[Listed]:
    """Served repositories, newest activity (announcement, or any state of the identifier)
    first, keeping those whose name, identifier or description contains `needle`."""
    folded = needle.casefold().strip()
    out = []
    for repo in repos:
        if folded and not any(folded in text.casefold() for text in (repo.name, repo.identifier, repo.description)):
            continue
        activity = max(repo.activity, newest_state.get(repo.identifier, 0))
        out.append(Listed(repo.pubkey, repo.identifier, repo.name, repo.description, activity))
    out.sort(key=lambda item: (-item.activity, item.name.casefold(), item.pubkey, item.identifier))
    return out


# --- issues and PRs -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Thread:
    """One issue or PR as its page lists it."""

    event: Event
    subject: str
    status: str
    replies: int


def status_of(root: Event, statuses: Sequence[Event], maintainers: frozenset[str]) -> str:
    """NIP-34: the newest status event from the root's author or a maintainer counts;
    without one an issue or PR is open."""
    allowed = maintainers | {root.pubkey}
    valid = [s for s in statuses if s.kind in STATUS_KINDS and s.pubkey in allowed]
    if not valid:
        return STATUS_NAMES[STATUS_OPEN]
    newest = max(valid, key=lambda s: (s.created_at, s.id))
    return STATUS_NAMES[newest.kind]


def threads(roots: Sequence[Event], statuses: Sequence[Event], replies: Sequence[Event],
            maintainers: frozenset[str]) -> list[Thread]:
    """Roots newest first, each with its status and the count of replies that name it."""
    by_root: dict[str, list[Event]] = {}
    for st in statuses:
        for tag in st.tags:
            if len(tag) > 1 and tag[0] == "e":
                by_root.setdefault(tag[1], []).append(st)
    counts: dict[str, int] = {}
    for reply in replies:
        named = {tag[1] for tag in reply.tags if len(tag) > 1 and tag[0] in ("e", "E")}
        for root_id in named:
            counts[root_id] = counts.get(root_id, 0) + 1
    out = []
    for root in sorted(roots, key=lambda e: (-e.created_at, e.id)):
        subject = first_tag(root, "subject") or first_tag(root, "title") or root.content.split("\n", 1)[0]
        out.append(Thread(root, subject[:200] or "(no subject)", status_of(root, by_root.get(root.id, []),
                                                                            maintainers), counts.get(root.id, 0)))
    return out
