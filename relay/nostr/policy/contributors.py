"""GRASP-06: a PR (1618) or PR update (1619) that the GRASP-01 rules would refuse (it names
no repository served here) is still held in the purgatory when it points at its signer's
contributor repo here: a `clone` URL `/prs/<signer npub>/<identifier>.git` whose identifier
is the `d` of a repository it tags (`purgatory.prs.prs_target`). Its tip is then looked for in
that contributor repo, and it is served once the tip is there, like any PR."""

from __future__ import annotations

from purgatory import prs as grasp06
from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.graph import pull_request_rule
from relay.nostr.policy.verdict import ReadView, Verdict, accept
from storage.nostr import nip34
from storage.nostr.event import Event


def contributor_pr_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if not ctx.grasp06 or event.kind not in (nip34.PR, nip34.PR_UPDATE):
        return None
    verdict = pull_request_rule(event, view, ctx)
    if verdict is None or verdict.accepted or nip34.pr_tip(event) is None:
        return verdict
    root_id = nip34.pr_root(event) if event.kind == nip34.PR_UPDATE else None
    root = view.get_event(root_id) if root_id else None
    identifier = grasp06.prs_target(event, ctx.domain, root)
    if identifier is None:
        return verdict
    owners = [p[1] for p in map(nip34.parse_coordinate, nip34.pr_repo_coordinates(event) +
                                (nip34.pr_repo_coordinates(root) if root is not None else []))
              if p is not None and p[2] == identifier]
    return accept("purgatory", identifier, owners)
