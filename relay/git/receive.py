"""The push path: `git receive-pack`, authorised before git runs and checked after.

A push's ref updates are read by us first and planned (against signed state events, by the
`plan` callback) before git runs at all: a refused push is answered with a report-status
that `git push` prints, so no hooks are needed. The body is received whole into a spool
file (capped, and paced so a dripping client is cut off); then, under the repo's lock only,
the plan is made again against the refs as they are now, git runs atomically from the file,
and the refs git left are compared with the plan: anything else is put back. Afterwards, in
the background under the lock, objects the push carried that no ref reaches are dropped."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from config.settings import Settings
from relay.git.body import BadBody, BodyTooLarge, ClientGone, Pace
from relay.git.pktline import CommandParser, PktLineError, RefUpdate, report_status_ok, report_status_refusal
from relay.git.process_io import Receive, Send, drain, end_stream, respond_text, run_git, send_file, spool, start_stream
from relay.git.push_auth import PushPlan, apply_updates, decide
from relay.git.request import RepoRef, Scope, git_env, request_body
from relay.http import header
from relay.metrics import MetricsSink
from storage.repos import RepoStore

log = structlog.get_logger(__name__)

RECEIVE_RESULT = "application/x-git-receive-pack-result"

PlanPush = Callable[[RepoRef, list[RefUpdate]], Awaitable[PushPlan]]
Admit = Callable[[RepoRef, PushPlan], "str | None"]
OnPushed = Callable[[RepoRef, PushPlan], Awaitable[None]]


def admit_all(repo: RepoRef, plan: PushPlan) -> str | None:
    return plan.first_reason


async def ignore_pushed(repo: RepoRef, plan: PushPlan) -> None:
    """The default `on_pushed`: nothing to tell anyone."""
    return None


@dataclass(frozen=True, slots=True)
class _Applied:
    """What happened under the lock: the plan git carried out (None: refused, with why)."""

    plan: PushPlan | None
    landed: bool
    refusal: str | None = None


class ReceivePack:
    """Pushes to the repos of one RepoStore."""

    def __init__(self, store: RepoStore, settings: Settings, metrics: MetricsSink, pace: Pace,
                 plan: PlanPush | None = None, admit: Admit = admit_all, on_pushed: OnPushed = ignore_pushed) -> None:
        """`plan` decides a push against the repo's refs now (called twice: once as the
        commands arrive, again under the repo lock); `admit` applies per-client limits, once
        per push; `on_pushed` runs after a push landed, outside the lock. Without `plan`
        every push is allowed (benchmarks and tests of the transport)."""
        self.store = store
        self.settings = settings
        self.plan: PlanPush = plan or self._plan_unchecked
        self.admit = admit
        self.on_pushed = on_pushed
        self.metrics = metrics
        self.pace = pace
        self._background: set[asyncio.Task[None]] = set()
        #: per served repo, the packs of landed pushes not yet audited, with the tips before
        self._audits: dict[Path, list[tuple[set[str], set[str]]]] = {}

    async def _plan_unchecked(self, repo: RepoRef, updates: list[RefUpdate]) -> PushPlan:
        """Any push consistent with the refs here, as if a state said so (no signed events)."""
        current = self.store.all_refs(repo.path)
        after = apply_updates(current, [u for u in updates if u.old != u.new])
        pending = self.store.pending_refs(repo.pubkey, repo.identifier)
        return decide(current, updates, [("unchecked", after)], {}, pending)

    async def serve(self, scope: Scope, receive: Receive, send: Send, repo: RepoRef) -> None:
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
        body = request_body(scope, receive, cap, self.settings.max_gzip_bytes, self.pace)
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
        rc, stderr = await run_git(cmd, git_env(scope, "git-receive-pack"), spooled, answer)
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

