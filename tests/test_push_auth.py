"""Push authorisation rules (pure) and the pkt-line helpers they rest on."""

from __future__ import annotations

import pytest

from relay.git import push_auth
from relay.git.pktline import (
    FLUSH,
    CommandParser,
    PktLineError,
    RefUpdate,
    decode_all,
    encode,
    report_status_refusal,
)
from storage.nostr import nip34
from storage.nostr.event import sign_event

Z = "0" * 40
A, B, C = "a" * 40, "b" * 40, "c" * 40
EV1, EV2 = "1" * 64, "2" * 64
PR = "f" * 64


def up(ref: str, new: str, old: str = Z) -> RefUpdate:
    return RefUpdate(old=old, new=new, ref=ref)


# --- push_auth.decide ----------------------------------------------------------------
def reasons(current: dict[str, str], updates: list[RefUpdate], cands: list, tips: dict | None = None,
            pending: dict | None = None) -> list[str | None]:
    return list(push_auth.decide(current, updates, cands, tips, pending).reasons)


def test_push_matching_a_state_is_allowed() -> None:
    current = {"refs/heads/main": A}
    plan = push_auth.decide(current, [up("refs/heads/main", B, A)], [(EV1, {"refs/heads/main": B})])
    assert plan.reasons == (None,) and plan.target == "served"
    assert plan.before == current and plan.expected == {"refs/heads/main": B}


def test_any_candidate_may_match_not_only_the_newest() -> None:
    cands = [(EV2, {"refs/heads/main": C}), (EV1, {"refs/heads/main": B})]
    assert reasons({}, [up("refs/heads/main", B)], cands) == [None]


def test_wrong_tip_names_the_state_and_both_oids() -> None:
    assert reasons({}, [up("refs/heads/main", C)], [(EV1, {"refs/heads/main": B})]) == [
        f"state event {EV1[:8]} lists refs/heads/main at {B}, push has {C}"]


def test_ref_not_in_state() -> None:
    cands = [(EV1, {"refs/heads/main": B})]
    assert reasons({"refs/heads/main": B}, [up("refs/heads/x", C)], cands) == [
        f"state event {EV1[:8]} does not list refs/heads/x"]


def test_leftover_branch_blocks_an_otherwise_matching_push() -> None:
    """The whole branch+tag set must match: a stale branch on the server is a difference."""
    cands = [(EV1, {"refs/heads/main": B})]
    assert reasons({"refs/heads/old": A}, [up("refs/heads/main", B)], cands) == [
        f"state event {EV1[:8]} does not list refs/heads/old"]


def test_push_deleting_the_leftover_together_is_allowed() -> None:
    cands = [(EV1, {"refs/heads/main": B, "refs/tags/v1": C})]
    updates = [up("refs/heads/main", B), up("refs/tags/v1", C), up("refs/heads/old", Z, A)]
    assert reasons({"refs/heads/old": A}, updates, cands) == [None, None, None]


def test_deleting_a_listed_ref_is_refused() -> None:
    cands = [(EV1, {"refs/heads/main": B})]
    assert reasons({"refs/heads/main": B}, [up("refs/heads/main", Z, B)], cands) == [
        f"state event {EV1[:8]} lists refs/heads/main at {B}, push deletes it"]


def test_no_state_at_all() -> None:
    assert reasons({}, [up("refs/heads/main", B)], []) == [push_auth.NO_STATE]


def test_noop_push_changes_nothing_and_runs_nothing() -> None:
    plan = push_auth.decide({"refs/heads/main": B}, [up("refs/heads/main", B, B)], [])
    assert plan.reasons == (None,) and plan.target == "none" and plan.commands == ()
    assert plan.open_push  # it changes no branch: the open-push limits apply to it


def test_nostr_refs() -> None:
    tips = {PR: B}
    plan = push_auth.decide({}, [up(f"refs/nostr/{PR}", B)], [], tips)
    assert plan.reasons == (None,) and plan.target == "pending" and plan.open_push
    assert plan.expected == {f"refs/nostr/{PR}": B}
    assert reasons({}, [up(f"refs/nostr/{EV1}", C)], [], tips) == [None]  # unknown PR yet
    assert reasons({}, [up(f"refs/nostr/{PR}", C)], [], tips) == [f"PR event {PR[:8]} names tip {B}"]
    assert reasons({}, [up(f"refs/nostr/{PR}", Z, B)], [], tips) == [push_auth.NOSTR_DELETE]


@pytest.mark.parametrize("ref", ["refs/nostr/abc", f"refs/nostr/{PR}x", f"refs/nostr/{PR.upper()}",
                                 "refs/other/x", "refs/notes/commits", "HEAD"])
def test_other_namespaces_and_malformed_nostr_refused(ref: str) -> None:
    assert reasons({}, [up(ref, B)], [(EV1, {})]) == [push_auth.OTHER_NAMESPACE]


MAIN, TAG, SIDE = "refs/heads/main", "refs/tags/v1", "refs/heads/side"
NOSTR = f"refs/nostr/{PR}"
STATE_B = [(EV1, {MAIN: B})]
STALE = "is {here} here, not {old}: fetch, then push again"


@pytest.mark.parametrize(("current", "updates", "cands", "want", "target"), [
    # the critical case: move main to an unsigned commit, then "move it back" with a wrong old.
    # git applies the first and refuses the second; so does not the authoriser
    ({MAIN: B}, [up(MAIN, C, B), up(MAIN, B, A)], STATE_B, [f"{MAIN} is named twice in one push"] * 2, "none"),
    # create a tag, then "delete" it with a wrong old: the same trick for new refs
    ({MAIN: B}, [up(TAG, C), up(TAG, Z, A)], STATE_B, [f"{TAG} is named twice in one push"] * 2, "none"),
    # a wrong old alone: git would refuse it, so we refuse first, saying where the ref is
    ({MAIN: A}, [up(MAIN, B, C)], STATE_B, [f"{MAIN} " + STALE.format(here=f"at {A}", old=C)], "none"),
    ({}, [up(MAIN, B, A)], STATE_B, [f"{MAIN} is absent here, not {A}: fetch, then push again"], "none"),
    # old zero while the ref exists: git would refuse the create, so do we
    ({MAIN: B}, [up(MAIN, B)], [(EV1, {MAIN: B})], [f"{MAIN} " + STALE.format(here=f"at {B}", old=Z)], "none"),
    # a no-op neither authorises nor exempts: the other change still needs a state
    ({MAIN: B, SIDE: A}, [up(MAIN, B, B), up(SIDE, C, A)], STATE_B,
     [None, f"state event {EV1[:8]} does not list {SIDE}"], "none"),
    # a no-op beside a PR ref: the push changes no branch, so it is an open (limited) push
    ({MAIN: B}, [up(MAIN, B, B), up(NOSTR, C)], [], [None, None], "pending"),
    # PR refs and branch changes together go to two places: refused
    ({}, [up(MAIN, B), up(NOSTR, C)], STATE_B, [push_auth.MIXED] * 2, "none"),
    # deleting what the state does not list, together with the matching move: allowed
    ({MAIN: A, SIDE: A}, [up(MAIN, B, A), up(SIDE, Z, A)], STATE_B, [None, None], "served"),
    # deleting a ref that is not there (zero to zero) is a no-op
    ({MAIN: B}, [up(SIDE, Z, Z)], STATE_B, [None], "none"),
    # more commands than refs, each valid, together not a state
    ({}, [up(MAIN, B), up(SIDE, B), up(TAG, B)], STATE_B,
     [f"state event {EV1[:8]} does not list {SIDE}"] * 2 + [f"state event {EV1[:8]} does not list {TAG}"], "none"),
    # a PR ref that already waits at another tip, and one served at another tip
    ({}, [up(NOSTR, C)], [], [f"{NOSTR} waits here at {B} already"], "none"),
    ({NOSTR: B}, [up(NOSTR, C, B)], [], [f"{NOSTR} is here at {B} already"], "none"),
    # pushing the tip a PR ref already has (served or pending): nothing to do
    ({NOSTR: B}, [up(NOSTR, B)], [], [None], "none"),
])
def test_hostile_command_lists(current: dict[str, str], updates: list[RefUpdate], cands: list,
                               want: list[str | None], target: str) -> None:
    pending = {NOSTR: B} if "waits" in str(want) else {}
    plan = push_auth.decide(current, updates, cands, {}, pending)
    assert list(plan.reasons) == want
    assert plan.target == target
    if plan.refused:
        assert plan.commands == ()
    if plan.target == "served":  # what git will be given is exactly what was judged
        assert plan.expected == push_auth.apply_updates(current, list(plan.commands)) | {
            k: v for k, v in current.items() if not push_auth.is_branch_or_tag(k)}
        assert any(dict(refs) == {k: v for k, v in plan.expected.items() if push_auth.is_branch_or_tag(k)}
                   for _, refs in cands)


def test_pending_commands_are_creates_there() -> None:
    """The client saw the served repo's refs; in the pending area the ref is always new."""
    plan = push_auth.decide({MAIN: B}, [up(MAIN, B, B), up(NOSTR, C)], [], {}, {})
    assert plan.commands == (RefUpdate(Z, C, NOSTR),)


def test_state_refs_parses_a_signed_state() -> None:
    secret = "3" * 64
    ev = sign_event(secret, 30618, "", [
        ["d", "repo"], ["refs/heads/main", B], ["refs/tags/v1", C], ["refs/tags/v1^{}", A],
        ["refs/heads/bad", "nothex"], ["HEAD", "ref: refs/heads/main"], ["refs/other/x", A]], 1700000000)
    refs, head = nip34.state_refs(ev)
    assert refs == {"refs/heads/main": B, "refs/tags/v1": C}
    assert head == "refs/heads/main"


# --- pkt-line ------------------------------------------------------------------------
def _push_body(*updates: RefUpdate, caps: str = "report-status side-band-64k") -> bytes:
    lines = []
    for i, u in enumerate(updates):
        text = f"{u.old} {u.new} {u.ref}"
        lines.append(encode(text + ("\0" + caps if i == 0 else "") + "\n"))
    return b"".join(lines) + FLUSH


def test_encode_decode_roundtrip() -> None:
    data = encode("hello\n") + FLUSH + encode(b"\x01bin")
    assert data[:4] == b"000a"
    assert decode_all(data) == [b"hello\n", None, b"\x01bin"]
    with pytest.raises(PktLineError):
        decode_all(b"zzzz")


@pytest.mark.parametrize("split", [1, 3, 7, 50])
def test_command_parser_handles_any_chunking(split: int) -> None:
    body = _push_body(up("refs/heads/main", B, A), up("refs/tags/v1", C)) + b"PACK\x00\x00rest"
    parser = CommandParser()
    done = False
    for i in range(0, len(body), split):
        done = parser.feed(body[i:i + split])
        if done:
            consumed_at = i + split
            break
    assert done
    assert parser.result.updates == [up("refs/heads/main", B, A), up("refs/tags/v1", C)]
    assert parser.result.has("side-band-64k") and parser.result.has("report-status")
    assert parser.consumed == body[:consumed_at]  # replayed to git untouched


def test_command_parser_probe_and_errors() -> None:
    parser = CommandParser()
    assert parser.feed(FLUSH) and parser.result.updates == []
    with pytest.raises(PktLineError):
        CommandParser().feed(encode("garbage line\n"))
    with pytest.raises(PktLineError):
        CommandParser(max_bytes=100).feed(b"ffff" + b"x" * 200)


def test_refusal_plain_and_sideband() -> None:
    parser = CommandParser()
    parser.feed(_push_body(up("refs/heads/a", B), up("refs/heads/b", C), caps="report-status"))
    plain = report_status_refusal(parser.result, ["bad a", None], fallback="with a")
    assert decode_all(plain) == [b"unpack ok\n", b"ng refs/heads/a bad a\n", b"ng refs/heads/b with a\n", None]
    parser = CommandParser()
    parser.feed(_push_body(up("refs/heads/a", B), caps="report-status-v2 side-band-64k"))
    framed = report_status_refusal(parser.result, ["no\nnewlines"])
    outer = decode_all(framed)
    assert outer[-1] is None and outer[0] is not None and outer[0][0] == 1
    assert decode_all(outer[0][1:]) == [b"unpack ok\n", b"ng refs/heads/a no newlines\n", None]
