"""Between git and the purgatory: gather what the pure push rules need (the maintainers'
state events, known PR tips, the repo's refs), and after a push tell the purgatory that git
data arrived."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from relay import push_auth
from relay.git_http import RepoRef
from relay.pktline import RefUpdate
from relay.ratelimit import KeyedWindows, current_client
from storage import nip34
from storage.event import Event

if TYPE_CHECKING:
    from relay.app import Relay

log = structlog.get_logger(__name__)


class PushGate:
    def __init__(self, relay: "Relay") -> None:
        self.relay = relay
        self.nostr_pushes = KeyedWindows(relay.settings.nostr_ref_pushes_per_ip_per_hour, 3600.0)

    def _nostr_push_refusal(self, updates: list[RefUpdate]) -> str | None:
        """PR-ref pushes need no signed state, so they are rate limited per address."""
        if not updates or not all(u.ref.startswith(push_auth.NOSTR_PREFIX) for u in updates):
            return None
        wait = self.nostr_pushes.take(current_client.get())
        if not wait:
            return None
        limit = self.relay.settings.nostr_ref_pushes_per_ip_per_hour
        return f"rate-limited: more than {limit} refs/nostr pushes per hour from your address, retry in {int(wait) + 1} s"

    async def authorize(self, repo: RepoRef, updates: list[RefUpdate]) -> list[str | None]:
        relay = self.relay
        refusal = self._nostr_push_refusal(updates)
        if refusal is not None:
            relay.metrics.push_authorisation(False)
            log.info("push", repo=f"{repo.npub}/{repo.identifier}", result="refused", reason=refusal)
            return [refusal] * len(updates)
        candidates = [(s.id, nip34.state_refs(s)[0]) for s in await self.candidate_states(repo)]
        tips: dict[str, str] = {}
        for update in updates:
            event_id = update.ref.removeprefix(push_auth.NOSTR_PREFIX)
            if update.ref.startswith(push_auth.NOSTR_PREFIX):
                known = relay.store.view.get_event(event_id)
                tip = nip34.pr_tip(known) if known is not None else None
                if tip:
                    tips[event_id] = tip
        current = relay.repos.refs(repo.path)
        verdicts = push_auth.decide(current, updates, candidates, tips)
        refused = [v for v in verdicts if v]
        relay.metrics.push_authorisation(not refused)
        log.info("push", repo=f"{repo.npub}/{repo.identifier}", refs=[u.ref for u in updates],
                 result="refused" if refused else "accepted", reason=refused[0] if refused else None)
        return verdicts

    async def candidate_states(self, repo: RepoRef) -> list[Event]:
        """States from the owner's maintainer set: all held ones plus the newest served one,
        newest first, as the protocol allows a push to deliver either."""
        view = self.relay.store.view
        members = nip34.maintainer_set(
            repo.pubkey, repo.identifier, lambda pk: view.announcement(pk, repo.identifier)
        )
        held_ids = {e.event.id for e in await self.relay.store.held(repo.identifier)}
        states = sorted(
            (s for s in view.states_for(repo.identifier) if s.pubkey in members),
            key=lambda s: (-s.created_at, s.id),
        )
        held = [s for s in states if s.id in held_ids]
        served = [s for s in states if s.id not in held_ids][:1]
        return sorted(held + served, key=lambda s: (-s.created_at, s.id))

    async def on_pushed(self, repo: RepoRef, updates: list[RefUpdate]) -> None:
        for update in updates:
            event_id = update.ref.removeprefix(push_auth.NOSTR_PREFIX)
            if update.ref.startswith(push_auth.NOSTR_PREFIX) and self.relay.store.view.get_event(event_id) is None:
                await self.relay.purgatory.expect_pr(event_id, repo.pubkey, repo.identifier, update.new)
        await self.relay.purgatory.on_git_data(repo.identifier)
