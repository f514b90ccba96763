"""The Negentropy V1 module (storage/nostr/negentropy*.py) on plain values: the wire format
against the spec's own definitions, hand-built messages, hostile input, and round trips of
the initiator against the responder over random sets, which must end with exactly the
symmetric difference whatever the sets and the frame size limit.

The negentropy project publishes no fixed test vectors (its conformance tests drive
implementations against each other through a harness), so the wire expectations here are
computed from the spec's definitions independently of the module, and the module is checked
against a real implementation (rust-nostr through nostr-sdk) in tests/test_negentropy_daemon.py."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.nostr.negentropy import BUCKETS, MIN_FRAME_LIMIT, Initiator, Items, respond
from storage.nostr.negentropy_wire import (
    END,
    Bound,
    Mode,
    NegentropyError,
    Range,
    Writer,
    encode_varint,
    fingerprint,
    parse_ranges,
)

V1 = b"\x61"


def spec_varint(value: int) -> bytes:
    """Base 128, most significant digit first, high bit on every byte but the last."""
    digits = []
    while True:
        digits.insert(0, value % 128)
        value //= 128
        if value == 0:
            break
    return bytes([d | 0x80 for d in digits[:-1]] + [digits[-1]])


def spec_fingerprint(ids: list[bytes]) -> bytes:
    total = sum(int.from_bytes(i, "little") for i in ids) % 2**256
    return hashlib.sha256(total.to_bytes(32, "little") + spec_varint(len(ids))).digest()[:16]


@pytest.mark.parametrize("value, encoded", [(0, "00"), (1, "01"), (127, "7f"), (128, "8100"), (255, "817f"),
                                            (16383, "ff7f"), (16384, "818000"), (2**64 - 1, "81ffffffffffffffff7f")])
def test_varint_encoding(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded == spec_varint(value).hex()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40))
def test_fingerprint_is_the_spec_sum_hash(ids: list[bytes]) -> None:
    assert fingerprint(b"".join(ids)) == spec_fingerprint(ids)


def test_fingerprint_wraps_mod_2_256() -> None:
    top = b"\xff" * 32  # 2^256-1: two of them sum to 2^256-2 mod 2^256
    assert fingerprint(top + top) == spec_fingerprint([top, top])
    assert fingerprint(top + b"\x01" + b"\0" * 31) == hashlib.sha256(b"\0" * 32 + b"\x02").digest()[:16]


def test_bounds_are_delta_encoded_and_infinity_is_zero() -> None:
    out = Writer()
    out.range(Bound(100), Mode.SKIP)
    out.range(Bound(100, b"\xab"), Mode.FINGERPRINT, b"\x11" * 16)
    out.range(Bound(300), Mode.ID_LIST, b"\x22" * 32)
    out.range(END, Mode.SKIP)
    expected = (V1 + spec_varint(101) + b"\x00" + b"\x00"       # 1 + (100 - 0), no prefix, Skip
                + b"\x01" + b"\x01\xab" + b"\x01" + b"\x11" * 16  # 1 + 0, one byte of prefix
                + spec_varint(201) + b"\x00" + b"\x02\x01" + b"\x22" * 32
                + b"\x00\x00\x00")                                # infinity, Skip
    assert out.message() == expected
    assert parse_ranges(expected[1:]) == [
        Range(Bound(100), Mode.SKIP), Range(Bound(100, b"\xab"), Mode.FINGERPRINT, b"\x11" * 16),
        Range(Bound(300), Mode.ID_LIST, b"\x22" * 32), Range(END, Mode.SKIP)]


def test_hand_built_exchange_on_one_item() -> None:
    """The initiator's first message over an empty set is the whole universe as an empty
    IdList; the responder answers with its one id in an IdList of the same range."""
    item = bytes.fromhex("ee" * 32)
    assert Initiator(Items.from_pairs([]), MIN_FRAME_LIMIT).initiate() == bytes.fromhex("6100000200")
    reply = respond(Items.from_pairs([(12345, item)]), bytes.fromhex("6100000200"), MIN_FRAME_LIMIT)
    assert reply == bytes.fromhex("6100000201") + item
    client = Initiator(Items.from_pairs([]), MIN_FRAME_LIMIT)
    client.initiate()
    done = client.reconcile(reply)
    assert done.message is None and done.need == [item] and done.have == []


def test_equal_sets_finish_in_one_round_and_differing_ones_split_into_buckets() -> None:
    pairs = [(1000 + i // 3, bytes([i]) * 32) for i in range(200)]  # three ids per timestamp
    items = Items.from_pairs(pairs)
    client = Initiator(items, MIN_FRAME_LIMIT)
    first = client.initiate()
    ranges = parse_ranges(first[1:])
    assert [r.mode for r in ranges] == [Mode.FINGERPRINT] * BUCKETS and ranges[-1].upper == END
    assert respond(items, first, MIN_FRAME_LIMIT) == V1  # nothing to say: all equal
    # a bound between two items of one timestamp carries the shortest separating prefix
    assert any(r.upper.prefix for r in ranges[:-1])
    other = Items.from_pairs(pairs[:-1])
    reply = parse_ranges(respond(other, first, MIN_FRAME_LIMIT)[1:])
    assert reply[0].mode is Mode.SKIP and reply[-1].mode is Mode.ID_LIST  # only the last bucket differs


def test_unknown_version_gets_the_version_byte_alone() -> None:
    items = Items.from_pairs([(1, b"\x01" * 32)])
    assert respond(items, b"\x62\x00\x00\x02\x00", MIN_FRAME_LIMIT) == V1
    with pytest.raises(NegentropyError):
        Initiator(items, MIN_FRAME_LIMIT).reconcile(b"\x62")


@pytest.mark.parametrize("body, why", [
    ("", "empty"),
    ("61 80", "middle of a varint"),                        # truncated varint
    ("61" + "ff" * 10 + "01", "longer than 10"),           # an 11-byte varint
    ("61 00 00 02 " + spec_varint(10**9).hex(), "longer than the message"),  # huge count
    ("61 00 00 02 02" + "11" * 40, "longer than the message"),  # count 2, 40 bytes of ids
    ("61 05 21" + "00" * 33 + "00", "prefix longer"),      # 33-byte prefix
    ("61 00 00 03", "unknown range mode"),                 # mode 3 (deprecated) and up
    ("61 00 00 01" + "00" * 8, "middle of a range"),       # short fingerprint
    ("61 " + spec_varint(2**64 + 5).hex() + " 00 00", r"past 2\^64-1"),
    ("61 05 01 80 00 01 01 00 00", "out of order"),        # (4, 80..) then (4, 01..)
])
def test_hostile_messages_are_refused_with_a_reason(body: str, why: str) -> None:
    with pytest.raises(NegentropyError, match=why):
        respond(Items.from_pairs([(4, b"\x01" * 32)]), bytes.fromhex(body.replace(" ", "")), MIN_FRAME_LIMIT)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_within_the_limit_or_a_negentropy_error(noise: bytes) -> None:
    items = Items.from_pairs([(i % 7, bytes([i]) * 32) for i in range(100)])
    try:
        reply = respond(items, V1 + noise, MIN_FRAME_LIMIT)
    except NegentropyError:
        return
    assert reply[:1] == V1 and len(reply) <= MIN_FRAME_LIMIT
    parse_ranges(reply[1:])  # what we send parses


def test_frame_limits_below_the_minimum_are_refused() -> None:
    with pytest.raises(ValueError):
        Initiator(Items.from_pairs([]), MIN_FRAME_LIMIT - 1)


ids = st.binary(min_size=32, max_size=32)


@st.composite
def set_pairs(draw: st.DrawFn) -> tuple[dict[bytes, int], dict[bytes, int], int]:
    """Two sets (id -> timestamp) sharing a part; few timestamps so many ids share one."""
    span = draw(st.sampled_from([1, 5, 1000, 2**40]))
    stamp = st.integers(0, span)
    common = draw(st.dictionaries(ids, stamp, max_size=300))
    only_a = draw(st.dictionaries(ids, stamp, max_size=draw(st.sampled_from([0, 5, 300]))))
    only_b = draw(st.dictionaries(ids, stamp, max_size=draw(st.sampled_from([0, 5, 300]))))
    limit = draw(st.sampled_from([MIN_FRAME_LIMIT, 3000, 64 * 1024]))
    return {**common, **only_a}, {**common, **only_b}, limit


def reconcile(a: dict[bytes, int], b: dict[bytes, int], limit: int) -> tuple[Initiator, int]:
    client = Initiator(Items.from_pairs((t, i) for i, t in a.items()), limit)
    server = Items.from_pairs((t, i) for i, t in b.items())
    message: bytes | None = client.initiate()
    rounds = have = need = 0
    while message is not None:
        assert len(message) <= limit
        rounds += 1
        assert rounds < 2000, "no progress"
        reply = respond(server, message, limit)
        assert len(reply) <= limit
        step = client.reconcile(reply)
        have, need, message = have + len(step.have), need + len(step.need), step.message
    assert (have, need) == (len(client.have), len(client.need))  # nothing reported twice
    return client, rounds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(set_pairs())
def test_round_trip_finds_exactly_the_symmetric_difference(case: tuple[dict[bytes, int], dict[bytes, int], int]
                                                           ) -> None:
    a, b, limit = case
    client, _ = reconcile(a, b, limit)
    assert client.have == a.keys() - b.keys()
    assert client.need == b.keys() - a.keys()


@pytest.mark.parametrize("a_size, b_size", [(0, 0), (0, 500), (500, 0), (400, 400)])
def test_edge_sets_and_small_frames_take_many_rounds(a_size: int, b_size: int) -> None:
    a = {i.to_bytes(32, "big"): i % 3 for i in range(a_size)}
    b = {(i + 10**6).to_bytes(32, "big"): i % 3 for i in range(b_size)}
    client, rounds = reconcile(a, b, MIN_FRAME_LIMIT)
    assert client.have == a.keys() and client.need == b.keys()
    if b_size >= 500:  # the relay's 500 ids of 32 bytes cannot go in one 2 kB message
        assert rounds > 3


def test_equal_large_sets_need_one_round() -> None:
    a = {i.to_bytes(32, "little"): i // 10 for i in range(5000)}
    client, rounds = reconcile(a, dict(a), 64 * 1024)
    assert rounds == 1 and not client.have and not client.need
