"""Between git and the purgatory: gather what the pure push rules need (the maintainers'
state events, known PR tips, the repo's refs), and after a push tell the purgatory that git
data arrived."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from relay import push_auth
from relay.git_http import RepoRef
from relay.pktline import RefUpdate
from storage import nip34
from storage.event import Event

if TYPE_CHECKING:
    from relay.app import Relay

log = structlog.get_logger(__name__)


class PushGate:
    def __init__(self, relay: "Relay") -> None:
        self.relay = relay

    async def authorize(self, repo: RepoRef, updates: list[RefUpdate]) -> list[str | None]:
        relay = self.relay
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
        await self.relay.purgatory.on_git_data(repo.identifier)
