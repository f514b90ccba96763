"""The settings the rules read (`PolicyContext`), parsed once from `Settings`: the author
blacklist, the curation lists (repository whitelist and blacklist), the GRASP-05 archive
modes, the maintainer-walk bounds and the clock the walk judges role entries by.

Which list wins: the author blacklist is checked first, for every kind; the repository
blacklist beats every whitelist (the curation one and the archive ones); the repository
whitelist narrows which announcements that list us are hosted; the archive modes admit
announcements that do not list us."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from config.settings import Settings
from relay.nostr.policy.lists import RepoList
from storage.nostr import nip34
from storage.nostr.event import Event

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The settings the rules need, parsed once (npubs decoded) rather than per event."""

    domain: str
    blacklist: frozenset[str] = frozenset()
    #: GRASP-05: announcements that do not list us, archived when they match
    archive: RepoList = RepoList()
    #: when non-empty, the only repositories listing us that are hosted
    repository_whitelist: RepoList = RepoList()
    #: never hosted nor archived, and nothing tagging them is stored
    repository_blacklist: RepoList = RepoList()
    #: GRASP-05 "archive all": every announcement, listing us or not
    archive_all: bool = False
    #: GRASP-05: announcements whose clone URLs name one of these services (host[:port])
    archive_services: tuple[str, ...] = ()
    #: GRASP-06: PRs pointing at their signer's /prs/ repo here are held although no
    #: repository they name is served
    grasp06: bool = False
    #: GRASP-05: archived repositories take no push (only while an archive mode is on)
    archive_read_only: bool = False
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
        return cls(settings.domain, frozenset(blacklist),
                   RepoList.parse(settings.archive_whitelist, "archive_whitelist"),
                   RepoList.parse(settings.repository_whitelist, "repository_whitelist"),
                   RepoList.parse(settings.repository_blacklist, "repository_blacklist"),
                   settings.archive_all, tuple(settings.archive_grasp_services),
                   settings.grasp06_enabled, settings.archiving and settings.archive_read_only,
                   nip34.WalkLimits.of(settings))

    def archive_whitelisted(self, pubkey: str, identifier: str) -> bool:
        return self.archive.matches(pubkey, identifier)

    def archives(self, announcement: Event) -> bool:
        """Does a GRASP-05 mode admit this announcement although it may not list us?"""
        if self.archive_all or self.archive.matches(announcement.pubkey, announcement.d_tag):
            return True
        urls = nip34.clone_urls(announcement) if self.archive_services else []
        return any(nip34.service_urls_match(url, service) for url in urls for service in self.archive_services)

    def repository_blocked(self, pubkey: str, identifier: str) -> bool:
        return self.repository_blacklist.matches(pubkey, identifier)

    def repository_allowed(self, pubkey: str, identifier: str) -> bool:
        """The curation whitelist, for repositories that list us (none: all are)."""
        return not self.repository_whitelist or self.repository_whitelist.matches(pubkey, identifier)

    def hosts(self, announcement: Event) -> bool:
        """Did this announcement's author ask this relay to host the repo and may it (it
        lists us in clone and relays and passes the curation whitelist, or an archive mode
        admits it), rather than get in through the maintainer exception? Never when the
        repository blacklist names it."""
        pubkey, identifier = announcement.pubkey, announcement.d_tag
        if self.repository_blocked(pubkey, identifier):
            return False
        clone_ok, relay_ok = nip34.announcement_lists_us(announcement, self.domain)
        return (clone_ok and relay_ok and self.repository_allowed(pubkey, identifier)) or self.archives(announcement)


def parse_archive_whitelist(
    entries: list[str],
) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """GRASP-05 entries as (pubkeys, (pubkey, identifier) pairs, identifiers)."""
    parsed = RepoList.parse(entries, "archive_whitelist")
    return parsed.pubkeys, parsed.repos, parsed.identifiers
