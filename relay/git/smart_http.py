"""Git smart HTTP for `/<npub>/<identifier>.git/...`, as a raw ASGI component.

Use: `GitHttp(store, settings, authorize=..., on_pushed=...)` is an ASGI callable for one
HTTP request whose path `parse_git_path(raw_path)` recognised; the app routes there every
git path except the bare `/<npub>/<identifier>.git` (the HTML page), i.e. whenever `rest`
is not "" or "/". `handle(...)` does the same with the path already parsed.

Bodies are streamed both ways between the client and `git upload-pack` / `git receive-pack
--stateless-rpc`, never held whole. A push's ref updates are read by us first and authorised
(against signed state events, by the `authorize` callback) before git runs at all: a refused
push is answered with a report-status that `git push` prints, so no hooks are needed."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs

import structlog

from config.settings import Settings
from relay.http import header
from relay.git.body import BadBody, BodyTooLarge, ClientGone, Pace, body_chunks, is_gzip
from relay.git.process_io import (
    CHUNK, client_gone, drain, end_stream, respond_text, run_git, send_file, spool,
    start_stream, stderr_tail, stop_git,
)
from relay.metrics import DisabledMetrics, GitService, MetricsSink
from relay.git.spawn import spawn
from relay.git.push_auth import PushPlan, apply_updates, decide
from relay.git.pktline import (
    CommandParser,
    PktLineError,
    RefUpdate,
    report_status_ok,
    report_status_refusal,
    service_advertisement_header,
)
from storage.repos import BadRepoPath, RepoStore, owner_pubkey, validate_identifier

log = structlog.get_logger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SERVICES = ("git-upload-pack", "git-receive-pack")
RECEIVE_RESULT = "application/x-git-receive-pack-result"
_GIT_PATH = re.compile(r"^/(npub1[^/]*)/([^/]*)\.git(/.*)?$")
_PROTOCOL_HEADER = re.compile(r"^[A-Za-z0-9=:._-]{1,256}$")


@dataclass(frozen=True, slots=True)
class _Applied:
    """What happened under the lock: the plan git carried out (None: refused, with why)."""

    plan: PushPlan | None
    landed: bool
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class RepoRef:
    """The repo a request is about: owner in both forms, decoded identifier, disk path."""

    npub: str
    pubkey: str
    identifier: str
    path: Path


PlanPush = Callable[[RepoRef, list[RefUpdate]], Awaitable[PushPlan]]
Admit = Callable[[RepoRef, PushPlan], "str | None"]
OnPushed = Callable[[RepoRef, PushPlan], Awaitable[None]]


def admit_all(repo: RepoRef, plan: PushPlan) -> str | None:
    return plan.first_reason


async def _ignore(repo: RepoRef, plan: PushPlan) -> None:
    return None


def parse_git_path(path: str) -> tuple[str, str, str] | None:
    """Split a request path into (npub, raw identifier, rest) or None if it is not a git path.

    Pass the RAW path (ASGI `raw_path`, still percent-encoded): servers decode `path`, which
    would turn `%2f` into a separator before we could refuse it. The identifier is returned
    still encoded; `validate_identifier` decodes and checks it. `rest` is "" for the bare
    repo URL (the HTML page) and e.g. "/info/refs" or "/git-upload-pack" otherwise."""
    match = _GIT_PATH.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3) or ""


class GitHttp:
    """Smart HTTP endpoints for every repo of one RepoStore."""

    def __init__(self, store: RepoStore, settings: Settings, plan: PlanPush | None = None,
                 admit: Admit = admit_all, on_pushed: OnPushed = _ignore,
                 metrics: MetricsSink | None = None) -> None:
        """`plan` decides a push against the repo's refs now (called twice: once as the
        commands arrive, again under the repo lock); `admit` applies per-client limits, once
        per push; `on_pushed` runs after a push landed, outside the lock. Without `plan`
        every push is allowed (benchmarks and tests of the transport)."""
        self.store = store
        self.settings = settings
        self.plan: PlanPush = plan or self._plan_unchecked
        self.admit = admit
        self.on_pushed = on_pushed
        self.metrics: MetricsSink = metrics or DisabledMetrics()
        self._background: set[asyncio.Task[None]] = set()
        #: per served repo, the packs of landed pushes not yet audited, with the tips before
        self._audits: dict[Path, list[tuple[set[str], set[str]]]] = {}
        self.pace = Pace(settings.git_body_idle_timeout_s, settings.git_body_deadline_s,
                         settings.git_body_min_rate_bytes_s, settings.git_body_min_rate_grace_s)

    async def _plan_unchecked(self, repo: RepoRef, updates: list[RefUpdate]) -> PushPlan:
        """Any push consistent with the refs here, as if a state said so (no signed events)."""
        current = self.store.all_refs(repo.path)
        after = apply_updates(current, [u for u in updates if u.old != u.new])
        pending = self.store.pending_refs(repo.pubkey, repo.identifier)
        return decide(current, updates, [("unchecked", after)], {}, pending)

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
            repo = self._repo(npub, identifier)
        except BadRepoPath as exc:
            await respond_text(send, 400, f"bad repository path: {exc}\n")
            return
        if not (repo.path / "HEAD").is_file():
            await respond_text(send, 404, f"repository not found: {npub}/{repo.identifier}.git\n")
            return
        if rest == "/info/refs" and method in ("GET", "HEAD"):
            await self._info_refs(scope, send, repo, head_only=method == "HEAD")
        elif rest in ("/git-upload-pack", "/git-receive-pack") and method == "POST":
            if rest == "/git-upload-pack":
                await self._upload_pack(scope, receive, send, repo)
            else:
                await self._receive_pack(scope, receive, send, repo)
        elif rest in ("/info/refs", "/git-upload-pack", "/git-receive-pack"):
            await respond_text(send, 405, f"method {method} not allowed here\n",
                               [(b"allow", b"GET, HEAD" if rest == "/info/refs" else b"POST")])
        else:
            await respond_text(send, 404, "not found (only git smart HTTP is served)\n")

    def _repo(self, npub: str, raw_identifier: str) -> RepoRef:
        identifier = validate_identifier(raw_identifier)
        pubkey = owner_pubkey(npub)
        return RepoRef(npub, pubkey, identifier, self.store.path(npub, identifier))

    def _body(self, scope: Scope, receive: Receive, cap: int) -> AsyncIterator[bytes]:
        return body_chunks(receive, is_gzip(header(scope, b"content-encoding")), cap, self.settings.max_gzip_bytes,
                           self.pace)

    def _env(self, scope: Scope, service: str) -> dict[str, str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        env.pop("GIT_PROTOCOL", None)
        proto = header(scope, b"git-protocol").decode("latin-1")
        if service == "git-upload-pack" and _PROTOCOL_HEADER.match(proto):
            env["GIT_PROTOCOL"] = proto
        return env

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
        env = self._env(scope, service)
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

    # --- upload-pack --------------------------------------------------------------------
    async def _upload_pack(self, scope: Scope, receive: Receive, send: Send, repo: RepoRef) -> None:
        """A fetch: the request (wants and haves) is received whole, capped, into a spool
        file, so a bad or oversized body is answered 4xx before git runs; then git's pack is
        streamed out, and git is stopped at once if the client hangs up half way."""
        cap = self.settings.max_gzip_bytes  # wants/haves only: the gzip cap bounds it too
        body = self._body(scope, receive, cap)
        self.settings.spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.settings.spool_dir) as request:
            try:
                received = await spool(request, b"", body, cap, "request body")
            except (BodyTooLarge, BadBody) as exc:
                self.metrics.git_operation("upload-pack", "cut", 0, 0)
                await respond_text(send, 413 if isinstance(exc, BodyTooLarge) else 400, f"{exc}\n")
                return
            except ClientGone:
                return
            request.seek(0)
            cmd = [self.settings.git_binary, "upload-pack", "--stateless-rpc", str(repo.path)]
            await self._stream_out(send, cmd, self._env(scope, "git-upload-pack"), request, received,
                                   "application/x-git-upload-pack-result", lambda: client_gone(receive))

    # --- receive-pack -------------------------------------------------------------------
    async def _receive_pack(self, scope: Scope, receive: Receive, send: Send, repo: RepoRef) -> None:
        """A push, in the order that keeps the promise: read the commands; refuse what the
        rules refuse without any lock; receive the whole body into a spool file (capped, and
        paced so a dripping client is cut off); then, under the repo's lock only, plan again
        against the refs as they are now, run git atomically from the file, and compare the
        refs git left with the plan: anything else is put back."""
        cap = self.settings.max_push_bytes
        length = header(scope, b"content-length")
        if length.isdigit() and int(length) > cap:
            await respond_text(send, 413, f"push is larger than the limit of {cap} bytes\n")
            return
        body = self._body(scope, receive, cap)
        parser = CommandParser()
        try:
            async for chunk in body:
                if parser.feed(chunk):
                    break
            if not parser.done:
                raise BadBody("push body ended before its command list")
        except (BodyTooLarge, BadBody, PktLineError) as exc:
            await respond_text(send, 413 if isinstance(exc, BodyTooLarge) else 400, f"{exc}\n")
            return
        except ClientGone:
            return
        updates = parser.result.updates
        if not updates:  # the client's "0000" probe before a large push: git would say nothing
            await start_stream(send, 200, RECEIVE_RESULT)
            await end_stream(send)
            return
        plan = await self.plan(repo, updates)
        refusal = self.admit(repo, plan)
        if refusal is not None:
            drained = await drain(body)
            self.metrics.git_operation("receive-pack", "refused", len(parser.consumed) + (drained or 0), 0)
            if drained is not None:
                await self._answer_refusal(send, repo, parser, plan, refusal)
            return
        limit, what = cap, "push"
        if plan.open_push:
            # PR refs need no signed state: anyone may push them, so they get a smaller cap
            limit, what = self.settings.nostr_ref_push_max_bytes, "refs/nostr push"
        self.settings.spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.settings.spool_dir) as spooled, \
                tempfile.TemporaryFile(dir=self.settings.spool_dir) as answer:
            try:
                head = parser.result.encode(plan.commands, add=("atomic",))
                received = await spool(spooled, head + parser.rest, body, limit, what,
                                       already=len(parser.consumed))
            except (BodyTooLarge, BadBody) as exc:
                self.metrics.git_operation("receive-pack", "cut", 0, 0)
                log.warning("git_rpc_cut", cmd="receive-pack", error=type(exc).__name__, detail=str(exc))
                await respond_text(send, 413 if isinstance(exc, BodyTooLarge) else 400, f"{exc}\n")
                return
            except ClientGone:
                return
            async with self.store.lock(repo.path):
                outcome = await self._apply(scope, repo, updates, spooled, answer, received)
            if outcome.plan is None:
                await self._answer_refusal(send, repo, parser, plan, outcome.refusal or "push refused")
                return
            if outcome.landed:
                try:
                    await self.on_pushed(repo, outcome.plan)
                except Exception:
                    log.exception("on_pushed_failed", repo=str(repo.path))
                if outcome.plan.target == "served":
                    self._housekeeping(repo.path)
            await start_stream(send, 200, RECEIVE_RESULT)
            if outcome.plan.target == "none":
                await send({"type": "http.response.body", "more_body": True,
                            "body": report_status_ok(parser.result)})
            else:
                await send_file(send, answer)
            await end_stream(send)

    def _housekeeping(self, path: Path) -> None:
        """After a push, in the background and under the repo lock: drop the objects its
        pack carried that no ref reaches (they would be served by id), then git's gc --auto.
        Audits queued by several pushes run together, all before gc can merge their packs."""
        async def run() -> None:
            async with self.store.lock(path):
                audits = self._audits.pop(path, [])
                if audits:
                    packs = set().union(*(packs for packs, _ in audits))
                    dropped = await asyncio.to_thread(self.store.drop_unreachable_in, path, packs, audits[0][1])
                    if dropped:
                        self.metrics.git_operation("receive-pack", "unreachable-dropped")
                await asyncio.to_thread(self.store.housekeeping, path)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _apply(self, scope: Scope, repo: RepoRef, updates: list[RefUpdate],
                     spooled: BinaryIO, answer: BinaryIO, received: int) -> "_Applied":
        """Under the repo lock: plan against the refs now, run git, check what it left."""
        plan = await self.plan(repo, updates)
        if plan.refused:  # the refs moved while the body arrived
            log.info("push_refused", repo=str(repo.path), reason=plan.first_reason, when="under lock")
            return _Applied(None, False, plan.first_reason)
        if plan.target == "none":  # every command was a no-op
            return _Applied(plan, False)
        path = repo.path
        if plan.target == "pending":
            path = await asyncio.to_thread(self.store.ensure_pending, repo.pubkey, repo.identifier)
        spooled.seek(0)
        # gc runs later under the lock (self._housekeeping), never detached beside a push:
        # a push that fails removes the packs written meanwhile, which must all be its own
        cmd = [self.settings.git_binary, "-c", "receive.autogc=false", "receive-pack", "--stateless-rpc",
               str(path)]
        packs = await asyncio.to_thread(self.store.packs, path)
        rc, stderr = await run_git(cmd, self._env(scope, "git-receive-pack"), spooled, answer)
        left = await asyncio.to_thread(self.store.all_refs, path)
        if left == dict(plan.expected) and rc == 0:
            self.metrics.git_operation("receive-pack", "ok", received, answer.tell())
            log.info("pushed", repo=str(path), updates=len(plan.commands))
            if plan.target == "served":
                new_packs = await asyncio.to_thread(self.store.packs, path)
                self._audits.setdefault(path, []).append((new_packs - packs, set(plan.before.values())))
            return _Applied(plan, True)
        if left == dict(plan.before):  # git refused (its answer says why); nothing moved
            self.metrics.git_operation("receive-pack", "failed", received, answer.tell())
            log.warning("git_rpc_failed", cmd="receive-pack", rc=rc, stderr=stderr[-500:])
            await asyncio.to_thread(self.store.remove_packs_since, path, packs)
            return _Applied(plan, False)
        # git did something nobody authorised: the safety net puts the refs back, and the
        # objects the push brought go with them (under the lock nothing else wrote a pack)
        restored = await asyncio.to_thread(self.store.restore_refs, path, dict(plan.before))
        await asyncio.to_thread(self.store.remove_packs_since, path, packs)
        self.metrics.git_operation("receive-pack", "restored", received, answer.tell())
        log.error("push_restored", repo=str(path), refs=restored, rc=rc, stderr=stderr[-500:],
                  request_id=header(scope, b"x-request-id").decode("latin-1") or None,
                  expected=dict(plan.expected), found=left)
        return _Applied(None, False, "the refs git left differ from what was authorised; "
                        "the push was undone")

    async def _answer_refusal(self, send: Send, repo: RepoRef, parser: CommandParser,
                              plan: PushPlan, first: str) -> None:
        """A report-status refusing every command, which `git push` prints per ref."""
        log.info("push_refused", repo=str(repo.path), reason=first)
        reasons: list[str | None] = list(plan.reasons) if plan.refused else [first] * len(plan.updates)
        await start_stream(send, 200, RECEIVE_RESULT)
        await send({"type": "http.response.body",
                    "body": report_status_refusal(parser.result, reasons, f"push refused as a whole: {first}")})

    # --- streaming git's answer ---------------------------------------------------------
    async def _stream_out(self, send: Send, cmd: list[str], env: dict[str, str], stdin: BinaryIO,
                          received: int, content_type: str, gone: Callable[[], Awaitable[None]]) -> None:
        """Run git on a received request and stream its stdout to the client as it comes.
        `gone` resolves when the client hangs up: a clone abandoned half way then stops git
        at once instead of packing the rest for nobody."""
        proc = await spawn(cmd, env, stdin=stdin, limit=CHUNK)
        assert proc.stdout and proc.stderr
        errors = asyncio.create_task(stderr_tail(proc.stderr))
        watch = asyncio.ensure_future(gone())
        started = False
        sent = 0
        service: GitService = "upload-pack"
        try:
            while True:
                read = asyncio.ensure_future(proc.stdout.read(CHUNK))
                await asyncio.wait({read, watch}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    raise ClientGone()
                data = read.result()
                if not data:
                    break
                if not started:
                    await start_stream(send, 200, content_type)
                    started = True
                await send({"type": "http.response.body", "body": data, "more_body": True})
                sent += len(data)
            rc = await proc.wait()
        except ClientGone:
            self.metrics.git_operation(service, "cut", received, sent)
            await stop_git(proc, kill=True)
            log.warning("git_rpc_cut", cmd=service, error="ClientGone")
            return
        finally:
            watch.cancel()
            await stop_git(proc)
        stderr = await errors
        self.metrics.git_operation(service, "ok" if rc == 0 else "failed", received, sent)
        if rc != 0:
            log.warning("git_rpc_failed", cmd=service, rc=rc, stderr=stderr[-500:])
            if not started:
                await respond_text(send, 500, "git failed\n")
                return
        elif not started:
            await start_stream(send, 200, content_type)
        await end_stream(send)
