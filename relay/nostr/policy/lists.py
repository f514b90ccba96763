"""Operator lists of repositories (`RepoList`): the GRASP-05 archive whitelist and the
curation whitelist and blacklist all take the same entries, `npub` (all of a user's
repositories), `npub/identifier` (one repository) or a bare `identifier` (that name from
anyone). Parsed once per settings load (npubs decoded), so a rule asks one set lookup."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from storage.nostr import nip34

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RepoList:
    """One operator list; empty when the setting is unset."""

    pubkeys: frozenset[str] = frozenset()
    repos: frozenset[tuple[str, str]] = frozenset()
    identifiers: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.pubkeys or self.repos or self.identifiers)

    def matches(self, pubkey: str, identifier: str) -> bool:
        return pubkey in self.pubkeys or (pubkey, identifier) in self.repos or identifier in self.identifiers

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str = "repository list") -> "RepoList":
        """Only the npub form names a pubkey, so a 64-hex entry is an identifier, as the
        entry grammar says. Settings refuse junk when loaded (config/values.py); what gets
        here unchecked is skipped with a warning."""
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
            elif not sep and entry and not entry.startswith("npub1"):
                identifiers.add(entry)
            else:
                log.warning("ignoring bad list entry", setting=setting, entry=raw)
        return cls(frozenset(pubkeys), frozenset(repos), frozenset(identifiers))
