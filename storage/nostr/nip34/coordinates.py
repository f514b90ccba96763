"""Repository identifiers (the `d` tag, which names a directory here) and `kind:pubkey:d`
coordinates, the address one event uses for another."""

from __future__ import annotations

from storage.nostr.event import is_hex
from storage.nostr.nip34.kinds import ANNOUNCEMENT

#: A repo lives at `<data_dir>/repos/<npub>/<identifier>.git`; the name must fit one
#: path component (255 bytes on common filesystems) with its `.git` suffix.
MAX_IDENTIFIER_BYTES = 251


def identifier_problem(identifier: str) -> str | None:
    """Why an identifier cannot name a repo here (it becomes a directory name), or None."""
    if not identifier:
        return "repository identifier (d tag) is empty"
    if identifier in (".", ".."):
        return "repository identifier cannot be '.' or '..'"
    if any(ch in identifier for ch in ("/", "\\", "\0")):
        return "repository identifier cannot contain '/', '\\' or NUL"
    if len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        return f"repository identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
    return None


def repo_coordinate(pubkey: str, identifier: str) -> str:
    return f"{ANNOUNCEMENT}:{pubkey}:{identifier}"


def parse_coordinate(value: str) -> tuple[int, str, str] | None:
    """`kind:pubkey:d` -> parts, or None. The d part may itself contain ':'."""
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    kind_s, pubkey, d = parts
    if not kind_s.isdigit() or len(kind_s) > 5 or not is_hex(pubkey, 64):
        return None
    kind = int(kind_s)
    return (kind, pubkey, d) if kind <= 65535 else None
