"""NIP-01 message handling for one websocket connection, without I/O.

`Session.receive(text)` turns one client frame into a list of requests for the I/O layer
(publish, subscribe, unsubscribe, count) or immediate replies; the functions at the bottom
build the outgoing frames. Nothing here awaits, so every rule is unit-tested with plain
values, in the manner of h11/wsproto."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.nostr.event import Event, EventError, is_hex
from storage.nostr.filters import Filter, FilterError, encodable, shown
from storage.nostr.negentropy_wire import PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits a session enforces; built from settings and advertised in NIP-11."""

    max_message_bytes: int = 256 * 1024
    max_subscriptions: int = 50
    max_filters: int = 20
    max_limit: int = 5000
    max_event_tags: int = 2500
    max_content_bytes: int = 128 * 1024
    max_created_at_future_s: int = 900
    max_subid_length: int = 256
    negentropy_enabled: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


# --- what the session asks the I/O layer to do -------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A frame to send back as is (NOTICE, CLOSED, OK false)."""

    text: str


@dataclass(frozen=True, slots=True)
class Publish:
    """A well-formed, correctly signed event that passed the size limits."""

    event: Event


@dataclass(frozen=True, slots=True)
class Subscribe:
    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    sub_id: str


@dataclass(frozen=True, slots=True)
class Count:
    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class NegOpen:
    """NIP-77: reconcile the served events matching `filter`; `message` is the initiator's
    first negentropy message (hex-decoded, V1: its version byte was checked)."""

    sub_id: str
    filter: Filter
    message: bytes


@dataclass(frozen=True, slots=True)
class NegMsg:
    sub_id: str
    message: bytes


@dataclass(frozen=True, slots=True)
class NegClose:
    sub_id: str


Negentropy = NegOpen | NegMsg | NegClose
Request = Reply | Publish | Subscribe | Unsubscribe | Count | NegOpen | NegMsg | NegClose


@dataclass
class Session:
    """The NIP-01 state of one connection: its open subscription ids."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.time
    subscriptions: set[str] = field(default_factory=set)

    def receive(self, text: str | bytes) -> Request:
        if len(text) > self.limits.max_message_bytes:
            return Reply(notice(f"invalid: message is larger than {self.limits.max_message_bytes} bytes"))
        message, problem = decode(text)
        if problem is not None:
            return Reply(notice(problem))
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            return Reply(notice("invalid: message must be a JSON array starting with a type string"))
        handler = _HANDLERS.get(message[0])
        if handler is None or (message[0].startswith("NEG-") and not self.limits.negentropy_enabled):
            return Reply(notice(f"invalid: unsupported message type {shown(message[0])}"))
        return handler(self, message)

    # --- per message type ---------------------------------------------------------------
    def _event(self, message: list[Any]) -> Request:
        if len(message) != 2:
            return Reply(notice("invalid: EVENT takes exactly one event"))
        raw = message[1]
        # only an id that could be one is echoed in OK; anything else (a lone surrogate, 200 kB
        # of text) gets a NOTICE, so an answer is always a valid, small frame
        event_id = raw.get("id") if isinstance(raw, dict) and is_hex(raw.get("id"), 64) else ""
        try:
            event = Event.from_dict(raw)
            self._check_limits(event)
            event.verify()
        except EventError as exc:
            if not event_id:
                return Reply(notice(f"invalid: {exc}"))
            return Reply(ok(event_id, False, f"invalid: {exc}"))
        return Publish(event)

    def _check_limits(self, event: Event) -> None:
        check_limits(event, self.limits, self.clock())

    def _req(self, message: list[Any]) -> Request:
        parsed = self._sub_and_filters(message, "REQ")
        if isinstance(parsed, Reply):
            return parsed
        sub_id, filters = parsed
        if sub_id not in self.subscriptions and len(self.subscriptions) >= self.limits.max_subscriptions:
            return Reply(closed(sub_id, f"rate-limited: too many subscriptions (max {self.limits.max_subscriptions})"))
        self.subscriptions.add(sub_id)
        return Subscribe(sub_id, filters)

    def _count(self, message: list[Any]) -> Request:
        parsed = self._sub_and_filters(message, "COUNT")
        if isinstance(parsed, Reply):
            return parsed
        return Count(*parsed)

    def _close(self, message: list[Any]) -> Request:
        if len(message) != 2 or not isinstance(message[1], str):
            return Reply(notice("invalid: CLOSE takes one subscription id"))
        self.subscriptions.discard(message[1])
        return Unsubscribe(message[1])

    # --- NIP-77 ------------------------------------------------------------------------
    def _neg_open(self, message: list[Any]) -> Request:
        checked = self._neg_sub_id(message, 4, "NEG-OPEN takes a subscription id, a filter and a message")
        if isinstance(checked, Reply):
            return checked
        try:
            flt = Filter.from_dict(message[2], self.limits.max_limit)
        except FilterError as exc:
            return Reply(neg_err(checked, f"invalid: {exc}"))
        data = _neg_hex(checked, message[3])
        return data if isinstance(data, Reply) else NegOpen(checked, flt, data)

    def _neg_msg(self, message: list[Any]) -> Request:
        checked = self._neg_sub_id(message, 3, "NEG-MSG takes a subscription id and a message")
        if isinstance(checked, Reply):
            return checked
        data = _neg_hex(checked, message[2])
        return data if isinstance(data, Reply) else NegMsg(checked, data)

    def _neg_close(self, message: list[Any]) -> Request:
        checked = self._neg_sub_id(message, 2, "NEG-CLOSE takes one subscription id")
        return checked if isinstance(checked, Reply) else NegClose(checked)

    def _neg_sub_id(self, message: list[Any], length: int, usage: str) -> str | Reply:
        if len(message) != length or not isinstance(message[1], str):
            return Reply(notice(f"invalid: {usage}"))
        sub_id = message[1]
        if not sub_id or len(sub_id) > self.limits.max_subid_length or not encodable(sub_id):
            return Reply(notice(f"invalid: subscription id must be 1 to {self.limits.max_subid_length} "
                                "characters of valid Unicode"))
        return sub_id

    def _sub_and_filters(self, message: list[Any], verb: str) -> tuple[str, tuple[Filter, ...]] | Reply:
        if len(message) < 2 or not isinstance(message[1], str):
            return Reply(notice(f"invalid: {verb} needs a subscription id"))
        sub_id = message[1]
        if not sub_id or len(sub_id) > self.limits.max_subid_length:
            return Reply(notice(f"invalid: subscription id must be 1 to {self.limits.max_subid_length} characters"))
        if not encodable(sub_id):
            return Reply(notice("invalid: subscription id is not valid Unicode (a lone surrogate)"))
        raw_filters = message[2:]
        if not raw_filters:
            return Reply(closed(sub_id, f"invalid: {verb} needs at least one filter"))
        if len(raw_filters) > self.limits.max_filters:
            return Reply(closed(sub_id, f"invalid: too many filters (max {self.limits.max_filters})"))
        try:
            filters = tuple(Filter.from_dict(f, self.limits.max_limit) for f in raw_filters)
        except FilterError as exc:
            return Reply(closed(sub_id, f"invalid: {exc}"))
        return sub_id, filters


def decode(text: str | bytes) -> tuple[Any, str | None]:
    """Parse one frame; (value, None), or (None, the NOTICE text) for anything json refuses.

    The stdlib decoder is the depth limit: it raises RecursionError past the interpreter's
    recursion limit (about 1,000 levels) instead of crashing, and ValueError for an integer
    of more than `sys.get_int_max_str_digits()` (4,300) digits, which also keeps the
    quadratic int parse of a 256 kB number out of reach. Both used to escape the session and
    close the connection without an answer."""
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "invalid: message nests too deeply"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "invalid: message is not valid JSON"
    except ValueError:  # int digits limit
        return None, "invalid: message holds a number with too many digits"


_HEX = re.compile(r"[0-9a-fA-F]*")


def _neg_hex(sub_id: str, value: Any) -> bytes | Reply:
    """The binary negentropy message of a NEG-OPEN/NEG-MSG. A message of another protocol
    version gets the version byte alone (NIP-77: the client may then retry in V1)."""
    if not isinstance(value, str) or len(value) % 2:
        return Reply(neg_err(sub_id, "invalid: the negentropy message must be a hex string of even length"))
    if not _HEX.fullmatch(value):  # bytes.fromhex alone would take spaces
        return Reply(neg_err(sub_id, "invalid: the negentropy message is not hex"))
    data = bytes.fromhex(value)
    if not data:
        return Reply(neg_err(sub_id, "invalid: the negentropy message is empty"))
    if data[0] != PROTOCOL_VERSION:
        return Reply(neg_msg(sub_id, bytes([PROTOCOL_VERSION])))
    return data


def check_limits(event: Event, limits: Limits, now: float) -> None:
    """The per-event limits, for clients and for events synced from other relays alike."""
    if len(event.tags) > limits.max_event_tags:
        raise EventError(f"too many tags (max {limits.max_event_tags})")
    # surrogatepass: a lone surrogate is refused by the id check that follows, with a reason
    if len(event.content.encode("utf-8", "surrogatepass")) > limits.max_content_bytes:
        raise EventError(f"content is longer than {limits.max_content_bytes} bytes")
    if event.created_at > now + limits.max_created_at_future_s:
        raise EventError(f"created_at is more than {limits.max_created_at_future_s} seconds in the future")


_HANDLERS: dict[str, Callable[[Session, list[Any]], Request]] = {
    "EVENT": Session._event,
    "REQ": Session._req,
    "COUNT": Session._count,
    "CLOSE": Session._close,
    "NEG-OPEN": Session._neg_open,
    "NEG-MSG": Session._neg_msg,
    "NEG-CLOSE": Session._neg_close,
}


# --- outgoing frames ---------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def ok(event_id: str, accepted: bool, message: str = "") -> str:
    return _dump(["OK", event_id, accepted, message])


def notice(message: str) -> str:
    return _dump(["NOTICE", message])


def closed(sub_id: str, message: str) -> str:
    return _dump(["CLOSED", sub_id, message])


def eose(sub_id: str) -> str:
    return _dump(["EOSE", sub_id])


def count_reply(sub_id: str, count: int) -> str:
    return _dump(["COUNT", sub_id, {"count": count}])


def event_frame(sub_id: str, raw_event_json: str) -> str:
    """Wraps an already serialised event, so stored JSON is sent without re-encoding."""
    return f'["EVENT",{_dump(sub_id)},{raw_event_json}]'


def neg_msg(sub_id: str, message: bytes) -> str:
    return _dump(["NEG-MSG", sub_id, message.hex()])


def neg_err(sub_id: str, reason: str) -> str:
    return _dump(["NEG-ERR", sub_id, reason])
