"""Where repositories live: `<repos_dir>/<npub>/<identifier>.git`, and the pending area
beside it (`<pending_dir>/<npub>/<identifier>.git`), named the same way.

Names come from URLs and events, so a path is built only from a validated npub and a
validated identifier and checked to stay under `repos_dir`: a crafted identifier must never
reach a directory outside the data dir. The identifier rules are `nip34.identifier_problem`'s,
shared with the acceptance policy."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote

from storage.nostr import nip34
from storage.nostr.event import is_hex
from storage.repos.errors import BadRepoPath


def validate_identifier(raw: str) -> str:
    """Percent-decode once (URLs carry it encoded) and refuse what could escape the tree."""
    try:
        ident = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRepoPath("repository identifier is not valid UTF-8") from None
    return check_identifier(ident)


def check_identifier(ident: str) -> str:
    """Refuse a decoded identifier that could escape or confuse the repo tree (the rules are
    nip34.identifier_problem's, shared with the acceptance policy)."""
    problem = nip34.identifier_problem(ident)
    if problem is not None:
        raise BadRepoPath(problem)
    return ident


def owner_pubkey(npub: str) -> str:
    """The hex pubkey of a repo path's owner segment, or BadRepoPath: unlike
    `nip34.npub_to_hex` (None for anything not an npub) a path must name a valid npub, and
    hex is refused here because URLs always carry the npub form."""
    pubkey = nip34.npub_to_hex(npub)
    if pubkey is None:
        raise BadRepoPath("owner must be a valid bech32 npub")
    return pubkey


def to_npub(npub_or_hex: str) -> str:
    """Accept either form (events carry hex, URLs carry npub) and return the canonical npub."""
    if npub_or_hex.startswith("npub1"):
        owner_pubkey(npub_or_hex)
        return npub_or_hex
    if not is_hex(npub_or_hex, 64):
        raise BadRepoPath("owner must be an npub or a 64-character hex public key")
    try:
        return nip34.hex_to_npub(npub_or_hex)
    except Exception as exc:  # nostr_sdk raises its own error family (not a curve point)
        raise BadRepoPath(f"invalid public key: {exc}") from None


def repo_path(repos_dir: Path, npub_or_hex: str, identifier: str) -> Path:
    """The repo path for an owner and an already-decoded identifier (validated again)."""
    npub = to_npub(npub_or_hex)
    ident = check_identifier(identifier)
    # no resolve(): it costs syscalls on every call, and both parts are single checked
    # path components (bech32 characters; no separators, NUL, "." or ".."), so the join
    # cannot leave repos_dir, and nothing here creates symlinks
    candidate = repos_dir / npub / f"{ident}.git"
    if candidate.parent.parent != repos_dir:
        raise BadRepoPath("repository path escapes the data directory")
    return candidate


def pending_repo_path(pending_dir: Path, served: Path) -> Path:
    """The pending repo of the served repo at `served`: same owner directory and name."""
    return pending_dir / served.parent.name / served.name


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # drop the owner dir once its last repo is gone
    except OSError:
        pass
