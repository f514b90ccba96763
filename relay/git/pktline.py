"""Git pkt-line framing, the receive-pack command list, and report-status refusals. Pure.

The daemon reads the ref updates at the start of a push body itself (before git runs) so it
can authorise them against signed state events without server-side hooks; the parser is
incremental because the commands may arrive split over several ASGI body chunks, and it
keeps the exact bytes it consumed so they can be replayed to `git receive-pack` untouched."""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.nostr.nip34 import is_oid

FLUSH = b"0000"
DELIM = b"0001"
MAX_PKT_DATA = 65516  # 65520 minus the 4-byte length header
SIDEBAND_MAX_DATA = 65515  # one byte less: the band number


class PktLineError(ValueError):
    """Malformed pkt-line input; the message is client-facing."""


def encode(data: bytes | str) -> bytes:
    """One pkt-line: 4 hex digits of total length, then the payload."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_PKT_DATA:
        raise PktLineError("pkt-line payload too long")
    return b"%04x" % (len(data) + 4) + data


def decode_one(buf: bytes | bytearray, pos: int = 0) -> tuple[bytes | None, int] | None:
    """Decode the pkt-line at `pos`: (payload, next_pos), payload None for flush/delim,
    or None when the buffer does not hold the whole line yet."""
    if len(buf) - pos < 4:
        return None
    head = bytes(buf[pos:pos + 4])
    try:
        size = int(head, 16)
    except ValueError:
        raise PktLineError(f"bad pkt-line length {head!r}") from None
    if size in (0, 1, 2):
        return None, pos + 4  # flush, delim, response-end
    if size < 4:
        raise PktLineError(f"bad pkt-line length {head!r}")
    if len(buf) - pos < size:
        return None
    return bytes(buf[pos + 4:pos + size]), pos + size


def decode_all(buf: bytes) -> list[bytes | None]:
    """Every pkt-line of a complete buffer (None for flush); for tests and small payloads."""
    out: list[bytes | None] = []
    pos = 0
    while pos < len(buf):
        item = decode_one(buf, pos)
        if item is None:
            raise PktLineError("truncated pkt-line")
        payload, pos = item
        out.append(payload)
    return out


def sideband(band: int, data: bytes, max_data: int = SIDEBAND_MAX_DATA) -> bytes:
    """Wrap data in side-band packets of the given band (old `side-band` allows 999 bytes)."""
    out = bytearray()
    for start in range(0, len(data), max_data):
        out += encode(bytes([band]) + data[start:start + max_data])
    return bytes(out)


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """One receive-pack command: move `ref` from `old` to `new` (zero oid = create/delete)."""

    old: str
    new: str
    ref: str

    @property
    def is_delete(self) -> bool:
        return set(self.new) == {"0"}

    @property
    def is_create(self) -> bool:
        return set(self.old) == {"0"}


@dataclass(slots=True)
class CommandList:
    """What a push body starts with: the commands and the capabilities of the first one."""

    updates: list[RefUpdate] = field(default_factory=list)
    capabilities: frozenset[str] = frozenset()
    shallow: list[str] = field(default_factory=list)

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def encode(self, commands: list[RefUpdate] | tuple[RefUpdate, ...], add: tuple[str, ...] = ()) -> bytes:
        """The command list git is given: these commands (the effective ones, which may be
        fewer than the client sent), the client's capabilities plus `add` on the first, and
        its shallow lines, ending with the flush; whatever followed the client's flush
        (push options, the pack) comes after unchanged."""
        caps = " ".join(sorted(self.capabilities | set(add)))
        lines = [encode(f"shallow {oid}\n") for oid in self.shallow]
        for i, command in enumerate(commands):
            text = f"{command.old} {command.new} {command.ref}"
            lines.append(encode(f"{text}\0{caps}\n" if i == 0 else f"{text}\n"))
        return b"".join(lines) + FLUSH


class CommandParser:
    """Incremental parser of the command list that opens a receive-pack request body.

    Feed body chunks until `done`; then `result` holds the commands and `consumed` every
    byte seen so far (the commands plus whatever of the pack came along in the same chunk),
    which must be sent to git first, followed by the rest of the body."""

    def __init__(self, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.pos = 0
        self.done = False
        self.result = CommandList()
        self._first = True

    @property
    def consumed(self) -> bytes:
        return bytes(self.buffer)

    @property
    def rest(self) -> bytes:
        """What came after the command list's flush in the chunks fed so far."""
        return bytes(self.buffer[self.pos:])

    def feed(self, chunk: bytes) -> bool:
        """Add a chunk; returns True once the flush ending the command list was read."""
        if self.done:
            self.buffer += chunk
            return True
        self.buffer += chunk
        while not self.done:
            item = decode_one(self.buffer, self.pos)
            if item is None:
                if len(self.buffer) > self.max_bytes:
                    raise PktLineError("push command list too long")
                return False
            payload, self.pos = item
            if payload is None:
                self.done = True
            else:
                self._line(payload)
        return True

    def _line(self, payload: bytes) -> None:
        text_part, _, caps = payload.partition(b"\0")
        try:
            line = text_part.decode("utf-8", errors="strict").rstrip("\n")
            cap_text = caps.decode("utf-8", errors="strict").rstrip("\n")
        except UnicodeDecodeError:
            raise PktLineError("push command is not valid UTF-8") from None
        if self._first and caps:
            self.result.capabilities = frozenset(cap_text.split())
        if line.startswith("shallow "):
            self.result.shallow.append(line[8:])
            return
        if line.startswith("push-cert"):
            raise PktLineError("signed pushes (push-cert) are not supported")
        parts = line.split(" ", 2)
        if len(parts) != 3 or not is_oid(parts[0]) or not is_oid(parts[1]) or not parts[2]:
            raise PktLineError(f"bad push command {line[:120]!r}")
        self._first = False
        self.result.updates.append(RefUpdate(old=parts[0], new=parts[1], ref=parts[2]))


def report_status_refusal(command_list: CommandList, reasons: list[str | None],
                          fallback: str = "push refused") -> bytes:
    """A receive-pack result refusing every command, which `git push` prints as
    ` ! [remote rejected] <ref> (<reason>)`. Commands without a reason of their own are
    refused with `fallback` (a push is all-or-nothing here)."""
    lines = []
    for update, reason in zip(command_list.updates, reasons, strict=True):
        text = (reason or fallback).replace("\n", " ").strip() or fallback
        lines.append(f"ng {update.ref} {text}\n")
    return _report(command_list, lines)


def report_status_ok(command_list: CommandList) -> bytes:
    """A receive-pack result accepting every command, for a push whose commands all change
    nothing (git is not run for it)."""
    return _report(command_list, [f"ok {update.ref}\n" for update in command_list.updates])


def _report(command_list: CommandList, lines: list[str]) -> bytes:
    report = encode("unpack ok\n") + b"".join(encode(line) for line in lines) + FLUSH
    if command_list.has("side-band-64k"):
        return sideband(1, report) + FLUSH
    if command_list.has("side-band"):
        return sideband(1, report, 999) + FLUSH
    return report


def service_advertisement_header(service: str) -> bytes:
    """The smart-HTTP preamble of a v0/v1 info/refs answer."""
    return encode(f"# service={service}\n") + FLUSH
