"""Hypothesis strategies for what a hostile client sends a Nostr relay: every message type,
valid events and mutations of them, filters with every kind of bad value, huge and deep
values, integers past every bound, lone surrogates, random bytes and binary frames.

A strategy gives a `Frame`: the payload, whether it goes as a text or a binary websocket
frame, and what answer the relay owes it (see `Frame.expect`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from storage.nostr.event import sign_event

SECRET = "5e" * 32
#: what a frame is owed: "ok" an OK for `event_id` (or a NOTICE), "answer" at least one frame
#: before the next probe, "none" nothing (a CLOSE), "close" a close frame from the server
Expect = Literal["ok", "answer", "none", "close"]
MAX_MESSAGE_BYTES = 256 * 1024  # the daemon's default GRASP_MAX_MESSAGE_BYTES
WS_MAX_SIZE = 4 * MAX_MESSAGE_BYTES  # uvicorn's ws_max_size: past it the socket is closed (1009)


@dataclass(frozen=True)
class Frame:
    payload: str | bytes
    text: bool = True  # a text frame (bytes are then sent unchecked, maybe not UTF-8)
    expect: Expect = "answer"
    event_id: str = ""

    def describe(self) -> str:
        head = self.payload[:120]
        return f"{'text' if self.text else 'binary'} {len(self.payload)} bytes: {head!r}"


def dump(value: Any) -> str:
    """JSON as a careless client writes it: non-ASCII raw, lone surrogates as escapes."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def classify(payload: str | bytes, text: bool = True) -> Frame:
    """The answer the relay owes `payload`, judged the way its session parses it."""
    size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
    if size > WS_MAX_SIZE:
        return Frame(payload, text, "close")
    if text and isinstance(payload, bytes):
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return Frame(payload, text, "close")  # uvicorn closes with 1007
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return Frame(payload, text, "answer")
    if len(payload) <= MAX_MESSAGE_BYTES and isinstance(value, list) and value:
        if value[0] == "CLOSE" and len(value) == 2 and isinstance(value[1], str):
            return Frame(payload, text, "none")
        if value[0] == "EVENT" and len(value) == 2 and isinstance(value[1], dict):
            event_id = value[1].get("id")
            if isinstance(event_id, str) and len(event_id) == 64 and all(c in "0123456789abcdef" for c in event_id):
                return Frame(payload, text, "ok", event_id)
    return Frame(payload, text, "answer")


# --- values ----------------------------------------------------------------------------------
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "\U0001f600" * 3, "", " " * 5, "'\"\\"]),
)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
big_ints = st.one_of(
    st.integers(-2**70, 2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -2**63 - 1, 10**4000]),
)
scalars = st.one_of(st.none(), st.booleans(), big_ints, st.floats(allow_nan=True, allow_infinity=True),
                    nasty_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)


def deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# --- events ----------------------------------------------------------------------------------
@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([1, 1621, 1111, 10317, 30617, 30618, 5, 7, 20001]))
    tags = draw(st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=3), max_size=4))
    content = draw(st.text(max_size=60))
    created_at = draw(st.integers(1_600_000_000, 1_800_000_000))
    return sign_event(SECRET, kind, content, tags, created_at).to_dict()


MUTATIONS: dict[str, Any] = {
    "id": st.one_of(hex64, nasty_text, big_ints, st.just("A" * 64)),
    "pubkey": st.one_of(hex64, nasty_text, st.none()),
    "sig": st.one_of(st.text("0123456789abcdef", min_size=128, max_size=128), nasty_text),
    "created_at": st.one_of(big_ints, st.floats(), nasty_text),
    "kind": st.one_of(big_ints, st.floats(), nasty_text),
    "tags": st.one_of(json_values, st.lists(st.lists(nasty_text, max_size=3), max_size=5),
                      st.just([["t"] * 3] * 3000)),
    "content": st.one_of(json_values, st.just("\ud800"), st.just("x" * 200_000)),
}


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(valid_events())
    for key in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()) and key != "id":
            event.pop(key)
        else:
            event[key] = draw(MUTATIONS[key])
    if draw(st.integers(0, 9)) == 0:
        event[draw(nasty_text)] = draw(json_values)
    return event


# --- filters ---------------------------------------------------------------------------------
FILTER_VALUES: dict[str, Any] = {
    "ids": st.one_of(st.lists(hex64, max_size=3), json_values),
    "authors": st.one_of(st.lists(hex64, max_size=3), st.lists(nasty_text, max_size=2), json_values),
    "kinds": st.one_of(st.lists(st.integers(0, 70000), max_size=3), st.lists(big_ints, max_size=2), json_values),
    "since": st.one_of(big_ints, json_values),
    "until": st.one_of(big_ints, json_values),
    "limit": st.one_of(big_ints, json_values),
    "#t": st.one_of(st.lists(nasty_text, max_size=3), json_values),
    "#e": st.one_of(st.lists(hex64, max_size=2), json_values),
    "#a": st.lists(nasty_text, max_size=2),
    "#ab": json_values,
    "search": nasty_text,
}


SQLITE_MAX = 2**63 - 1
VALID_FILTER_VALUES: dict[str, Any] = {
    "ids": st.lists(hex64, max_size=3),
    "authors": st.lists(hex64, max_size=70),  # past 64 the SQL takes them as one json_each list
    "kinds": st.lists(st.integers(0, 65535), max_size=40),
    "since": st.integers(0, SQLITE_MAX),
    "until": st.integers(0, SQLITE_MAX),
    "limit": st.integers(0, 10**6),
    "#t": st.lists(st.text(max_size=20), max_size=40),
    "#e": st.lists(hex64, max_size=2),
    "#p": st.lists(hex64, max_size=2),
    "#a": st.lists(st.text(max_size=80), max_size=3),
}


@st.composite
def valid_filters(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(VALID_FILTER_VALUES)), max_size=5, unique=True))
    return {key: draw(VALID_FILTER_VALUES[key]) for key in keys}


@st.composite
def filters(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(valid_filters())
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    keys = draw(st.lists(st.sampled_from(sorted(FILTER_VALUES)), max_size=4, unique=True))
    out: dict[str, Any] = {key: draw(FILTER_VALUES[key]) for key in keys}
    if draw(st.integers(0, 9)) == 0:
        out[draw(nasty_text)] = draw(json_values)
    return out


sub_ids = st.one_of(st.text(min_size=1, max_size=12), nasty_text, st.just("s" * 300), big_ints, st.none())


# --- messages --------------------------------------------------------------------------------
def _messages() -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        st.builds(lambda e: ["EVENT", e], valid_events()),
        st.builds(lambda e: ["EVENT", e], mutated_events()),
        st.builds(lambda e, rest: ["EVENT", e, *rest], valid_events(), st.lists(json_values, min_size=1, max_size=2)),
        st.builds(lambda s, fs: ["REQ", s, *fs], sub_ids, st.lists(filters(), max_size=4)),
        st.builds(lambda s, fs: ["COUNT", s, *fs], sub_ids, st.lists(filters(), max_size=3)),
        st.builds(lambda s: ["CLOSE", s], sub_ids),
        st.builds(lambda verb, rest: [verb, *rest], st.one_of(nasty_text, st.sampled_from(["AUTH", "OK", "EOSE"])),
                  st.lists(json_values, max_size=3)),
        st.lists(json_values, max_size=3),
    )


def _text_payloads() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(dump, _messages()),
        st.builds(dump, json_values),
        st.text(max_size=200),
        st.sampled_from([
            "[" * 100_000 + "]" * 100_000,                               # deeper than any decoder
            dump(["REQ", "deep", {"#t": deep(900, "x")}]),               # deep, inside a filter
            '["EVENT",' + "[" * 5000 + "1" + "]" * 5000 + "]",
            '["REQ","n",{"since":' + "9" * 5000 + "}]",                 # 5,000-digit integer
            '["EVENT",{"id":' + "1" * 4300 + "}]",
            dump(["REQ", "big", {"#t": ["x" * (MAX_MESSAGE_BYTES + 10)]}]),  # past the message limit
            "x" * (WS_MAX_SIZE + 10),                                    # past the socket's limit
            '["EVENT",' + "[" * 1000 + "]" * 1000 + "]",
            '["REQ","s",{"kinds":[1e400]}]',
            '["REQ","s",{"limit":NaN}]',
            '["REQ","s",{"since":-0}]',
            "\ufeff[\"REQ\",\"bom\",{}]",
        ]),
    )


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """Any frame, with the answer it is owed."""
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return classify(draw(st.binary(max_size=300)), text=draw(st.booleans()))  # random bytes
    payload = draw(_text_payloads())
    if choice == 1:  # the same, as a binary frame (the relay parses bytes too)
        return classify(payload.encode("utf-8", "surrogatepass"), text=False)
    return classify(payload)
