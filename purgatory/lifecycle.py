"""The purgatory's lifecycle, in one table: what an entry can be, what moves it, who acts.

Two things wait here. An *event* (a state, a PR, a PR update, an announcement) whose git
data is not on this server yet is held; a *PR ref* (`refs/nostr/<id>`) pushed into a
repo's pending area waits for the event that names it. Every module of the package that
changes one of them asks `step` first, so a move the table does not list fails loudly
instead of leaving an entry in a state nobody expects; tests/test_purgatory_lifecycle.py
checks that every move the code names is in the table.

Read a row as: in `state`, `trigger` moves the entry to `next_state`, and `actor` does it.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- states of a held event ---------------------------------------------------------------
NEW = "new"              # not known here (or forgotten: the two cannot be told apart)
HELD = "held"            # in the purgatory tables, not served, a deadline running
RELEASED = "released"    # moved into the served store (and broadcast)
EXPIRED = "expired"      # deadline passed; its id remembered so a synced copy is not held again
FORGOTTEN = "forgotten"  # the memory of the expiry elapsed: the id may be held afresh
DELETED = "deleted"      # a kind 5 from its author removed it while held

# --- states of a PR ref pushed to refs/nostr/<id> -----------------------------------------
PUSHED = "pushed"            # in the repo's pending area, just accepted by the push gate
PLACEHOLDER = "placeholder"  # no event names it yet: kept until a deadline
WAITING = "waiting"          # its event is known (held): waits for that event's release
CLAIMED = "claimed"          # written into the served repos its event names; pending copy gone
REMOVED = "removed"          # dropped: nobody signed it in time, or its event names another tip

# --- triggers -----------------------------------------------------------------------------
HOLD = "hold"                      # the policy sent the event to the purgatory
DATA_HERE = "data_here"            # the git data it promises is on this server
STATE_ADOPTED = "state_adopted"    # an announcement whose maintainers' served state now rules its repo
DEADLINE = "deadline"              # the sweeper found its deadline passed
MEMORY_ELAPSED = "memory_elapsed"  # purgatory_expired_memory_s after the expiry
DELETION = "deletion"              # a kind 5 naming it was stored
NO_EVENT_YET = "no_event_yet"      # pushed, and no event with that id is known
EVENT_KNOWN = "event_known"        # the event with that id is known (held or served)
CONTRADICTED = "contradicted"      # the event arrived and names a different tip
EVENT_EXPIRED = "event_expired"    # the held event naming it expired: nothing signed it in the end

EVENT_STATES = (NEW, HELD, RELEASED, EXPIRED, FORGOTTEN, DELETED)
PR_REF_STATES = (PUSHED, PLACEHOLDER, WAITING, CLAIMED, REMOVED)


@dataclass(frozen=True, slots=True)
class Transition:
    state: str
    trigger: str
    next_state: str
    actor: str


TABLE: tuple[Transition, ...] = (
    # held events
    Transition(NEW, HOLD, HELD, "holding.Holding.accept (from ingest, after the policy)"),
    Transition(HELD, HOLD, HELD, "holding.Holding.accept: a duplicate keeps its first deadline"),
    Transition(EXPIRED, HOLD, EXPIRED, "holding.Holding.accept: refused (answers None)"),
    Transition(HELD, DATA_HERE, RELEASED, "apply.Release.on_git_data (after a push, a fetch, an intake)"),
    Transition(HELD, STATE_ADOPTED, RELEASED, "holding.Holding.accept via adopt.Adoption"),
    Transition(HELD, DEADLINE, EXPIRED, "holding.Holding.expire_due (the sweeper)"),
    Transition(EXPIRED, MEMORY_ELAPSED, FORGOTTEN, "holding.Holding.expire_due (store.forget_expired)"),
    Transition(HELD, DELETION, DELETED, "storage.sqlite.write_ops (a kind 5 saved by ingest)"),
    # PR refs in a pending area
    Transition(PUSHED, NO_EVENT_YET, PLACEHOLDER, "relay.git.push_gate.on_pushed -> placeholders.expect_pr"),
    Transition(PUSHED, EVENT_KNOWN, WAITING, "relay.git.push_gate.on_pushed"),
    Transition(PLACEHOLDER, EVENT_KNOWN, WAITING,
               "placeholders.event_arrived (intake), or the sweeper finding the event known"),
    Transition(PLACEHOLDER, DEADLINE, REMOVED, "placeholders.expire_due (the sweeper)"),
    Transition(WAITING, CONTRADICTED, REMOVED, "placeholders.event_arrived (intake)"),
    Transition(PLACEHOLDER, CONTRADICTED, REMOVED,
               "placeholders.event_arrived: a /prs/ ref whose event is not its signer's PR for that identifier"),
    Transition(WAITING, DATA_HERE, CLAIMED, "apply.Release.on_git_data -> placeholders.claim"),
    Transition(WAITING, EVENT_EXPIRED, REMOVED, "holding.Holding.expire_due -> placeholders.event_expired"),
)

_BY_MOVE: dict[tuple[str, str], Transition] = {(t.state, t.trigger): t for t in TABLE}


class IllegalTransition(ValueError):
    """A move the table does not allow: a bug in the caller, never a client's fault."""


def step(state: str, trigger: str, to: str | None = None) -> str:
    """What `trigger` does to an entry in `state`: the next state, or IllegalTransition
    (also when the caller names the state it expects, `to`, and the table says another)."""
    row = _BY_MOVE.get((state, trigger))
    if row is None:
        raise IllegalTransition(f"{trigger!r} does not apply to a {state!r} entry")
    if to is not None and row.next_state != to:
        raise IllegalTransition(f"{trigger!r} moves a {state!r} entry to {row.next_state!r}, not {to!r}")
    return row.next_state
