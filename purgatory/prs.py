"""GRASP-06 contributor repos (`/prs/<npub>/<identifier>.git`): which PR events name one,
and how their PR-ref placeholders are told apart from those of announced repos. Pure.

A PR (1618) or PR update (1619) is a GRASP-06 PR here when one of its `clone` URLs names
this service's `/prs/<npub of its signer>/<identifier>.git` and `identifier` is the `d` of
a repository it tags: then its tip is looked for in that contributor repo, and once the
event is released its ref is written there (served, as a contributor's fork is) and mirrored
into the announced repos of the identifier. A URL naming someone else's `/prs/` path does
not count: a contributor repo speaks only for its own npub."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from storage.nostr import nip34
from storage.nostr.event import Event

#: a placeholder's repo key for a ref pushed to a contributor repo (announced ones are
#: `<owner>/<identifier>`)
PRS_KEY_PREFIX = "prs:"


def prs_key(pubkey: str, identifier: str) -> str:
    return f"{PRS_KEY_PREFIX}{pubkey}/{identifier}"


def parse_repo_key(key: str) -> tuple[bool, str, str]:
    """(is a contributor repo, owner, identifier) of a placeholder's repo key."""
    prs = key.startswith(PRS_KEY_PREFIX)
    owner, _, identifier = key.removeprefix(PRS_KEY_PREFIX).partition("/")
    return prs, owner, identifier


def prs_url_path(url: str, domain: str) -> tuple[str, str] | None:
    """(npub, identifier) of an http(s) URL naming `/prs/<npub>/<identifier>.git` on `domain`."""
    if not nip34.service_urls_match(url, domain):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    segments = parts.path.rstrip("/").split("/")
    if len(segments) != 4 or segments[0] != "" or segments[1] != "prs" or not segments[3].endswith(".git"):
        return None
    return segments[2].lower(), unquote(segments[3][: -len(".git")])


def repo_identifiers(event: Event, root: Event | None = None) -> list[str]:
    """The `d` of every repository a PR tags (for an update, its root PR's too)."""
    coords = nip34.pr_repo_coordinates(event) + (nip34.pr_repo_coordinates(root) if root is not None else [])
    out: list[str] = []
    for coord in coords:
        parsed = nip34.parse_coordinate(coord)
        if parsed is not None and parsed[0] == nip34.ANNOUNCEMENT and parsed[2] not in out:
            out.append(parsed[2])
    return out


def prs_target(event: Event, domain: str, root: Event | None = None) -> str | None:
    """The identifier of the signer's contributor repo here that this PR names in `clone`,
    when that identifier is the `d` of a repository it tags; None otherwise."""
    if event.kind not in (nip34.PR, nip34.PR_UPDATE):
        return None
    signer = nip34.hex_to_npub(event.pubkey)
    identifiers = repo_identifiers(event, root)
    for url in nip34.clone_urls(event):
        found = prs_url_path(url, domain)
        if found is not None and found[0] == signer and found[1] in identifiers:
            return found[1]
    return None
