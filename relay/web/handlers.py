"""The web view's request handling: route a GET/HEAD to its page, read what it needs
(served events from the store; git data in a worker thread, a bounded number at once) and
answer with the page, an error page, or 304. HEAD is answered exactly as GET, without the
body; every answer carries the relay's CORS headers (relay/http.py)."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import structlog

from config import Settings
from relay.http import header, respond
from relay.nostr import nip11
from relay.web import render
from relay.web.nostr_reads import maintainers_of, naddr, nevent, repo_threads, served_repos
from relay.web.reach import ReachCache
from relay.web.repo_pages import HTML, RepoHeader, RepoPages, Request, Response
from relay.web.routes import STYLESHEET, Route, parse
from relay.web.shown import BadRequest, NotFound, first_tag, page_number, shorten_npub
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import BadRepoPath, RepoStore, owner_pubkey, to_npub, validate_identifier
from storage.sqlite.events import EventStore

log = structlog.get_logger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
NO_CACHE = [(b"cache-control", b"no-cache")]


def scheme(settings: Settings) -> tuple[str, str]:
    """(http scheme, websocket scheme) of this service's public URLs."""
    host = settings.domain.rsplit(":", 1)[0] if settings.domain.count(":") == 1 else settings.domain
    local = host in ("127.0.0.1", "localhost", "[::1]", "::1")
    return ("http", "ws") if local else ("https", "wss")


class WebView:
    """Every HTML page of one daemon."""

    def __init__(self, settings: Settings, store: EventStore, repos: RepoStore) -> None:
        self.settings = settings
        self.store = store
        self.repos = repos
        self.pages = RepoPages(settings, ReachCache(settings.web_reach_cache_repos, settings.web_reach_max_commits))
        self._slots = asyncio.Semaphore(settings.web_render_concurrency)
        render.set_site_name(settings.relay_name)

    async def serve(self, scope: dict[str, Any], send: Send, head: bool) -> None:
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        try:
            route = parse(raw, scope.get("query_string", b""))
            if route is None:
                raise NotFound("no such page")
            response = await self._route(route, header(scope, b"if-none-match").decode("latin-1"))
        except BadRequest as exc:
            response = self.error(400, "Bad request", str(exc))
        except BadRepoPath as exc:
            response = self.error(400, "Bad repository path", str(exc))
        except NotFound as exc:
            response = self.error(404, "Not found", str(exc))
        await respond(send, response.status, response.body, response.content_type, head=head,
                      extra=response.headers)

    def error(self, status: int, title: str, message: str) -> Response:
        body = render.page("error.html", title=title, message=message, domain=self.settings.domain)
        return Response(status, body, HTML, list(NO_CACHE))

    async def _route(self, route: Route, if_none_match: str) -> Response:
        if route.page == "static":
            body, version = render.stylesheet()
            headers = [(b"cache-control", b"public, max-age=31536000, immutable"), (b"etag", f'"{version}"'.encode())]
            fresh = f'"{version}"' in {tag.strip() for tag in if_none_match.split(",")}
            return Response(304 if fresh else 200, b"" if fresh else body, "text/css; charset=utf-8", headers)
        if route.page == "landing":
            return await self._listing(route, None)
        if route.page == "owner":
            return await self._listing(route, owner_pubkey(route.npub))
        return await self._repo(route, if_none_match)

    # --- the landing page and an owner's page -------------------------------------------
    async def _listing(self, route: Route, owner: str | None) -> Response:
        needle = route.params.get("q", "")[:200]
        number = page_number(route.params)
        found = await served_repos(self.store, self.settings, needle, owner)
        per = self.settings.web_repos_per_page
        pages = max(1, math.ceil(len(found) / per))
        if number > pages:
            raise NotFound("there are not that many pages")
        rows = [dict(npub=to_npub(item.pubkey), identifier=item.identifier, name=item.name,
                     description=item.description, activity=item.activity)
                for item in found[(number - 1) * per: number * per]]
        http, ws = scheme(self.settings)
        info = nip11.relay_information(self.settings)
        body = render.page("landing.html", info=info, domain=self.settings.domain, http=http, ws=ws, rows=rows,
                           total=len(found), page=number, pages=pages, q=needle,
                           owner=to_npub(owner) if owner else "",
                           owner_short=shorten_npub(to_npub(owner)) if owner else "")
        return Response(200, body, HTML, list(NO_CACHE))

    # --- repository pages ---------------------------------------------------------------
    async def _repo(self, route: Route, if_none_match: str) -> Response:
        identifier = validate_identifier(route.identifier)
        owner = owner_pubkey(route.npub)
        view = self.store.view
        announcement = view.served_announcement(owner, identifier)
        if announcement is None:
            if view.announcement(owner, identifier) is None:
                raise NotFound("no such repository is served here")
            # held in the purgatory: nothing of it is served yet, so nothing of it is shown
            body = render.page("waiting.html", npub=route.npub, identifier=identifier, domain=self.settings.domain)
            return Response(200 if route.page == "summary" else 404, body, HTML, list(NO_CACHE))
        repo_header = self._header(announcement, route.npub, owner, identifier)
        if route.page in ("issues", "prs"):
            return await self._threads(route, repo_header)
        request = Request(repo_header, self.repos.path(owner, identifier), route.page, route.path, route.params,
                          if_none_match)
        async with self._slots:
            return await asyncio.to_thread(self.pages.serve, request)

    def _header(self, ann: Event, npub: str, owner: str, identifier: str) -> RepoHeader:
        http, _ = scheme(self.settings)
        ours = f"{http}://{self.settings.domain}/{npub}/{quote(identifier, safe='')}.git"
        clones = [ours] + [url for url in nip34.clone_urls(ann) if url != ours]
        named = [key for key in nip34.maintainers(ann) if key != owner]
        maintainers = []
        for key in [owner, *named][:32]:
            try:
                as_npub = to_npub(key)
            except BadRepoPath:
                continue
            maintainers.append((as_npub, shorten_npub(as_npub)))
        return RepoHeader(npub, owner, identifier, first_tag(ann, "name", identifier) or identifier,
                          first_tag(ann, "description"), ann.id, tuple(clones[:16]),
                          tuple(ann.tag_values("web")[:8]), tuple(maintainers),
                          naddr(owner, identifier, self.settings))

    async def _threads(self, route: Route, repo: RepoHeader) -> Response:
        view = self.store.view
        maintainers = maintainers_of(view, self.settings, repo.owner, repo.identifier)
        coordinates = frozenset(nip34.repo_coordinate(key, repo.identifier) for key in maintainers)
        kind = nip34.ISSUE if route.page == "issues" else nip34.PR
        found, more = await repo_threads(self.store, self.settings, coordinates, kind, maintainers)
        rows = [dict(thread=t, nevent=nevent(t.event, self.settings), author=to_npub(t.event.pubkey),
                     author_short=shorten_npub(to_npub(t.event.pubkey))) for t in found]
        body = render.page("threads.html", repo=repo, tab=route.page, rows=rows, more=more,
                           what="issues" if kind == nip34.ISSUE else "pull requests")
        return Response(200, body, HTML, list(NO_CACHE))


__all__ = ["STYLESHEET", "WebView"]
