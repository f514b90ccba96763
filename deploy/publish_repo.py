#!/usr/bin/env python3
"""Publish a local git repository on a GRASP relay: announcement, state, push.

The worked example of the README's "Publish a repository here", with nostr-sdk (the Nostr
library this relay is built with) as the signing tool:

    NOSTR_SECRET_KEY=nsec1... python deploy/publish_repo.py \\
        --relay wss://git.example.org --identifier my-project --repo ~/src/my-project

1. a repository announcement (kind 30617) naming this relay in `clone` and `relays`;
2. a repository state (kind 30618) listing every branch and tag exactly as
   `git show-ref --heads --tags` prints them: an annotated tag is listed with the id of its
   tag object, not of the commit it points at, because that is what `refs/tags/<name>`
   holds once pushed; and HEAD;
3. `git push` of those refs to the relay, which accepts it because the refs then equal the
   signed state.

Run it again after new commits: it publishes a newer state, then pushes. The secret key is
read from the environment (NOSTR_SECRET_KEY, nsec or hex), not from the command line, where
other users could see it. Needs `pip install nostr-sdk` and git."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """Where the repo goes: the relay's websocket URL and the clone URL derived from it."""

    relay: str
    clone: str
    domain: str


def target_of(relay: str, npub: str, identifier: str) -> Target:
    parts = urlsplit(relay)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise SystemExit(f"--relay must be ws://host[:port] or wss://host[:port], got {relay!r}")
    http = "https" if parts.scheme == "wss" else "http"
    return Target(f"{parts.scheme}://{parts.netloc}", f"{http}://{parts.netloc}/{npub}/{identifier}.git",
                  parts.netloc)


def git_out(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def local_refs(repo: Path) -> tuple[dict[str, str], str | None]:
    """Branches and tags as `git show-ref --heads --tags` prints them (annotated tags: the
    tag object's id), and the branch HEAD names."""
    refs: dict[str, str] = {}
    for line in git_out(repo, "show-ref", "--heads", "--tags").splitlines():
        oid, name = line.split(" ", 1)
        refs[name] = oid
    head = git_out(repo, "symbolic-ref", "-q", "HEAD").strip() or None
    return refs, head


async def publish(target: Target, keys: object, identifier: str, builders: list[tuple[int, object]]) -> bool:
    """Send each event, signed with `created_at` after the newest one of the same kind the
    relay has for this repo: a run seconds after the previous one still replaces it."""
    from datetime import timedelta

    from nostr_sdk import Client, Filter, Kind, RelayUrl, ReqTarget, Timestamp

    client = Client()
    await client.add_relay(RelayUrl.parse(target.relay))
    await client.connect()
    try:
        author = keys.public_key()  # type: ignore[attr-defined]
        mine = Filter().kinds([Kind(30617), Kind(30618)]).author(author).identifier(identifier)
        known = await client.fetch_events(ReqTarget.auto([mine]), timeout=timedelta(seconds=10))
        newest = {e.kind().as_u16(): e.created_at().as_secs() for e in known}
        events = []
        for kind, builder in builders:
            at = max(Timestamp.now().as_secs(), newest.get(kind, 0) + 1)
            events.append(builder.custom_created_at(Timestamp.from_secs(at)).finalize(keys))  # type: ignore[attr-defined]
        for event in events:
            output = await client.send_event(event)  # type: ignore[attr-defined]
            kind = event.kind().as_u16()  # type: ignore[attr-defined]
            if not output.success:
                reasons = "; ".join(output.failed.values()) or "no answer"
                sys.stderr.write(f"kind {kind} {output.id.to_hex()[:12]}: refused: {reasons}\n")
                return False
            sys.stdout.write(f"kind {kind} {output.id.to_hex()} accepted by {target.relay}\n")
    finally:
        await client.disconnect()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish a git repository on a GRASP relay "
                                     "(secret key in NOSTR_SECRET_KEY)")
    parser.add_argument("--relay", required=True, help="the relay, e.g. wss://git.example.org")
    parser.add_argument("--identifier", required=True, help="the repository's identifier (d tag)")
    parser.add_argument("--repo", default=".", type=Path, help="the local repository (default: .)")
    parser.add_argument("--name", help="display name (default: the identifier)")
    parser.add_argument("--description", default="", help="one-line description")
    parser.add_argument("--no-push", action="store_true", help="publish the events only")
    args = parser.parse_args(argv)

    from nostr_sdk import EventBuilder, Keys, Kind, Tag

    secret = os.environ.get("NOSTR_SECRET_KEY", "").strip()
    if not secret:
        sys.stderr.write("set NOSTR_SECRET_KEY to your nsec (or hex secret key)\n")
        return 2
    keys = Keys.parse(secret)
    npub = keys.public_key().to_bech32()
    target = target_of(args.relay, npub, args.identifier)
    refs, head = local_refs(args.repo)
    if not refs:
        sys.stderr.write(f"{args.repo} has no branches or tags to publish\n")
        return 2

    announcement = EventBuilder(Kind(30617), "").tags([
        Tag.parse(["d", args.identifier]),
        Tag.parse(["name", args.name or args.identifier]),
        Tag.parse(["description", args.description]),
        Tag.parse(["clone", target.clone]),
        Tag.parse(["relays", target.relay]),
    ])
    state_tags = [Tag.parse(["d", args.identifier])] + [Tag.parse([name, oid]) for name, oid in sorted(refs.items())]
    if head is not None:
        state_tags.append(Tag.parse(["HEAD", f"ref: {head}"]))
    state = EventBuilder(Kind(30618), "").tags(state_tags)

    if not asyncio.run(publish(target, keys, args.identifier, [(30617, announcement), (30618, state)])):
        return 1
    if args.no_push:
        return 0
    refspecs = [f"+{name}:{name}" for name in sorted(refs)]
    done = subprocess.run(["git", "-C", str(args.repo), "push", "--porcelain", target.clone, *refspecs], check=False)
    if done.returncode != 0:
        sys.stderr.write("the push was refused: git printed the relay's reason above\n")
        return 1
    sys.stdout.write(f"published: git clone {target.clone}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
