"""The rules in the order they run, and `decide`, which runs them: the first rule that speaks
decides. Each rule is `(event, view, ctx) -> Verdict | None`; None passes the event on."""

from __future__ import annotations

from collections.abc import Callable

from relay.nostr.policy.access import blacklist_rule, ephemeral_rule, repository_blacklist_rule
from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.contributors import contributor_pr_rule
from relay.nostr.policy.graph import graph_rule, pull_request_rule
from relay.nostr.policy.repositories import announcement_rule, state_rule
from relay.nostr.policy.standalone import deletion_rule, grasp_list_rule
from relay.nostr.policy.verdict import ReadView, Verdict, reject
from storage.nostr.event import Event

Rule = Callable[[Event, ReadView, PolicyContext], "Verdict | None"]

RULES: tuple[Rule, ...] = (
    blacklist_rule,
    ephemeral_rule,
    repository_blacklist_rule,
    grasp_list_rule,
    deletion_rule,
    announcement_rule,
    state_rule,
    contributor_pr_rule,
    pull_request_rule,
    graph_rule,
)


def decide(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict:
    """Run the rules in order; the first that speaks decides. `graph_rule` always speaks."""
    for rule in RULES:
        verdict = rule(event, view, ctx)
        if verdict is not None:
            return verdict
    return reject("blocked: event does not reference a repository served here")
