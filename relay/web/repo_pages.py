"""The git-backed tabs of a repository page (summary, refs, log, tree, blob, raw, commit),
each one synchronous function from a request to a `Response`, run in a worker thread by
the handlers. A page first resolves what it shows (the served tips, the target commit,
checked reachable), derives its ETag from those ids, and renders only when the client's
copy is not already current."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import quote

import pygit2

from config import Settings
from relay import __version__
from relay.web import diffs, gitread, render
from relay.web.reach import ReachCache
from relay.web.shown import NotFound, Target, commit_id, offset, short_ref, split_path, target_of

HTML = "text/html; charset=utf-8"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".svg": "image/svg+xml"}
# raw files are the repo's bytes, not ours: never run as a page of this origin
RAW_HEADERS = [(b"x-content-type-options", b"nosniff"),
               (b"content-security-policy", b"default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox")]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = HTML
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RepoHeader:
    """What every tab shows above its content; the values come from the served announcement."""

    npub: str
    owner: str
    identifier: str
    name: str
    description: str
    announcement_id: str
    clone_urls: tuple[str, ...]
    web_links: tuple[str, ...]
    maintainers: tuple[tuple[str, str], ...]  # (npub, shortened)
    naddr: str

    @property
    def base(self) -> str:
        return f"/{self.npub}/{quote(self.identifier, safe='')}"


@dataclass(frozen=True, slots=True)
class Request:
    header: RepoHeader
    path: Path  # the served bare repo
    tab: str
    rest: str
    params: dict[str, str]
    if_none_match: str


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("\0".join((__version__, *parts)).encode()).hexdigest()[:32] + '"'


class RepoPages:
    def __init__(self, settings: Settings, reach: ReachCache) -> None:
        self.settings = settings
        self.reach = reach
        self._tabs: dict[str, Callable[[Request, pygit2.Repository, dict[str, str], str | None], Response]] = {
            "summary": self._summary, "refs": self._refs, "log": self._log, "tree": self._tree,
            "blob": self._tree, "raw": self._raw, "commit": self._commit}

    def serve(self, req: Request) -> Response:
        if not (req.path / "HEAD").is_file():  # announced and served, no data pushed yet
            if req.tab != "summary":
                raise NotFound("this repository has no git data yet")
            body = render.page("summary.html", repo=req.header, tab="summary", default="", commits=[], readme=None,
                               branches=0, tags=0, target=None)
            return Response(200, body, HTML, [(b"cache-control", b"no-cache")])
        repo = gitread.open_repo(req.path, self.settings.web_reach_cache_repos)
        tips = gitread.served_tips(repo)
        default = gitread.default_branch(repo, tips)
        return self._tabs[req.tab](req, repo, tips, default)

    # --- helpers -----------------------------------------------------------------------
    def _cached(self, req: Request, etag: str, immutable: bool) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The caching headers, and whether the client already has this page."""
        age = 86400 if immutable else self.settings.web_cache_max_age_s
        headers = [(b"etag", etag.encode()), (b"cache-control", f"public, max-age={age}".encode())]
        return headers, etag in {t.strip() for t in req.if_none_match.split(",")}


    def _commit_of(self, req: Request, repo: pygit2.Repository, tips: dict[str, str],
                   target: Target) -> str:
        if target.ref is not None:
            return tips[target.ref]
        assert target.commit is not None
        if not self.reach.is_served(req.path, repo, tips, target.commit):
            raise NotFound("no such commit is served here")
        return target.commit

    # --- tabs ----------------------------------------------------------------------------
    def _summary(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        head = tips.get(default) if default else None
        etag = _etag("summary", req.header.announcement_id, default or "", *sorted(f"{k}={v}" for k, v in tips.items()))
        headers, fresh = self._cached(req, etag, False)
        if fresh:
            return Response(304, b"", HTML, headers)
        commits: list[gitread.CommitInfo] = []
        readme = None
        if head is not None and default is not None:
            commits, _ = gitread.log_page(repo, head, 0, self.settings.web_summary_commits)
            found = gitread.readme(repo, head, self.settings.web_readme_max_bytes)
            if found is not None:
                readme = self._readme(req.header, short_ref(default), *found)
        branches = sum(1 for n in tips if n.startswith("refs/heads/"))
        body = render.page("summary.html", repo=req.header, tab="summary", default=short_ref(default or ""),
                           commits=commits, readme=readme, branches=branches, tags=len(tips) - branches,
                           target=Target(default, None) if default else None)
        return Response(200, body, HTML, headers)

    def _readme(self, header: RepoHeader, ref: str, name: str, text: str) -> dict[str, object]:
        if not text:
            return {"name": name, "html": None, "plain": None}
        if name.lower().endswith((".md", ".markdown")):
            def link(kind: str, path: str) -> str:
                clean = str(PurePosixPath("/", path)).lstrip("/")
                return f"{header.base}/{kind}/{quote(clean)}?h={quote(ref, safe='')}"
            return {"name": name, "html": render.markdown(text, link), "plain": None}
        return {"name": name, "html": None, "plain": text}

    def _refs(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        etag = _etag("refs", req.header.announcement_id, *sorted(f"{k}={v}" for k, v in tips.items()))
        headers, fresh = self._cached(req, etag, False)
        if fresh:
            return Response(304, b"", HTML, headers)
        rows, more = gitread.ref_rows(repo, tips, self.settings.web_tree_max_entries)
        body = render.page("refs.html", repo=req.header, tab="refs", rows=rows, more=more,
                           default=default or "")
        return Response(200, body, HTML, headers)

    def _log(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        target = target_of(req.params, tips, default)
        ofs = offset(req.params, self.settings.web_log_max_offset)
        start = self._commit_of(req, repo, tips, target)
        etag = _etag("log", req.header.announcement_id, start, str(ofs))
        headers, fresh = self._cached(req, etag, target.commit is not None)
        if fresh:
            return Response(304, b"", HTML, headers)
        count = self.settings.web_log_commits
        commits, more = gitread.log_page(repo, start, ofs, count)
        if not commits and ofs:
            raise NotFound("the history is shorter than that")
        nxt = ofs + count if more and ofs + count <= self.settings.web_log_max_offset else None
        body = render.page("log.html", repo=req.header, tab="log", target=target, commits=commits, ofs=ofs,
                           prev=max(0, ofs - count) if ofs else None, next=nxt)
        return Response(200, body, HTML, headers)

    def _tree(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        target = target_of(req.params, tips, default)
        parts = split_path(req.rest)
        commit = self._commit_of(req, repo, tips, target)
        kind = gitread.path_kind(repo, commit, parts)
        etag = _etag(kind, req.header.announcement_id, commit, "/".join(parts))
        headers, fresh = self._cached(req, etag, target.commit is not None)
        if fresh:
            return Response(304, b"", HTML, headers)
        crumbs = [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]
        common = dict(repo=req.header, target=target, crumbs=crumbs, path="/".join(parts), commit=commit)
        if kind == "tree":
            listing = gitread.tree_page(repo, commit, parts, self.settings.web_tree_max_entries)
            body = render.page("tree.html", tab="tree", tree=listing, **common)
        else:
            blob = gitread.blob_page(repo, commit, parts, self.settings.web_blob_max_bytes)
            shown = render.code(parts[-1], blob.text, self.settings.web_highlight_max_bytes) if blob.text else None
            body = render.page("blob.html", tab="tree", blob=blob, code=shown, **common)
        return Response(200, body, HTML, headers)

    def _raw(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        target = target_of(req.params, tips, default)
        parts = split_path(req.rest)
        commit = self._commit_of(req, repo, tips, target)
        data = gitread.raw_blob(repo, commit, parts, self.settings.web_raw_max_bytes)
        if data is None:
            return Response(413, b"this file is larger than the raw download limit (GRASP_WEB_RAW_MAX_BYTES)\n",
                            "text/plain; charset=utf-8")
        headers, fresh = self._cached(req, _etag("raw", commit, "/".join(parts)), target.commit is not None)
        headers += RAW_HEADERS
        if fresh:
            return Response(304, b"", "application/octet-stream", headers)
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if suffix in IMAGE_TYPES:
            kind = IMAGE_TYPES[suffix]
        elif b"\0" in data[: gitread.BINARY_SNIFF_BYTES]:
            kind = "application/octet-stream"
            name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in parts[-1])
            headers.append((b"content-disposition", f'attachment; filename="{name}"'.encode()))
        else:
            kind = "text/plain; charset=utf-8"
        return Response(200, data, kind, headers)

    def _commit(self, req: Request, repo: pygit2.Repository, tips: dict[str, str], default: str | None) -> Response:
        oid = commit_id(req.rest.strip("/"))
        if not self.reach.is_served(req.path, repo, tips, oid):
            raise NotFound("no such commit is served here")
        etag = _etag("commit", req.header.announcement_id, oid)
        headers, fresh = self._cached(req, etag, True)
        if fresh:
            return Response(304, b"", HTML, headers)
        page = diffs.commit_page(repo, oid, self.settings.web_diff_max_files, self.settings.web_diff_max_bytes)
        body = render.page("commit.html", repo=req.header, tab="log", page=page, target=Target(None, oid))
        return Response(200, body, HTML, headers)
