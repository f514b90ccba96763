"""Pubkeys as people write them: bech32 `npub1...` (NIP-19) and hex, both accepted where an
operator lists keys, and the npub a repository's path is named by."""

from __future__ import annotations

from functools import lru_cache

from storage.nostr.event import is_hex


@lru_cache(maxsize=4096)
def hex_to_npub(pubkey_hex: str) -> str:
    """Bech32 of a hex pubkey; cached because every announcement check needs the owner's."""
    from nostr_sdk import PublicKey

    return PublicKey.parse(pubkey_hex).to_bech32()


def npub_to_hex(value: str) -> str | None:
    """Hex pubkey of an `npub1...`, or None for anything else (operator lists hold junk too)."""
    if not value.startswith("npub1"):
        return None
    from nostr_sdk import PublicKey

    try:
        return PublicKey.parse(value).to_hex()
    except Exception:  # nostr-sdk raises its own error family; any failure means "not an npub"
        return None


def pubkey_from_operator_value(value: str) -> str | None:
    """Operators write pubkeys as hex or npub in settings; accept both."""
    value = value.strip()
    if is_hex(value.lower(), 64):
        return value.lower()
    return npub_to_hex(value)
