"""A repository's objects: which are here, copying what a release needs from another repo
(`git fetch` between local paths), and the pack housekeeping that keeps unsigned data from
being served by id (removing a failed push's packs, dropping what no ref reaches, gc)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import structlog

from storage.nostr import nip34
from storage.repos.errors import RepoError

log = structlog.get_logger(__name__)


def packs(path: Path) -> set[str]:
    """The pack files now (every push is kept as one pack: transfer.unpackLimit=1)."""
    pack_dir = path / "objects" / "pack"
    return {p.name for p in pack_dir.iterdir()} if pack_dir.is_dir() else set()


def drop_unreachable_in(git_binary: str, path: Path, packs: set[str], old_tips: set[str]) -> int:
    """Keep of these packs' objects only what the repo's refs now reach; returns how many
    objects went. An authorised push delivers a signed state's commits, but its pack may
    carry anything else besides, and protocol v2 would serve that by id: such objects are
    unsigned data. Objects the refs reached before (`old_tips`) were already here, so only
    what the refs reach beyond them is kept, in one new pack, and the audited packs are
    removed. Under the repo lock only, before any gc (which could merge these packs)."""
    pack_dir = path / "objects" / "pack"
    stems = sorted({name.rsplit(".", 1)[0] for name in packs if (pack_dir / name).exists()})
    indexes = [pack_dir / f"{stem}.idx" for stem in stems if (pack_dir / f"{stem}.idx").is_file()]
    if not indexes:
        return 0
    objects: set[str] = set()
    for idx in indexes:
        with open(idx, "rb") as handle:
            out = subprocess.run([git_binary, "show-index"], stdin=handle, capture_output=True, check=True)
        objects.update(line.split()[1].decode() for line in out.stdout.splitlines() if line.strip())
    present_old = sorted(set(old_tips) - missing(path, old_tips))
    walk = subprocess.run(
        [git_binary, "-C", str(path), "rev-list", "--objects", "--all", "--stdin"],
        input="".join(f"^{oid}\n" for oid in present_old).encode(), capture_output=True, check=False)
    if walk.returncode != 0:
        log.error("pack_audit_failed", repo=str(path), stderr=walk.stderr.decode(errors="replace")[-300:])
        return 0
    reachable = {line.split()[0].decode() for line in walk.stdout.splitlines() if line.strip()}
    extra = objects - reachable
    if not extra:
        return 0
    keep = sorted(objects & reachable)
    if keep:
        subprocess.run([git_binary, "-C", str(path), "pack-objects", "-q", str(pack_dir / "pack")],
                       input="".join(f"{oid}\n" for oid in keep).encode(), capture_output=True, check=True)
    for stem in stems:
        for leftover in pack_dir.glob(f"{stem}.*"):
            leftover.unlink(missing_ok=True)
    log.warning("unreachable_objects_dropped", repo=str(path), objects=len(extra), kept=len(keep))
    return len(extra)


def remove_packs_since(path: Path, before: set[str]) -> list[str]:
    """Remove the pack files written after `before` was taken: the objects of a push
    whose refs did not land (or were put back) must not stay servable by id. Only safe
    under the repo lock, where nothing else writes objects into this repo."""
    removed = sorted(packs(path) - before)
    for name in removed:
        (path / "objects" / "pack" / name).unlink(missing_ok=True)
    if removed:
        log.warning("packs_removed", repo=str(path), files=removed)
    return removed


def missing(path: Path, oids: object) -> set[str]:
    """Which of these oids have no object here (malformed oids count as missing)."""
    repo = pygit2.Repository(str(path))
    out: set[str] = set()
    for oid in oids:  # type: ignore[attr-defined]
        if not nip34.is_oid(oid) or oid not in repo:
            out.add(str(oid))
    return out


def has_objects(path: Path, oids: object) -> bool:
    return not missing(path, oids)


def copy_objects(git_binary: str, src_path: Path, dst_path: Path, oids: list[str]) -> None:
    """Make everything reachable from `oids` in src available in dst.

    Done with `git fetch <src-path> <oid>...` rather than walking objects in pygit2: git
    negotiates what dst already has, sends one pack with deltas, checks connectivity
    before it finishes, and handles repos of any size without Python touching each
    object. Refs in dst are not changed (the caller aligns them)."""
    needed = sorted(missing(dst_path, oids))
    if not needed:
        return
    still_missing_in_src = missing(src_path, needed)
    if still_missing_in_src:
        raise RepoError(f"source repo lacks {sorted(still_missing_in_src)[:3]}")
    cmd = [
        git_binary, "-C", str(dst_path),
        "-c", "protocol.version=2",
        # git's own housekeeping (gc --auto) runs after the copy as it does after a push: a
        # repo only ever updated by sync would otherwise gather a pack per release, and
        # every clone would search them all. Not detached: callers hold the repo lock, and
        # a failed push removes the packs written while it held it, which must be its own
        "-c", "gc.autoDetach=false",
        "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
        str(src_path), *needed,
    ]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RepoError(f"copy from {src_path} failed: {err[-500:]}")
    log.info("objects_copied", src=str(src_path), dst=str(dst_path), tips=len(needed))


def housekeeping(git_binary: str, path: Path) -> None:
    """git's `gc --auto` (nothing unless packs or loose objects piled up), in the
    foreground: run it under the repo lock, like every other writer of packs."""
    cmd = [git_binary, "-C", str(path), "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        log.warning("housekeeping_failed", repo=str(path), stderr=proc.stderr.decode(errors="replace")[-300:])

