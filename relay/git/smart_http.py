"""Git smart HTTP for `/<npub>/<identifier>.git/...`, as a raw ASGI component.

Use: `GitHttp(store, settings, plan=..., on_pushed=...)` is an ASGI callable for one
HTTP request whose path `parse_git_path(raw_path)` recognised; the app routes there every
git path except the bare `/<npub>/<identifier>.git` (the HTML page), i.e. whenever `rest`
is not "" or "/". `handle(...)` does the same with the path already parsed.

Bodies are streamed both ways between the client and `git upload-pack` / `git receive-pack
--stateless-rpc`, never held whole. A push's ref updates are read by us first and authorised
(against signed state events, by the `plan` callback) before git runs at all: a refused
push is answered with a report-status that `git push` prints, so no hooks are needed.

This module routes a request and answers `info/refs` (the advertisement); the fetch path is
`upload`, the push path `receive` (`ReceivePack`), and what a request is about (`RepoRef`,
its body, git's environment) is `request`. `RepoRef`, `parse_git_path`, `respond_text` and
the push callback types stay importable from here for the modules that import them so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs

import structlog

from config.settings import Settings
from relay.git.body import Pace
from relay.git.pktline import service_advertisement_header
from relay.git.process_io import Receive, Send, respond_text, start_stream
from relay.git.receive import RECEIVE_RESULT, Admit, OnPushed, PlanPush, ReceivePack, admit_all, ignore_pushed
from relay.git.request import RepoRef, Scope, git_env, parse_git_path, repo_ref
from relay.git.spawn import spawn
from relay.git.upload import upload_pack
from relay.metrics import DisabledMetrics, MetricsSink
from storage.repos import BadRepoPath, RepoStore

__all__ = ["RECEIVE_RESULT", "SERVICES", "Admit", "GitHttp", "OnPushed", "PlanPush", "RepoRef", "admit_all",
           "parse_git_path", "respond_text"]

log = structlog.get_logger(__name__)

SERVICES = ("git-upload-pack", "git-receive-pack")


class GitHttp:
    """Smart HTTP endpoints for every repo of one RepoStore."""

    def __init__(self, store: RepoStore, settings: Settings, plan: PlanPush | None = None,
                 admit: Admit = admit_all, on_pushed: OnPushed = ignore_pushed,
                 metrics: MetricsSink | None = None, empty: Path | None = None) -> None:
        """`plan` decides a push against the repo's refs now (called twice: once as the
        commands arrive, again under the repo lock); `admit` applies per-client limits, once
        per push; `on_pushed` runs after a push landed, outside the lock. Without `plan`
        every push is allowed (benchmarks and tests of the transport). With `empty` (an
        empty bare repo), a repo that does not exist answers fetches and push
        advertisements as that empty repo instead of 404, and takes pushes (GRASP-06
        contributor repos: nothing is created for a path until a push there is accepted)."""
        self.store = store
        self.empty = empty
        self.settings = settings
        self.metrics: MetricsSink = metrics or DisabledMetrics()
        self.pace = Pace(settings.git_body_idle_timeout_s, settings.git_body_deadline_s,
                         settings.git_body_min_rate_bytes_s, settings.git_body_min_rate_grace_s)
        self.pushes = ReceivePack(store, settings, self.metrics, self.pace, plan, admit, on_pushed)

    @property
    def plan(self) -> PlanPush:
        """How pushes are decided (the one given, or any push consistent with the refs)."""
        return self.pushes.plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        parsed = parse_git_path(raw.decode("latin-1"))
        if parsed is None:
            await respond_text(send, 404, "not a git repository path\n")
            return
        await self.handle(scope, receive, send, *parsed)

    async def handle(self, scope: Scope, receive: Receive, send: Send, npub: str,
                     identifier: str, rest: str) -> None:
        method = scope.get("method", "GET")
        if method == "OPTIONS":
            await respond_text(send, 204, "")
            return
        try:
            repo = repo_ref(self.store, npub, identifier)
        except BadRepoPath as exc:
            await respond_text(send, 400, f"bad repository path: {exc}\n")
            return
        if not (repo.path / "HEAD").is_file():
            if self.empty is None:
                await respond_text(send, 404, f"repository not found: {npub}/{repo.identifier}.git\n")
                return
            if rest != "/git-receive-pack":  # a push lands in the pending area, created then
                repo = RepoRef(repo.npub, repo.pubkey, repo.identifier, self.empty)
        if rest == "/info/refs" and method in ("GET", "HEAD"):
            await self._info_refs(scope, send, repo, head_only=method == "HEAD")
        elif rest in ("/git-upload-pack", "/git-receive-pack") and method == "POST":
            if rest == "/git-upload-pack":
                await upload_pack(scope, receive, send, repo, self.settings, self.metrics, self.pace)
            else:
                await self.pushes.serve(scope, receive, send, repo)
        elif rest in ("/info/refs", "/git-upload-pack", "/git-receive-pack"):
            await respond_text(send, 405, f"method {method} not allowed here\n",
                               [(b"allow", b"GET, HEAD" if rest == "/info/refs" else b"POST")])
        else:
            await respond_text(send, 404, "not found (only git smart HTTP is served)\n")

    # --- info/refs ----------------------------------------------------------------------
    async def _info_refs(self, scope: Scope, send: Send, repo: RepoRef, head_only: bool) -> None:
        service = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("service", [""])[0]
        if service not in SERVICES:
            await respond_text(send, 403, "only smart HTTP is supported: ?service=git-upload-pack "
                               "or ?service=git-receive-pack\n")
            return
        ctype = f"application/x-{service}-advertisement"
        if head_only:
            await start_stream(send, 200, ctype)
            await send({"type": "http.response.body", "body": b""})
            return
        env = git_env(scope, service)
        cmd = [self.settings.git_binary, service[4:], "--stateless-rpc", "--advertise-refs",
               str(repo.path)]
        proc = await spawn(cmd, env)
        assert proc.stdout and proc.stderr
        out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()
        if proc.returncode != 0:
            log.error("advertise_failed", repo=str(repo.path), stderr=err.decode(errors="replace")[-500:])
            await respond_text(send, 500, "git failed to list the refs\n")
            return
        preamble = b"" if "version=2" in env.get("GIT_PROTOCOL", "") else service_advertisement_header(service)
        await start_stream(send, 200, ctype)
        await send({"type": "http.response.body", "body": preamble + out})
        self.metrics.git_operation(service[4:], "advertised", 0, len(preamble) + len(out))
