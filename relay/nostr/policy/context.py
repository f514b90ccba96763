"""The settings the rules read (`PolicyContext`), parsed once from `Settings`: the blacklist,
the GRASP-05 archive whitelist, the maintainer-walk bounds and the clock the walk judges
role entries by."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from config.settings import Settings
from storage.nostr import nip34

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The settings the rules need, parsed once (npubs decoded) rather than per event."""

    domain: str
    blacklist: frozenset[str] = frozenset()
    whitelist_pubkeys: frozenset[str] = frozenset()
    whitelist_repos: frozenset[tuple[str, str]] = frozenset()
    whitelist_identifiers: frozenset[str] = frozenset()
    walk: nip34.WalkLimits = nip34.WalkLimits()
    #: "Now" for the maintainer walk (role entries are judged at a moment); tests pin it.
    clock: Callable[[], float] = field(default=time.time, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "PolicyContext":
        blacklist: set[str] = set()
        for value in settings.pubkey_blacklist:
            pubkey = nip34.pubkey_from_operator_value(value)
            if pubkey is None:
                log.warning("ignoring bad pubkey_blacklist entry", entry=value)
            else:
                blacklist.add(pubkey)
        pubkeys, repos, identifiers = parse_archive_whitelist(settings.archive_whitelist)
        return cls(settings.domain, frozenset(blacklist), pubkeys, repos, identifiers,
                   nip34.WalkLimits.of(settings))

    def archive_whitelisted(self, pubkey: str, identifier: str) -> bool:
        return (
            pubkey in self.whitelist_pubkeys
            or (pubkey, identifier) in self.whitelist_repos
            or identifier in self.whitelist_identifiers
        )


def parse_archive_whitelist(
    entries: list[str],
) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """GRASP-05 entries: `npub` (all of a user's repos), `npub/identifier` (one repo), or a
    bare `identifier` (that name from anyone). Only the npub form names a pubkey, so a
    64-hex entry is an identifier, as the entry grammar says."""
    pubkeys: set[str] = set()
    repos: set[tuple[str, str]] = set()
    identifiers: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        head, sep, tail = entry.partition("/")
        pubkey = nip34.npub_to_hex(head)
        if sep and pubkey is not None and tail:
            repos.add((pubkey, tail))
        elif not sep and pubkey is not None:
            pubkeys.add(pubkey)
        elif not sep and entry:
            identifiers.add(entry)
        else:
            log.warning("ignoring bad archive_whitelist entry", entry=raw)
    return frozenset(pubkeys), frozenset(repos), frozenset(identifiers)

