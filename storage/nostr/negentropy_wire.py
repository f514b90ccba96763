"""The wire format of Negentropy protocol V1 (the binary payload of NIP-77's NEG-* frames):
varints, bounds, ranges and the range fingerprint. No reconciliation logic here
(storage/nostr/negentropy.py); this only turns bytes into checked values and back.

Every message comes from a stranger, so parsing is strict and bounded: a varint longer than
ten bytes, a count of ids the message cannot hold, an id prefix over 32 bytes, an unknown
mode, a timestamp past 2^64-1 or bounds that go backwards all raise NegentropyError before
any work is done for the message."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 0x61
ID_SIZE = 32
FINGERPRINT_SIZE = 16
#: the reserved "infinity" timestamp: every item sorts below it
INFINITY = 2**64 - 1
MAX_VARINT_BYTES = 10  # 70 bits: anything a 64-bit value needs, and no more
_MASK = 2**256 - 1


class NegentropyError(ValueError):
    """A message that does not follow the protocol; the text says what is wrong."""


class Mode(IntEnum):
    SKIP = 0
    FINGERPRINT = 1
    ID_LIST = 2


@dataclass(frozen=True, slots=True)
class Bound:
    """A point in (timestamp, id) order: items below it are in the range it ends. `prefix` is
    the shortest id prefix that separates two neighbours; missing bytes count as zero."""

    timestamp: int
    prefix: bytes = b""

    @property
    def key(self) -> tuple[int, bytes]:
        return self.timestamp, self.prefix.ljust(ID_SIZE, b"\0")


LOWEST = Bound(0)
END = Bound(INFINITY)


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a message: its exclusive upper bound, mode, and payload (the 16-byte
    fingerprint, or the concatenated 32-byte ids of an IdList, or nothing for Skip)."""

    upper: Bound
    mode: Mode
    payload: bytes = b""

    @property
    def ids(self) -> list[bytes]:
        data = self.payload
        return [data[i:i + ID_SIZE] for i in range(0, len(data), ID_SIZE)]


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(digits))


def fingerprint(ids: bytes) -> bytes:
    """The V1 fingerprint of a range given its ids concatenated: their sum as little-endian
    256-bit integers mod 2^256, then the first 16 bytes of sha256(sum + varint(count))."""
    total = 0
    view = memoryview(ids)
    for start in range(0, len(ids), ID_SIZE):
        total += int.from_bytes(view[start:start + ID_SIZE], "little")
    count = len(ids) // ID_SIZE
    digest = hashlib.sha256((total & _MASK).to_bytes(ID_SIZE, "little") + encode_varint(count))
    return digest.digest()[:FINGERPRINT_SIZE]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.last_timestamp = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise NegentropyError("message ends in the middle of a range")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def varint(self) -> int:
        value = 0
        for used in range(MAX_VARINT_BYTES):
            if self.pos >= len(self.data):
                raise NegentropyError("message ends in the middle of a varint")
            byte = self.data[self.pos]
            self.pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return value
        raise NegentropyError(f"varint longer than {MAX_VARINT_BYTES} bytes")

    def bound(self) -> Bound:
        encoded = self.varint()
        if encoded == 0 or self.last_timestamp == INFINITY:
            timestamp = INFINITY  # after infinity every bound is infinity
        else:
            timestamp = self.last_timestamp + encoded - 1
            if timestamp >= INFINITY:
                raise NegentropyError("bound timestamp past 2^64-1")
        self.last_timestamp = timestamp
        length = self.varint()
        if length > ID_SIZE:
            raise NegentropyError(f"bound id prefix longer than {ID_SIZE} bytes")
        prefix = self.take(length)
        return END if timestamp == INFINITY else Bound(timestamp, prefix)


def parse_ranges(body: bytes) -> list[Range]:
    """The ranges of a message without its version byte; bounds must not go backwards."""
    reader = _Reader(body)
    ranges: list[Range] = []
    previous = LOWEST
    while not reader.done():
        upper = reader.bound()
        if upper.key < previous.key:
            raise NegentropyError("range bounds are out of order")
        previous = upper
        try:
            mode = Mode(reader.varint())
        except ValueError:
            raise NegentropyError("unknown range mode") from None
        if mode is Mode.SKIP:
            ranges.append(Range(upper, mode))
        elif mode is Mode.FINGERPRINT:
            ranges.append(Range(upper, mode, reader.take(FINGERPRINT_SIZE)))
        else:
            count = reader.varint()
            if count * ID_SIZE > len(body) - reader.pos:
                raise NegentropyError("id list is longer than the message")
            ranges.append(Range(upper, mode, reader.take(count * ID_SIZE)))
    return ranges


class Writer:
    """Builds one message range by range; `mark`/`rollback` undo what would pass the frame
    size limit (the timestamp delta state is part of what is undone)."""

    def __init__(self) -> None:
        self.out = bytearray([PROTOCOL_VERSION])
        self.last_timestamp = 0

    def __len__(self) -> int:
        return len(self.out)

    def mark(self) -> tuple[int, int]:
        return len(self.out), self.last_timestamp

    def rollback(self, mark: tuple[int, int]) -> None:
        del self.out[mark[0]:]
        self.last_timestamp = mark[1]

    def bound(self, bound: Bound) -> None:
        if bound.timestamp == INFINITY:
            self.out += b"\0"
        else:
            delta = bound.timestamp - self.last_timestamp
            if delta < 0:  # only a bug in this module could get here
                raise ValueError("bounds must be written in ascending order")
            self.out += encode_varint(delta + 1)
        self.last_timestamp = bound.timestamp
        self.out += encode_varint(len(bound.prefix)) + bound.prefix

    def range(self, upper: Bound, mode: Mode, payload: bytes = b"") -> None:
        self.bound(upper)
        self.out += encode_varint(mode)
        if mode is Mode.ID_LIST:
            self.out += encode_varint(len(payload) // ID_SIZE)
        self.out += payload

    def message(self) -> bytes:
        return bytes(self.out)
