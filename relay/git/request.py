"""What a git smart HTTP request is about and carries: the repo its path names (`RepoRef`,
parsed from the raw path and validated), its body as a capped, paced stream, and the
environment git runs in for it (the client's `Git-Protocol` header, checked)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.git.body import Pace, body_chunks, is_gzip
from relay.git.process_io import Receive
from relay.http import header
from storage.repos import RepoStore, owner_pubkey, validate_identifier

Scope = dict[str, Any]

_GIT_PATH = re.compile(r"^/(npub1[^/]*)/([^/]*)\.git(/.*)?$")
_PROTOCOL_HEADER = re.compile(r"^[A-Za-z0-9=:._-]{1,256}$")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """The repo a request is about: owner in both forms, decoded identifier, disk path."""

    npub: str
    pubkey: str
    identifier: str
    path: Path


def parse_git_path(path: str) -> tuple[str, str, str] | None:
    """Split a request path into (npub, raw identifier, rest) or None if it is not a git path.

    Pass the RAW path (ASGI `raw_path`, still percent-encoded): servers decode `path`, which
    would turn `%2f` into a separator before we could refuse it. The identifier is returned
    still encoded; `validate_identifier` decodes and checks it. `rest` is "" for the bare
    repo URL (the HTML page) and e.g. "/info/refs" or "/git-upload-pack" otherwise."""
    match = _GIT_PATH.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3) or ""


def repo_ref(store: RepoStore, npub: str, raw_identifier: str) -> RepoRef:
    """The repo of a parsed path; BadRepoPath when the npub or identifier cannot name one."""
    identifier = validate_identifier(raw_identifier)
    pubkey = owner_pubkey(npub)
    return RepoRef(npub, pubkey, identifier, store.path(npub, identifier))


def request_body(scope: Scope, receive: Receive, cap: int, gzip_cap: int, pace: Pace) -> AsyncIterator[bytes]:
    """The request body, gunzipped when the client sent it gzipped, capped and paced."""
    return body_chunks(receive, is_gzip(header(scope, b"content-encoding")), cap, gzip_cap, pace)


def git_env(scope: Scope, service: str) -> dict[str, str]:
    """git's environment for this request: no prompts, and the client's Git-Protocol (for
    upload-pack only, and only when it is well formed)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    env.pop("GIT_PROTOCOL", None)
    proto = header(scope, b"git-protocol").decode("latin-1")
    if service == "git-upload-pack" and _PROTOCOL_HEADER.match(proto):
        env["GIT_PROTOCOL"] = proto
    return env
