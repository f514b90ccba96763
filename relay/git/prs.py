"""GRASP-06 contributor repos over git smart HTTP: `/prs/<npub>/<identifier>.git`.

Anyone may push there, but only `refs/nostr/<event-id>` refs (a PR's tip, named by its
event id), with the open-push limits of refs/nostr pushes elsewhere (the same per-address
window, `nostr_ref_push_max_bytes`). A push lands in the contributor repo's pending area,
never served, and is served (and mirrored into the announced repos of the identifier) only
once a PR event signed by that npub, tagging a repository with that identifier and naming
that tip, is released (`purgatory.apply`). Until then, and for any well-formed path nobody
pushed to, fetches answer as an empty repository and nothing is created on disk.

The rules are small pure functions, one message each; `PrsPushes` gathers what they read."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from config import Settings
from purgatory import lifecycle
from purgatory import prs as grasp06
from relay.git import push_auth
from relay.git.pktline import RefUpdate
from relay.git.request import RepoRef
from storage.nostr import nip34
from storage.nostr.event import Event, is_hex
from storage.repos import RepoStore

log = structlog.get_logger(__name__)

_PRS_PATH = re.compile(r"^/prs/(npub1[^/]*)/([^/]*)\.git(/.*)?$")

ONLY_NOSTR = ("a /prs/ repository takes only refs/nostr/<event-id> refs (a pull request's tip, named by "
              "the id of its kind 1618/1619 event)")

#: the contributor-repo PR-ref placeholder: (event id, contributor, identifier, tip)
ExpectPr = Callable[[str, str, str, str], Awaitable[None]]
OnGitData = Callable[[str], Awaitable[object]]
Lookup = Callable[[str], "Event | None"]


def parse_prs_path(path: str) -> tuple[str, str, str] | None:
    """(npub, raw identifier, rest) of a raw `/prs/...` request path, as `parse_git_path`."""
    match = _PRS_PATH.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3) or ""


# --- rules, one message each ------------------------------------------------------------
def prs_namespace_problem(update: RefUpdate) -> str | None:
    name = update.ref.removeprefix(nip34.PR_REF_PREFIX)
    if update.ref.startswith(nip34.PR_REF_PREFIX) and is_hex(name, 64):
        return None
    return ONLY_NOSTR


def prs_event_problem(event: Event | None, owner: str, identifier: str, domain: str,
                      root: Event | None = None) -> str | None:
    """A PR event already known must be the contributor's own PR for this identifier."""
    if event is None:
        return None
    short = event.id[:8]
    if event.kind not in (nip34.PR, nip34.PR_UPDATE):
        return f"event {short} is not a pull request (kind 1618 or 1619)"
    if event.pubkey != owner:
        return f"PR event {short} is signed by {nip34.hex_to_npub(event.pubkey)}, not the owner of this /prs/ path"
    if grasp06.prs_target(event, domain, root) != identifier:
        return (f"PR event {short} does not tag a repository '{identifier}' and name this /prs/ URL in "
                "its clone tag")
    return None


def plan_prs_push(repo: RepoRef, updates: Sequence[RefUpdate], served: Mapping[str, str],
                  pending: Mapping[str, str], known: Mapping[str, Event | None], domain: str,
                  roots: Mapping[str, Event | None]) -> push_auth.PushPlan:
    """The plan for one push to a contributor repo: refs/nostr only, each not contradicting
    a PR event we know; then the ordinary refs/nostr plan (into the pending area)."""
    ups = tuple(updates)
    reasons: list[str | None] = []
    tips: dict[str, str] = {}
    for update in ups:
        reason = prs_namespace_problem(update)
        if reason is None:
            event_id = update.ref.removeprefix(nip34.PR_REF_PREFIX)
            event = known.get(event_id)
            reason = prs_event_problem(event, repo.pubkey, repo.identifier, domain, roots.get(event_id))
            tip = nip34.pr_tip(event) if event is not None else None
            if tip:
                tips[event_id] = tip
        reasons.append(reason)
    if any(reasons):
        return push_auth.PushPlan(ups, tuple(reasons))
    return push_auth.decide(served, ups, [], tips, pending)


class PrsPushes:
    """Plans and follows up pushes to the contributor repos of one RepoStore."""

    def __init__(self, settings: Settings, lookup: Lookup, repos: RepoStore, expect_pr: ExpectPr,
                 on_git_data: OnGitData) -> None:
        self.settings = settings
        self.lookup = lookup
        self.repos = repos
        self.expect_pr = expect_pr
        self.on_git_data = on_git_data

    async def plan(self, repo: RepoRef, updates: list[RefUpdate]) -> push_auth.PushPlan:
        known: dict[str, Event | None] = {}
        roots: dict[str, Event | None] = {}
        for update in updates:
            if update.ref.startswith(nip34.PR_REF_PREFIX):
                event_id = update.ref.removeprefix(nip34.PR_REF_PREFIX)
                event = known[event_id] = self.lookup(event_id)
                root_id = nip34.pr_root(event) if event is not None else None
                roots[event_id] = self.lookup(root_id) if root_id else None
        served = self.repos.all_refs(repo.path) if (repo.path / "HEAD").is_file() else {}
        pending = self.repos.pending_refs(repo.pubkey, repo.identifier)
        return plan_prs_push(repo, updates, served, pending, known, self.settings.domain, roots)

    async def on_pushed(self, repo: RepoRef, plan: push_auth.PushPlan) -> None:
        """A ref no event names yet waits under a deadline; then whatever it satisfies is released."""
        for command in plan.commands:
            event_id = command.ref.removeprefix(nip34.PR_REF_PREFIX)
            if self.lookup(event_id) is None:
                await self.expect_pr(event_id, repo.pubkey, repo.identifier, command.new)
            else:
                lifecycle.step(lifecycle.PUSHED, lifecycle.EVENT_KNOWN)
        await self.on_git_data(repo.identifier)
