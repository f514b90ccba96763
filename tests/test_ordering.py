"""Unit tests of what an event provides to, and needs from, earlier events of its connection."""

from __future__ import annotations

from relay.nostr.ordering import depends_on, provides
from storage.nostr.event import sign_event

A, B = "a1" * 32, "b2" * 32


def test_state_waits_for_announcements_of_its_identifier() -> None:
    ann = sign_event(A, 30617, "", [["d", "repo"]], 1)
    st = sign_event(A, 30618, "", [["d", "repo"], ["refs/heads/main", "0" * 40]], 2)
    assert ("d", "repo") in provides(ann) and ("d", "repo") in depends_on(st)
    assert ("d", "repo") not in provides(st)  # states do not gate other states


def test_tags_name_dependencies_and_plain_events_provide_their_id() -> None:
    issue = sign_event(B, 1621, "", [["a", f"30617:{'ab' * 32}:repo"]], 1)
    comment = sign_event(A, 1111, "", [["E", issue.id], ["e", "not-hex"], ["q", issue.id]], 2)
    assert depends_on(issue) == {f"30617:{'ab' * 32}:repo"}
    assert provides(issue) == {issue.id}
    assert depends_on(comment) == {issue.id}


def test_independent_events_do_not_wait_for_each_other() -> None:
    one = sign_event(A, 1621, "", [["a", f"30617:{'ab' * 32}:repo"]], 1)
    two = sign_event(B, 1621, "", [["a", f"30617:{'ab' * 32}:repo"]], 1)
    assert not depends_on(two) & provides(one)
