"""Between git and the purgatory: gather what the pure push rules need (the maintainers'
state events, known PR tips, the repo's refs), and after a push tell the purgatory that git
data arrived."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from config import Settings
from purgatory import lifecycle
from purgatory.ports import HeldReads
from relay.git import push_auth
from relay.git.pktline import RefUpdate
from relay.git.smart_http import RepoRef
from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.pushes import push_refusal
from relay.ratelimit import KeyedWindows, current_client
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore

log = structlog.get_logger(__name__)

#: the purgatory's PR-ref placeholder: (event id, owner, identifier, tip)
ExpectPr = Callable[[str, str, str, str], Awaitable[None]]
#: the purgatory's release step, run when git data arrived for an identifier
OnGitData = Callable[[str], Awaitable[object]]


class GateView(Protocol):
    """The store-view reads a push decision makes (served or held events)."""

    def announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def states_for(self, identifier: str) -> list[Event]: ...
    def get_event(self, event_id: str) -> Event | None: ...


class PushMetrics(Protocol):
    def push_authorisation(self, accepted: bool) -> None: ...


class PushGate:
    """Given the view reads and held entries it needs, the repos and the purgatory's two
    entry points by relay/compose.py, never the app."""

    def __init__(self, settings: Settings, view: GateView, held: HeldReads, repos: RepoStore, metrics: PushMetrics,
                 expect_pr: ExpectPr, on_git_data: OnGitData,
                 context: Callable[[], PolicyContext] | None = None) -> None:
        """`context` gives the operator's lists as they are now (a reload replaces them)."""
        self.settings = settings
        self.context = context
        self.view = view
        self.held = held
        self.repos = repos
        self.metrics = metrics
        self.expect_pr = expect_pr
        self.on_git_data = on_git_data
        self.nostr_pushes = KeyedWindows(settings.nostr_ref_pushes_per_ip_per_hour, 3600.0)

    def admit(self, repo: RepoRef, plan: push_auth.PushPlan) -> str | None:
        """Once per push, after the rules: the refusal to answer with, or None. Pushes that
        change no branch or tag need no signed state (refs/nostr, or nothing at all), so
        they are rate limited per address."""
        refusal = plan.first_reason
        if refusal is None and plan.open_push:
            wait = self.nostr_pushes.count_or_wait(current_client.get())
            if wait:
                limit = self.settings.nostr_ref_pushes_per_ip_per_hour
                refusal = (f"rate-limited: more than {limit} refs/nostr pushes per hour from your "
                           f"address, retry in {int(wait) + 1} s")
        self.metrics.push_authorisation(refusal is None)
        log.info("push", repo=f"{repo.npub}/{repo.identifier}", refs=[u.ref for u in plan.updates],
                 result="refused" if refusal else "accepted", reason=refusal)
        return refusal

    async def plan(self, repo: RepoRef, updates: list[RefUpdate]) -> push_auth.PushPlan:
        """The push rules applied to what is here now: the repo's refs, its pending PR refs,
        the maintainers' states and the tips of the PR events we know; the operator's
        rules (a blacklisted repository, a read-only archive) first."""
        if self.context is not None:
            operator = push_refusal(repo.pubkey, repo.identifier,
                                    self.view.announcement(repo.pubkey, repo.identifier), self.context())
            if operator is not None:
                return push_auth.PushPlan(tuple(updates), tuple(operator for _ in updates))
        candidates = [(s.id, nip34.state_refs(s)[0]) for s in await self.candidate_states(repo)]
        tips: dict[str, str] = {}
        for update in updates:
            if update.ref.startswith(nip34.PR_REF_PREFIX):
                event_id = update.ref.removeprefix(nip34.PR_REF_PREFIX)
                known = self.view.get_event(event_id)
                tip = nip34.pr_tip(known) if known is not None else None
                if tip:
                    tips[event_id] = tip
        repos = self.repos
        current = repos.all_refs(repo.path)
        pending = repos.pending_refs(repo.pubkey, repo.identifier)
        return push_auth.decide(current, updates, candidates, tips, pending)

    async def candidate_states(self, repo: RepoRef) -> list[Event]:
        """States from the owner's confirmed maintainers: all held ones plus the newest served one,
        newest first, as the protocol allows a push to deliver either."""
        view = self.view
        members = nip34.maintainer_set(
            repo.pubkey, repo.identifier, lambda pk: view.announcement(pk, repo.identifier),
            now=time.time(), limits=nip34.WalkLimits.of(self.settings),
        )
        held_ids = {e.event.id for e in await self.held.held(repo.identifier)}
        states = sorted(
            (s for s in view.states_for(repo.identifier) if s.pubkey in members),
            key=lambda s: (-s.created_at, s.id),
        )
        held = [s for s in states if s.id in held_ids]
        served = [s for s in states if s.id not in held_ids][:1]
        return sorted(held + served, key=lambda s: (-s.created_at, s.id))

    async def on_pushed(self, repo: RepoRef, plan: push_auth.PushPlan) -> None:
        """A PR ref no event names yet is a placeholder with a deadline; then whatever the
        new data satisfies is released."""
        for command in plan.commands:
            if not command.ref.startswith(nip34.PR_REF_PREFIX):
                continue
            event_id = command.ref.removeprefix(nip34.PR_REF_PREFIX)
            if self.view.get_event(event_id) is None:
                await self.expect_pr(event_id, repo.pubkey, repo.identifier, command.new)
            else:
                lifecycle.step(lifecycle.PUSHED, lifecycle.EVENT_KNOWN)
        await self.on_git_data(repo.identifier)
