"""The NIP-11 relay information document, built from settings so that the `limitation`
object always states the limits the relay really enforces."""

from __future__ import annotations

from typing import Any

from config import Settings
from relay import __version__

SUPPORTED_NIPS = [1, 9, 11, 34, 45]
NEGENTROPY_NIP = 77
SOFTWARE = "https://pypi.org/project/grasp-relay/"


def _owner_hex(npub: str) -> str:
    if not npub:
        return ""
    from nostr_sdk import PublicKey

    try:
        return PublicKey.parse(npub).to_hex()
    except Exception:  # nostr-sdk raises its own error type; an unparsable owner is left out
        return ""


def is_curating(settings: Settings) -> bool:
    """Beyond spam prevention: any operator list or archive mode is set."""
    return bool(settings.archiving or settings.pubkey_blacklist or settings.repository_whitelist
                or settings.repository_blacklist)


def curation(settings: Settings) -> str:
    """One sentence per list or mode that applies, so clients can tell why a repo is (not) here."""
    parts: list[str] = []
    if settings.repository_whitelist:
        parts.append(f"only {len(settings.repository_whitelist)} listed repositories or authors (npub, "
                     "npub/identifier or identifier entries) are hosted among those that list this service")
    if settings.archive_all:
        parts.append("every repository announcement is archived, listing this service or not")
    if settings.archive_whitelist:
        parts.append(f"{len(settings.archive_whitelist)} listed repositories or authors are archived although "
                     "they do not list this service")
    if settings.archive_grasp_services:
        parts.append("repositories whose clone URLs name " + ", ".join(settings.archive_grasp_services)
                     + " are archived")
    if settings.archiving:
        parts.append("archived repositories are read-only here (their data comes only by sync)"
                     if settings.archive_read_only else "archived repositories also accept pushes")
    if settings.repository_blacklist:
        parts.append(f"{len(settings.repository_blacklist)} repositories or authors are refused, whatever "
                     "lists them, with every event tagging them")
    if settings.pubkey_blacklist:
        parts.append(f"{len(settings.pubkey_blacklist)} authors are blocked for every kind of event")
    return "The operator curates beyond spam prevention: " + "; ".join(parts) + "."


def relay_information(settings: Settings) -> dict[str, Any]:
    domain = settings.domain
    doc: dict[str, Any] = {
        "name": settings.relay_name,
        "description": settings.relay_description,
        "pubkey": _owner_hex(settings.owner_npub),
        "contact": settings.relay_contact,
        "supported_nips": sorted(SUPPORTED_NIPS + ([NEGENTROPY_NIP] if settings.negentropy_enabled else [])),
        "supported_grasps": supported_grasps(settings),
        "software": SOFTWARE,
        "version": __version__,
        "repo_acceptance_criteria": (
            f"Repository announcements (kind 30617) are accepted when they list this service in "
            f"both their clone URLs (http(s)://{domain}/<npub>/<identifier>.git) and their relays "
            f"(ws(s)://{domain}), or when their author is named as a maintainer by an accepted "
            f"announcement with the same identifier. Maintainers follow the ngit v3 model: the "
            f"repository's owner, plus every key an active M or m role tag (or, without role tags, "
            f"the maintainers tag) of a maintainer's announcement names, once that key's own "
            f"announcement names a maintainer back; moderators (o) and keys that stepped down do "
            f"not count, and the walk is bounded (limitation.maintainer_walk_max_rounds and "
            f"maintainer_walk_max_keys). State events count only from maintainers. Other events "
            f"must tag, or be tagged by, a served event of an accepted repository."
        ),
        "limitation": {
            "max_message_length": settings.max_message_bytes,
            "max_subscriptions": settings.max_subscriptions,
            "max_filters": settings.max_filters,
            "max_limit": settings.max_limit,
            "default_limit": settings.default_limit,
            "max_subid_length": settings.max_subid_length,
            "max_event_tags": settings.max_event_tags,
            "max_content_length": settings.max_content_bytes,
            "created_at_upper_limit": settings.max_created_at_future_s,
            "auth_required": False,
            "payment_required": False,
            "restricted_writes": True,
            # the maintainer walk runs on unauthenticated requests: deeper or wider keys
            # are not maintainers here
            "maintainer_walk_max_rounds": settings.maintainer_walk_max_rounds,
            "maintainer_walk_max_keys": settings.maintainer_walk_max_keys,
            # NIP-77: what one NEG-OPEN may cover and how large one answer may be (before hex)
            **({"negentropy_max_records": settings.negentropy_max_records,
                "negentropy_frame_max_bytes": settings.negentropy_frame_max_bytes,
                "negentropy_max_sessions": settings.negentropy_max_sessions}
               if settings.negentropy_enabled else {}),
        },
    }
    # NIP-11's optional fields are left out when unset, not sent empty ("pubkey": "" is not a key)
    for name in ("pubkey", "contact"):
        if not doc[name]:
            del doc[name]
    doc["repo_acceptance_criteria"] += "".join(_criteria_additions(settings))
    if is_curating(settings):
        doc["curation"] = curation(settings)
    return doc


def _criteria_additions(settings: Settings) -> list[str]:
    """What the lists, archive modes and GRASP-06 add to the acceptance criteria, so the
    sentence stays true whatever is on (details in `curation`)."""
    extra: list[str] = []
    if settings.repository_whitelist:
        extra.append(" Only repositories the operator lists are hosted among those that list this service.")
    if settings.archiving:
        extra.append(" Announcements that do not list this service are archived when the operator's archive "
                     "modes take them (see curation).")
    if settings.repository_blacklist or settings.pubkey_blacklist:
        extra.append(" Some repositories or authors are refused whatever else applies.")
    if settings.grasp06_enabled:
        extra.append(f" A pull request (1618/1619) naming no repository served here is accepted when its clone "
                     f"tag names its signer's http(s)://{settings.domain}/prs/<npub>/<identifier>.git, with "
                     f"<identifier> the d of a repository it tags.")
    return extra


def supported_grasps(settings: Settings) -> list[str]:
    """Exactly what is on: GRASP-02 while proactive sync is, GRASP-05 while an archive mode
    is (repos that do not list us are accepted), GRASP-06 while `/prs/` is served."""
    grasps = ["GRASP-01"]
    if settings.peer_sync_enabled and settings.sync_enabled:
        grasps.append("GRASP-02")
    if settings.archiving:
        grasps.append("GRASP-05")
    if settings.grasp06_enabled:
        grasps.append("GRASP-06")
    return grasps
