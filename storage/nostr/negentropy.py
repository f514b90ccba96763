"""Negentropy (NIP-77) set reconciliation over (created_at, id) items, without I/O: the
responder a relay runs for NEG-OPEN/NEG-MSG (`respond`) and the initiator a peer sync runs
against other relays (`Initiator`). The wire format is storage/nostr/negentropy_wire.py.

How a range is answered (both roles): Skip is skipped (neighbouring skips merge, a trailing
one is left out, it is implicit); a Fingerprint equal to ours is skipped, one that differs is
split: into one IdList when the range holds fewer than 2 x BUCKETS of our items, else into
BUCKETS fingerprinted sub-ranges of equal count; an IdList is the end of a range: the
initiator learns from it what it has and needs and skips it, the responder answers with its
own ids in that range, so the initiator can do the same on its side.

Why the frame size limit works the way it does: a message that would pass the limit stops at
a bound, and everything from there to infinity is sent as one Fingerprint range. The peer
sees it differ (unless that part is already equal) and splits it in the next round, so
nothing is lost, only deferred. The first range a message answers always fits (a split is at
most about 1 kB), and a long id list is cut after the ids that fit, so every round moves on."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.nostr.negentropy_wire import (
    END,
    ID_SIZE,
    LOWEST,
    PROTOCOL_VERSION,
    Bound,
    Mode,
    NegentropyError,
    Range,
    Writer,
    fingerprint,
    parse_ranges,
)

__all__ = ["BUCKETS", "check", "Initiator", "Items", "MIN_FRAME_LIMIT", "NegentropyError", "Round", "respond"]

BUCKETS = 16
#: the smallest frame size limit that still lets the first range of every message fit
MIN_FRAME_LIMIT = 2048
#: room kept under the limit for the Skip and the closing Fingerprint range of a cut message
_RESERVE = 64
#: memory one item costs while a session keeps it (8-byte timestamp, 32-byte id)
ITEM_BYTES = 8 + ID_SIZE


class Items:
    """A sorted, immutable set of (timestamp, 32-byte id): a packed array of timestamps and
    one bytes object of ids, 40 bytes an item instead of the ~150 of a list of tuples."""

    __slots__ = ("timestamps", "ids")

    def __init__(self, timestamps: array[int], ids: bytes) -> None:
        self.timestamps = timestamps
        self.ids = ids

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, str | bytes]]) -> Items:
        """Items from (timestamp, id as hex or bytes), in any order; duplicates are dropped."""
        unique = sorted({(ts, bytes.fromhex(i) if isinstance(i, str) else bytes(i)) for ts, i in pairs})
        for ts, id_ in unique:
            if len(id_) != ID_SIZE or not 0 <= ts < END.timestamp:
                raise ValueError("items need 32-byte ids and timestamps below 2^64-1")
        return cls(array("Q", (ts for ts, _ in unique)), b"".join(id_ for _, id_ in unique))

    def __len__(self) -> int:
        return len(self.timestamps)

    def id_at(self, index: int) -> bytes:
        return self.ids[index * ID_SIZE:(index + 1) * ID_SIZE]

    def ids_between(self, lo: int, hi: int) -> bytes:
        return self.ids[lo * ID_SIZE:hi * ID_SIZE]

    def fingerprint(self, lo: int, hi: int) -> bytes:
        return fingerprint(self.ids_between(lo, hi))

    def lower_bound(self, bound: Bound, lo: int) -> int:
        """The first index from `lo` on whose item is not below `bound`."""
        hi = len(self)
        target = bound.key
        while lo < hi:
            mid = (lo + hi) // 2
            if (self.timestamps[mid], self.id_at(mid)) < target:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def minimal_bound(self, index: int) -> Bound:
        """The shortest bound above item index-1 and not above item index."""
        timestamp = self.timestamps[index]
        if index == 0 or self.timestamps[index - 1] != timestamp:
            return Bound(timestamp)
        before, this = self.id_at(index - 1), self.id_at(index)
        shared = next(i for i in range(ID_SIZE) if before[i] != this[i])
        return Bound(timestamp, this[:shared + 1])

    @property
    def memory(self) -> int:
        return len(self) * ITEM_BYTES


@dataclass
class Round:
    """What one initiator round learned: the ids it has that the peer lacks (`have`), the
    ids the peer has that it lacks (`need`), and its next message (None: reconciled)."""

    message: bytes | None
    have: list[bytes] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)


def _check_limit(frame_limit: int) -> None:
    if frame_limit < MIN_FRAME_LIMIT:
        raise ValueError(f"the frame size limit must be at least {MIN_FRAME_LIMIT} bytes")


def _split(out: Writer, items: Items, lo: int, hi: int, upper: Bound) -> None:
    count = hi - lo
    if count < 2 * BUCKETS:
        out.range(upper, Mode.ID_LIST, items.ids_between(lo, hi))
        return
    per, extra = divmod(count, BUCKETS)
    start = lo
    for bucket in range(BUCKETS):
        end = start + per + (1 if bucket < extra else 0)
        out.range(upper if end == hi else items.minimal_bound(end), Mode.FINGERPRINT, items.fingerprint(start, end))
        start = end


class _Answer:
    """One pass over a received message, building the reply range by range."""

    def __init__(self, items: Items, frame_limit: int, initiator: bool) -> None:
        self.items = items
        self.budget = frame_limit - _RESERVE
        self.initiator = initiator
        self.out = Writer()
        self.have: list[bytes] = []
        self.need: list[bytes] = []
        self.lower = LOWEST  # lower bound of the range being answered
        self.lower_index = 0
        self.skipping = False  # a Skip up to `lower` is owed before the next range written

    def _flush_skip(self) -> None:
        if self.skipping:
            self.out.range(self.lower, Mode.SKIP)
            self.skipping = False

    def _cut(self, mark: tuple[int, int], skipping: bool, at: Bound, index: int) -> None:
        """End the message at `at`: a Skip owed up to it, then one Fingerprint of the rest."""
        self.out.rollback(mark)
        if skipping:
            self.out.range(at, Mode.SKIP)
        self.out.range(END, Mode.FINGERPRINT, self.items.fingerprint(index, len(self.items)))

    def run(self, ranges: list[Range]) -> None:
        for rng in ranges:
            upper_index = self.items.lower_bound(rng.upper, self.lower_index)
            mark, skipping = self.out.mark(), self.skipping
            if rng.mode is Mode.SKIP:
                self.skipping = True
            elif rng.mode is Mode.FINGERPRINT:
                if self.items.fingerprint(self.lower_index, upper_index) == rng.payload:
                    self.skipping = True
                else:
                    self._flush_skip()
                    _split(self.out, self.items, self.lower_index, upper_index, rng.upper)
            elif self.initiator:
                self._learn(rng, upper_index)
                self.skipping = True
            else:
                self._flush_skip()
                if not self._list_ours(rng.upper, upper_index, mark, skipping):
                    return
            if len(self.out) > self.budget:
                self._cut(mark, skipping, self.lower, self.lower_index)
                return
            self.lower, self.lower_index = rng.upper, upper_index

    def _learn(self, rng: Range, upper_index: int) -> None:
        theirs = set(rng.ids)
        for index in range(self.lower_index, upper_index):
            ours = self.items.id_at(index)
            if ours in theirs:
                theirs.discard(ours)
            else:
                self.have.append(ours)
        self.need.extend(sorted(theirs))

    def _list_ours(self, upper: Bound, upper_index: int, mark: tuple[int, int], skipping: bool) -> bool:
        """Our ids in the range; as many as fit, then a cut (False) if not all did."""
        lo = self.lower_index
        header = len(self.out) + 2 * ID_SIZE + 16  # bound, mode and count, generously
        fit = max(0, (self.budget - header) // ID_SIZE)
        if upper_index - lo <= fit:
            self.out.range(upper, Mode.ID_LIST, self.items.ids_between(lo, upper_index))
            return True
        if fit == 0:
            self._cut(mark, skipping, self.lower, lo)
            return False
        stop = self.items.minimal_bound(lo + fit)
        self.out.range(stop, Mode.ID_LIST, self.items.ids_between(lo, lo + fit))
        self.out.range(END, Mode.FINGERPRINT, self.items.fingerprint(lo + fit, len(self.items)))
        return False


def _ranges(message: bytes) -> list[Range]:
    if not message:
        raise NegentropyError("empty message")
    return parse_ranges(message[1:])


def check(message: bytes) -> None:
    """Raise NegentropyError if a V1 message is malformed: lets a relay refuse a hostile
    NEG-OPEN before it reads any items for it."""
    _ranges(message)


def respond(items: Items, message: bytes, frame_limit: int) -> bytes:
    """The responder's (relay's) reply to one initiator message. A message of another
    protocol version is answered with the version byte alone, as the protocol asks, so the
    initiator can retry in V1. Raises NegentropyError for a malformed message."""
    _check_limit(frame_limit)
    if message[:1] != bytes([PROTOCOL_VERSION]) and message:
        return bytes([PROTOCOL_VERSION])
    answer = _Answer(items, frame_limit, initiator=False)
    answer.run(_ranges(message))
    return answer.out.message()


class Initiator:
    """The client side: `initiate()` for the first message, then `reconcile(reply)` per
    reply until its Round has no message. `have` and `need` collect over the rounds."""

    def __init__(self, items: Items, frame_limit: int) -> None:
        _check_limit(frame_limit)
        self.items = items
        self.frame_limit = frame_limit
        self.have: set[bytes] = set()
        self.need: set[bytes] = set()

    def initiate(self) -> bytes:
        out = Writer()
        _split(out, self.items, 0, len(self.items), END)
        return out.message()

    def reconcile(self, message: bytes) -> Round:
        if message[:1] != bytes([PROTOCOL_VERSION]):
            raise NegentropyError("the peer does not speak negentropy protocol V1")
        answer = _Answer(self.items, self.frame_limit, initiator=True)
        answer.run(_ranges(message))
        # a range learnt before can come round again: a cut message ends with one fingerprint
        # to infinity, over ranges this side had already settled, so only new ids are reported
        have = list(dict.fromkeys(i for i in answer.have if i not in self.have))
        need = list(dict.fromkeys(i for i in answer.need if i not in self.need))
        self.have.update(have)
        self.need.update(need)
        reply = answer.out.message()
        return Round(reply if len(reply) > 1 else None, have, need)
