"""What a peer relay's frames mean to the sync (pure): which are events for one of our
subscriptions, which end a request, and which say the peer is rate-limiting us or does not
speak NIP-77. Anything else, malformed JSON included, is ignored, so a peer's noise never
stops a stream."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: a NIP-01 machine-readable prefix that makes the peer's health go to "cooling"
RATE_LIMITED = "rate-limited:"


class RateLimited(Exception):
    """The peer said `rate-limited:` (NOTICE, CLOSED or NEG-ERR)."""


class Unsupported(Exception):
    """The peer does not answer NEG-OPEN (NEG-ERR, a NOTICE about it, or silence)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame from a peer: its type, subscription id (if any) and the rest."""

    kind: str
    sub_id: str
    body: list[Any]


def parse(message: str | bytes) -> Frame | None:
    """The frame, or None when it is not a JSON array starting with a type string."""
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        return None
    sub_id = value[1] if len(value) > 1 and isinstance(value[1], str) else ""
    return Frame(value[0], sub_id, value[2:])


def text(frame: Frame) -> str:
    """The human-readable message of a NOTICE / CLOSED / NEG-ERR frame."""
    if frame.kind == "NOTICE":
        return frame.sub_id
    return frame.body[0] if frame.body and isinstance(frame.body[0], str) else ""


def is_rate_limited(frame: Frame) -> bool:
    return frame.kind in ("NOTICE", "CLOSED", "NEG-ERR") and text(frame).startswith(RATE_LIMITED)


def refuses_negentropy(frame: Frame, sub_id: str) -> bool:
    """A NEG-ERR for our session, or a NOTICE naming NEG-OPEN or saying unsupported (what
    relays without NIP-77 answer: "invalid: unsupported message type 'NEG-OPEN'", "unknown
    command" and so on)."""
    if frame.kind == "NEG-ERR" and frame.sub_id == sub_id:
        return True
    if frame.kind == "NOTICE":
        said = text(frame).lower()
        return "neg-open" in said or "unsupported" in said or "unknown" in said
    return False
