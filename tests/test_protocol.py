"""Unit tests of the sans-IO NIP-01 session: values in, requests and frames out."""

from __future__ import annotations

import json

from relay.nostr.protocol import Count, Limits, Publish, Reply, Session, Subscribe, Unsubscribe, event_frame
from storage.nostr.event import sign_event

SECRET = "11" * 32


def frame(reply: object) -> list:
    assert isinstance(reply, Reply), reply
    return json.loads(reply.text)


def session(**limits: int) -> Session:
    return Session(limits=Limits(**limits), clock=lambda: 1_700_000_000)


def test_valid_event_is_published() -> None:
    event = sign_event(SECRET, 1, "hello", [["t", "x"]], 1_700_000_000)
    request = session().receive(json.dumps(["EVENT", event.to_dict()]))
    assert isinstance(request, Publish) and request.event == event


def test_bad_id_and_bad_signature_answer_ok_false() -> None:
    event = sign_event(SECRET, 1, "hello", [], 1_700_000_000).to_dict()
    tampered = dict(event, content="bye")
    msg = frame(session().receive(json.dumps(["EVENT", tampered])))
    assert msg[:3] == ["OK", event["id"], False] and msg[3].startswith("invalid: event id")
    other = sign_event(SECRET, 1, "other", [], 1_700_000_000).to_dict()
    forged = dict(event, sig=other["sig"])
    msg = frame(session().receive(json.dumps(["EVENT", forged])))
    assert msg[2] is False and msg[3] == "invalid: bad signature"


def test_malformed_messages_get_notices() -> None:
    s = session()
    assert frame(s.receive("not json"))[0] == "NOTICE"
    assert frame(s.receive("{}"))[1].startswith("invalid:")
    assert "unsupported message type" in frame(s.receive('["AUTH"]'))[1]
    assert frame(s.receive('["EVENT", 5]'))[0] == "NOTICE"
    msg = frame(s.receive(json.dumps(["EVENT", {"id": "ab" * 32}])))
    assert msg[:3] == ["OK", "ab" * 32, False] and "missing field" in msg[3]


def test_limits_are_enforced_with_reasons() -> None:
    s = session(max_event_tags=2, max_content_bytes=5, max_created_at_future_s=60, max_message_bytes=2000)
    too_many_tags = sign_event(SECRET, 1, "", [["t", "a"]] * 3, 1_700_000_000)
    assert "too many tags" in frame(s.receive(json.dumps(["EVENT", too_many_tags.to_dict()])))[3]
    long_content = sign_event(SECRET, 1, "123456", [], 1_700_000_000)
    assert "content is longer" in frame(s.receive(json.dumps(["EVENT", long_content.to_dict()])))[3]
    future = sign_event(SECRET, 1, "", [], 1_700_000_000 + 61)
    assert "future" in frame(s.receive(json.dumps(["EVENT", future.to_dict()])))[3]
    assert "larger than 2000" in frame(s.receive("[" + " " * 2000 + "]"))[1]


def test_req_close_and_subscription_limit() -> None:
    s = session(max_subscriptions=2, max_filters=2, max_limit=10)
    first = s.receive(json.dumps(["REQ", "a", {"kinds": [1], "limit": 50}]))
    assert isinstance(first, Subscribe) and first.filters[0].limit == 10
    assert isinstance(s.receive(json.dumps(["REQ", "b", {}])), Subscribe)
    assert isinstance(s.receive(json.dumps(["REQ", "a", {}])), Subscribe)  # replacing is fine
    msg = frame(s.receive(json.dumps(["REQ", "c", {}])))
    assert msg[:2] == ["CLOSED", "c"] and msg[2].startswith("rate-limited:")
    assert isinstance(s.receive('["CLOSE","a"]'), Unsubscribe)
    assert isinstance(s.receive(json.dumps(["REQ", "c", {}])), Subscribe)
    msg = frame(s.receive(json.dumps(["REQ", "d", {}, {}, {}])))
    assert msg[0] == "CLOSED" and "too many filters" in msg[2]


def test_filters_refuse_unknown_and_multi_letter_keys() -> None:
    s = session()
    msg = frame(s.receive(json.dumps(["REQ", "x", {"kinds": [1], "foo": 1}])))
    assert msg == ["CLOSED", "x", "invalid: unknown filter key 'foo'"]
    msg = frame(s.receive(json.dumps(["REQ", "x", {"#ab": ["v"]}])))
    assert msg[0] == "CLOSED" and "single-letter" in msg[2]
    msg = frame(s.receive(json.dumps(["REQ", "x", {"authors": ["nothex"]}])))
    assert msg[0] == "CLOSED" and "authors" in msg[2]
    assert frame(s.receive(json.dumps(["REQ", "", {}])))[0] == "NOTICE"
    assert frame(s.receive(json.dumps(["REQ", "y"])))[0] == "CLOSED"


def test_count_request() -> None:
    request = session().receive(json.dumps(["COUNT", "n", {"kinds": [1621]}]))
    assert isinstance(request, Count) and request.sub_id == "n"


def test_event_frame_embeds_raw_json() -> None:
    assert event_frame("s", '{"id":"x"}') == '["EVENT","s",{"id":"x"}]'


# --- hostile frames: each used to raise out of the session or fail later in SQLite --------

def test_deep_nesting_gets_a_notice() -> None:
    msg = frame(session().receive("[" * 100_000 + "]" * 100_000))
    assert msg == ["NOTICE", "invalid: message nests too deeply"]


def test_five_thousand_digit_integer_gets_a_notice() -> None:
    msg = frame(session().receive('["REQ","x",{"since":' + "9" * 5000 + "}]"))
    assert msg[0] == "NOTICE" and "too many digits" in msg[1]


def test_integers_beyond_sqlite_range_are_invalid() -> None:
    s = session()
    for key in ("since", "until", "limit"):
        msg = frame(s.receive(json.dumps(["REQ", "x", {key: 2**63}])))
        assert msg[:2] == ["CLOSED", "x"] and msg[2].startswith(f"invalid: {key} must be an integer"), msg
        msg = frame(s.receive(json.dumps(["COUNT", "n", {key: 2**70}])))
        assert msg[:2] == ["CLOSED", "n"] and msg[2].startswith("invalid:")
    assert isinstance(s.receive(json.dumps(["REQ", "x", {"since": 2**63 - 1}])), Subscribe)
    msg = frame(s.receive(json.dumps(["REQ", "x", {"kinds": [2**64]}])))
    assert msg[0] == "CLOSED" and msg[2].startswith("invalid: kinds")
    event = sign_event(SECRET, 1, "", [], 1_700_000_000).to_dict()
    for field_name in ("created_at", "kind"):
        msg = frame(s.receive(json.dumps(["EVENT", dict(event, **{field_name: 2**64})])))
        assert msg[:3] == ["OK", event["id"], False] and msg[3].startswith(f"invalid: {field_name}")


def test_lone_surrogates_are_invalid_and_answers_stay_encodable() -> None:
    s = session()
    event = sign_event(SECRET, 1, "", [], 1_700_000_000).to_dict()
    for bad in (dict(event, content="\ud800"), dict(event, tags=[["t", "\udfff"]])):
        msg = frame(s.receive(json.dumps(["EVENT", bad])))
        assert msg[:3] == ["OK", event["id"], False] and "lone surrogate" in msg[3]
    msg = frame(s.receive(json.dumps(["REQ", "x", {"#t": ["\ud800"]}])))
    assert msg[:2] == ["CLOSED", "x"] and msg[2].startswith("invalid:")
    msg = frame(s.receive(json.dumps(["REQ", "\ud800", {}])))
    assert msg[0] == "NOTICE" and msg[1].startswith("invalid:")
    # answers that quote the client (ids, types, keys) must be valid UTF-8 and short
    for text in (json.dumps(["EVENT", dict(event, id="\ud800")]), json.dumps(["\ud800"]),
                 json.dumps(["REQ", "x", {"\ud800" * 1000: 1}])):
        reply = s.receive(text)
        assert isinstance(reply, Reply) and len(reply.text) < 400
        reply.text.encode("utf-8")
