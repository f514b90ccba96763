"""Property tests: whatever a client sends, the sans-IO session answers with a request or a
well-formed frame and never raises (the daemon keeps serving)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.nostr.protocol import Limits, Reply, Session
from storage.nostr.filters import Filter, FilterError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
verbs = st.sampled_from(["EVENT", "REQ", "COUNT", "CLOSE", "AUTH", ""])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.builds(lambda v, rest: json.dumps([v, *rest]), verbs,
                                                     st.lists(json_values, max_size=4))))
def test_any_message_gets_an_answer_without_raising(text: str) -> None:
    request = Session(limits=Limits(), clock=lambda: 1_700_000_000).receive(text)
    if isinstance(request, Reply):
        frame = json.loads(request.text)
        assert frame[0] in ("NOTICE", "OK", "CLOSED")
        if frame[0] == "OK":
            assert frame[2] is False and frame[3].split(":")[0] in ("invalid", "blocked")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["ids", "authors", "kinds", "since", "until", "limit", "#e", "#p",
                                        "#ab", "search", "x"]), json_values, max_size=4))
def test_filters_parse_or_refuse_cleanly(raw: dict) -> None:
    try:
        parsed = Filter.from_dict(raw, max_limit=100)
    except FilterError:
        return
    assert set(raw) <= {"ids", "authors", "kinds", "since", "until", "limit", "#e", "#p"}
    assert parsed.limit is None or 0 <= parsed.limit <= 100


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(max_size=12), min_size=1, max_size=4), max_size=5), st.text(max_size=40),
       st.integers(0, 2**40), st.integers(0, 65535))
def test_event_json_and_id_match_the_nip01_serialisation(tags: list, content: str, created_at: int,
                                                         kind: int) -> None:
    """The id and the wire JSON are built by hand from one serialisation of tags and content;
    they must equal what the NIP-01 recipe gives through json.dumps, for any text."""
    import hashlib

    from storage.nostr.event import Event, sign_event

    event = sign_event("03" * 32, kind, content, tags, created_at)
    payload = [0, event.pubkey, created_at, kind, tags, content]
    recipe = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    assert event.id == hashlib.sha256(recipe.encode()).hexdigest()
    received = Event.from_json(json.dumps(event.to_dict()))
    received.verify()
    assert received.to_json() == json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    assert json.loads(received.to_json()) == event.to_dict()
