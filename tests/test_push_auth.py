"""Push authorisation rules (pure) and the pkt-line helpers they rest on."""

from __future__ import annotations

import pytest

from relay import push_auth
from relay.pktline import (
    FLUSH,
    CommandParser,
    PktLineError,
    RefUpdate,
    decode_all,
    encode,
    report_status_refusal,
)
from storage import nip34
from storage.event import sign_event

Z = "0" * 40
A, B, C = "a" * 40, "b" * 40, "c" * 40
EV1, EV2 = "1" * 64, "2" * 64
PR = "f" * 64


def up(ref: str, new: str, old: str = Z) -> RefUpdate:
    return RefUpdate(old=old, new=new, ref=ref)


# --- push_auth.decide ----------------------------------------------------------------
def test_push_matching_a_state_is_allowed() -> None:
    current = {"refs/heads/main": A}
    reasons = push_auth.decide(current, [up("refs/heads/main", B, A)], [(EV1, {"refs/heads/main": B})])
    assert reasons == [None]


def test_any_candidate_may_match_not_only_the_newest() -> None:
    cands = [(EV2, {"refs/heads/main": C}), (EV1, {"refs/heads/main": B})]
    assert push_auth.decide({}, [up("refs/heads/main", B)], cands) == [None]


def test_wrong_tip_names_the_state_and_both_oids() -> None:
    reasons = push_auth.decide({}, [up("refs/heads/main", C)], [(EV1, {"refs/heads/main": B})])
    assert reasons == [f"state event {EV1[:8]} lists refs/heads/main at {B}, push has {C}"]


def test_ref_not_in_state() -> None:
    cands = [(EV1, {"refs/heads/main": B})]
    reasons = push_auth.decide({"refs/heads/main": B}, [up("refs/heads/x", C)], cands)
    assert reasons == [f"state event {EV1[:8]} does not list refs/heads/x"]


def test_leftover_branch_blocks_an_otherwise_matching_push() -> None:
    """The whole branch+tag set must match: a stale branch on the server is a difference."""
    cands = [(EV1, {"refs/heads/main": B})]
    reasons = push_auth.decide({"refs/heads/old": A}, [up("refs/heads/main", B)], cands)
    assert reasons == [f"state event {EV1[:8]} does not list refs/heads/old"]


def test_push_deleting_the_leftover_together_is_allowed() -> None:
    cands = [(EV1, {"refs/heads/main": B, "refs/tags/v1": C})]
    updates = [up("refs/heads/main", B), up("refs/tags/v1", C), up("refs/heads/old", Z, A)]
    assert push_auth.decide({"refs/heads/old": A}, updates, cands) == [None, None, None]


def test_deleting_a_listed_ref_is_refused() -> None:
    cands = [(EV1, {"refs/heads/main": B})]
    reasons = push_auth.decide({"refs/heads/main": B}, [up("refs/heads/main", Z, B)], cands)
    assert reasons == [f"state event {EV1[:8]} lists refs/heads/main at {B}, push deletes it"]


def test_no_state_at_all() -> None:
    assert push_auth.decide({}, [up("refs/heads/main", B)], []) == [push_auth.NO_STATE]


def test_noop_push_is_allowed_without_state() -> None:
    assert push_auth.decide({"refs/heads/main": B}, [up("refs/heads/main", B, B)], []) == [None]


def test_nostr_refs() -> None:
    tips = {PR: B}
    assert push_auth.decide({}, [up(f"refs/nostr/{PR}", B)], [], tips) == [None]
    assert push_auth.decide({}, [up(f"refs/nostr/{EV1}", C)], [], tips) == [None]  # unknown PR yet
    assert push_auth.decide({}, [up(f"refs/nostr/{PR}", C)], [], tips) == [
        f"PR event {PR[:8]} names tip {B}"]
    assert push_auth.decide({}, [up(f"refs/nostr/{PR}", Z, B)], [], tips)[0] is not None


@pytest.mark.parametrize("ref", ["refs/nostr/abc", f"refs/nostr/{PR}x", f"refs/nostr/{PR.upper()}",
                                 "refs/other/x", "refs/notes/commits", "HEAD"])
def test_other_namespaces_and_malformed_nostr_refused(ref: str) -> None:
    assert push_auth.decide({}, [up(ref, B)], [(EV1, {})]) == [push_auth.OTHER_NAMESPACE]


def test_nostr_refs_do_not_disturb_branch_matching() -> None:
    cands = [(EV1, {"refs/heads/main": B})]
    updates = [up("refs/heads/main", B), up(f"refs/nostr/{PR}", C)]
    assert push_auth.decide({f"refs/nostr/{EV2}": A}, updates, cands) == [None, None]


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
