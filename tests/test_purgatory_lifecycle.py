"""The lifecycle table (purgatory/lifecycle.py): well formed, `step` follows it and refuses
the rest, and every move the code asks for is a row of it (read from the source, so a new
`lifecycle.step(...)` with a move the table lacks fails here before it fails at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from purgatory import lifecycle
from purgatory.lifecycle import TABLE, IllegalTransition, step

ROOT = Path(__file__).resolve().parent.parent
#: the modules that move entries: the purgatory package and the push gate
SOURCES = sorted((ROOT / "purgatory").glob("*.py")) + [ROOT / "relay" / "git" / "push_gate.py"]


def test_each_state_and_trigger_has_at_most_one_row() -> None:
    moves = [(t.state, t.trigger) for t in TABLE]
    assert len(moves) == len(set(moves))


def test_rows_stay_within_one_machine_and_name_who_acts() -> None:
    for row in TABLE:
        machine = lifecycle.EVENT_STATES if row.state in lifecycle.EVENT_STATES else lifecycle.PR_REF_STATES
        assert row.state in machine and row.next_state in machine, row
        assert row.actor.strip(), row


def test_every_state_but_the_first_is_reached_and_every_row_is_reachable() -> None:
    reached = {lifecycle.NEW, lifecycle.PUSHED}
    for _ in TABLE:  # a fixed point: at most one new state per pass
        reached |= {t.next_state for t in TABLE if t.state in reached}
    assert reached == set(lifecycle.EVENT_STATES) | set(lifecycle.PR_REF_STATES)


def test_step_follows_the_table() -> None:
    for row in TABLE:
        assert step(row.state, row.trigger) == row.next_state
    assert step(lifecycle.HELD, lifecycle.DATA_HERE) == lifecycle.RELEASED
    assert step(lifecycle.PLACEHOLDER, lifecycle.DEADLINE) == lifecycle.REMOVED
    assert step(lifecycle.HELD, lifecycle.STATE_ADOPTED, to=lifecycle.RELEASED) == lifecycle.RELEASED


def test_a_caller_expecting_another_next_state_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        step(lifecycle.HELD, lifecycle.DEADLINE, to=lifecycle.RELEASED)  # that move expires it


@pytest.mark.parametrize(("state", "trigger"), [
    (lifecycle.RELEASED, lifecycle.DEADLINE),        # a served event never expires from purgatory
    (lifecycle.EXPIRED, lifecycle.DATA_HERE),        # nor is an expired one released when data comes
    (lifecycle.FORGOTTEN, lifecycle.MEMORY_ELAPSED),
    (lifecycle.NEW, lifecycle.DATA_HERE),            # nothing is released without being held first
    (lifecycle.REMOVED, lifecycle.DATA_HERE),        # a removed PR ref is not claimed
    (lifecycle.CLAIMED, lifecycle.DEADLINE),
    (lifecycle.HELD, lifecycle.NO_EVENT_YET),        # a trigger of the other machine
    ("nonsense", lifecycle.HOLD),
])
def test_a_move_the_table_does_not_list_raises(state: str, trigger: str) -> None:
    with pytest.raises(IllegalTransition):
        step(state, trigger)


def _constant(node: ast.expr) -> set[str] | None:
    """`lifecycle.X` as its value; both branches of `a if c else b`; None otherwise."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "lifecycle":
        return {getattr(lifecycle, node.attr)}
    if isinstance(node, ast.IfExp):
        body, orelse = _constant(node.body), _constant(node.orelse)
        return body | orelse if body is not None and orelse is not None else None
    return None


def _moves_in_code() -> set[tuple[str, str]]:
    """Every (state, trigger) a `lifecycle.step` call in SOURCES can ask. A trigger passed
    in a variable stands for any trigger constant the code passes around outside `step`
    (as a default or an argument), which keeps the scan honest without data flow."""
    calls: list[tuple[set[str], ast.expr]] = []
    passed: set[str] = set()
    for path in SOURCES:
        if path.name == "lifecycle.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "step" \
                    and isinstance(func.value, ast.Name) and func.value.id == "lifecycle":
                state = _constant(node.args[0])
                assert state is not None, f"{path.name}:{node.lineno}: the state must be a lifecycle constant"
                calls.append((state, node.args[1]))
            else:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    passed |= _constant(arg) or set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arguments):
                for default in [*node.defaults, *node.kw_defaults]:
                    if default is not None:
                        passed |= _constant(default) or set()
    triggers = {t.trigger for t in TABLE}
    moves: set[tuple[str, str]] = set()
    for states, trigger_node in calls:
        named = _constant(trigger_node)
        for trigger in named if named is not None else passed & triggers:
            moves |= {(s, trigger) for s in states}
    return moves


def test_every_move_the_code_makes_is_in_the_table() -> None:
    moves = _moves_in_code()
    allowed = {(t.state, t.trigger) for t in TABLE}
    assert moves, "the scan found no lifecycle.step call"
    assert moves <= allowed, moves - allowed


def test_every_row_but_the_stores_own_is_made_by_the_code() -> None:
    """The table lists no move nobody makes: only the deletion, done by the store when a
    kind 5 is saved, happens outside these modules."""
    made = _moves_in_code()
    unmade = {(t.state, t.trigger) for t in TABLE} - made
    assert unmade == {(lifecycle.HELD, lifecycle.DELETION)}
