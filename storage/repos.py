"""The bare repositories, `<repos_dir>/<npub>/<identifier>.git`, read and updated with pygit2.

Names come from URLs and events, so every path is built only from a validated npub and a
validated identifier and checked to stay under `repos_dir`: a crafted identifier must never
reach a directory outside the data dir. Ref reads are cheap and synchronous; anything that may
touch many objects (copying between repos, removing a tree) has an async wrapper running in a
thread so the event loop keeps serving."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import weakref
from pathlib import Path
from urllib.parse import unquote

import pygit2
import structlog

from storage.nostr import nip34
from storage.nostr.event import is_hex

log = structlog.get_logger(__name__)

BRANCH_AND_TAG_PREFIXES = nip34.BRANCH_AND_TAG

# Config every repo carries, re-applied by `ensure` so older repos pick up changes.
# uploadpack.allowAnySHA1InWant must stay UNSET: git treats `false` as clearing the tip and
# reachable bits too (they share one bitmask), so writing it would undo the two lines below.
REPO_CONFIG: dict[str, str | bool | int] = {
    # keep every push as a pack: no loose-object explosion, fewer files, faster fetch-back
    "transfer.unpackLimit": 1,
    # clients (and other GRASP servers syncing from us) fetch PR tips and old commits by id
    "uploadpack.allowTipSHA1InWant": True,
    "uploadpack.allowReachableSHA1InWant": True,
    "uploadpack.allowFilter": True,
    # ref alignment to a state event may delete the branch HEAD points at
    "receive.denyDeleteCurrent": False,
    "receive.denyDeletes": False,
    "receive.denyNonFastForwards": False,
    "core.logAllRefUpdates": False,
}


class BadRepoPath(ValueError):
    """An npub or identifier that cannot name a repo here; the message is client-facing."""


class RepoError(RuntimeError):
    """A git operation on a repo failed (missing objects, failed fetch)."""


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


class RepoStore:
    """All bare repos under one directory."""

    def __init__(self, repos_dir: Path, git_binary: str = "git", pending_dir: Path | None = None) -> None:
        self.repos_dir = Path(repos_dir).resolve()
        self.git_binary = git_binary
        # refs/nostr pushes land beside the served repos, in repos that are never served
        self.pending_dir = Path(pending_dir).resolve() if pending_dir else self.repos_dir.parent / "pending"
        self._locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, path: Path) -> asyncio.Lock:
        """The one lock over a repo's refs. Pushes, alignment to a state, PR-ref writes and
        the integrity pass all take it: a push checks the refs git left against the refs it
        authorised, so nothing else may move them in between (it would be "restored")."""
        lock = self._locks.get(path)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[path] = lock
        return lock

    # --- naming -----------------------------------------------------------------------
    def path(self, npub_or_hex: str, identifier: str) -> Path:
        """The repo path for an owner and an already-decoded identifier (validated again)."""
        npub = to_npub(npub_or_hex)
        ident = check_identifier(identifier)
        # no resolve(): it costs syscalls on every call, and both parts are single checked
        # path components (bech32 characters; no separators, NUL, "." or ".."), so the join
        # cannot leave repos_dir, and nothing here creates symlinks
        candidate = self.repos_dir / npub / f"{ident}.git"
        if candidate.parent.parent != self.repos_dir:
            raise BadRepoPath("repository path escapes the data directory")
        return candidate

    def exists(self, npub_or_hex: str, identifier: str) -> bool:
        try:
            path = self.path(npub_or_hex, identifier)
        except BadRepoPath:
            return False
        return (path / "HEAD").is_file()

    # --- lifecycle --------------------------------------------------------------------
    def ensure(self, npub_or_hex: str, identifier: str) -> Path:
        """Create the bare repo if needed and (re)apply our config; safe to call repeatedly."""
        path = self.path(npub_or_hex, identifier)
        if (path / "HEAD").is_file():
            repo = pygit2.Repository(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
            log.info("repo_created", path=str(path))
        _apply_config(repo, path, REPO_CONFIG)
        if "uploadpack.allowAnySHA1InWant" in repo.config:
            del repo.config["uploadpack.allowAnySHA1InWant"]
        return path

    def remove(self, npub_or_hex: str, identifier: str) -> None:
        self.remove_pending(npub_or_hex, identifier)
        _remove_tree(self.path(npub_or_hex, identifier))

    # --- the pending area: refs/nostr pushes nobody has signed yet ---------------------
    def pending_path(self, npub_or_hex: str, identifier: str) -> Path:
        """Where `refs/nostr/<id>` pushes to this repo wait until a PR event claims them.

        Anyone may push a PR ref, and protocol v2 serves any object of a repo by id, so
        those objects must not enter the served repo before a signed event names them. The
        pending repo borrows the served repo's objects (alternates: the client's pack is
        thin against what it saw advertised), never the other way round."""
        served = self.path(npub_or_hex, identifier)
        return self.pending_dir / served.parent.name / served.name

    def ensure_pending(self, npub_or_hex: str, identifier: str) -> Path:
        path = self.pending_path(npub_or_hex, identifier)
        served = self.path(npub_or_hex, identifier)
        if not (path / "HEAD").is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True)
            # receive.autogc off: the pending repo is removed whole once its refs are claimed or gone
            _apply_config(repo, path, {"transfer.unpackLimit": 1, "core.logAllRefUpdates": False,
                                       "receive.autogc": False})
        info = path / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{(served / 'objects').resolve()}\n")
        return path

    def pending_exists(self, npub_or_hex: str, identifier: str) -> bool:
        try:
            return (self.pending_path(npub_or_hex, identifier) / "HEAD").is_file()
        except BadRepoPath:
            return False

    def pending_refs(self, npub_or_hex: str, identifier: str) -> dict[str, str]:
        """The PR refs waiting in a repo's pending area ({} when it has none)."""
        path = self.pending_path(npub_or_hex, identifier)
        return self.all_refs(path) if (path / "HEAD").is_file() else {}

    def drop_pending_ref(self, npub_or_hex: str, identifier: str, name: str) -> bool:
        """Remove one waiting PR ref; the pending repo goes with its last ref, and with it
        every object only unclaimed pushes brought. True when the ref was there."""
        path = self.pending_path(npub_or_hex, identifier)
        if not (path / "HEAD").is_file():
            return False
        found = self.delete_ref(path, name)
        if not self.all_refs(path):
            self.remove_pending(npub_or_hex, identifier)
        return found

    def remove_pending(self, npub_or_hex: str, identifier: str) -> None:
        _remove_tree(self.pending_path(npub_or_hex, identifier))

    def remove_empty_pending(self) -> int:
        """Pending repos left without a ref (a crash between a claim and the removal): gone."""
        removed = 0
        if not self.pending_dir.is_dir():
            return 0
        for path in self.pending_dir.glob("*/*.git"):
            try:
                empty = not self.all_refs(path)
            except pygit2.GitError:
                empty = True
            if empty:
                _remove_tree(path)
                removed += 1
        return removed

    async def remove_async(self, npub_or_hex: str, identifier: str) -> None:
        await asyncio.to_thread(self.remove, npub_or_hex, identifier)

    # --- refs -------------------------------------------------------------------------
    @staticmethod
    def refs(path: Path) -> dict[str, str]:
        """Branches and tags -> oid, unpeeled: exactly what a state event lists."""
        repo = pygit2.Repository(str(path))
        out: dict[str, str] = {}
        for name in repo.references:
            if not name.startswith(BRANCH_AND_TAG_PREFIXES):
                continue
            ref = repo.references[name]
            if ref.type == pygit2.enums.ReferenceType.DIRECT:
                out[name] = str(ref.target)
        return out

    @staticmethod
    def all_refs(path: Path) -> dict[str, str]:
        """Every direct ref (any namespace) -> oid: what a push is checked against afterwards."""
        repo = pygit2.Repository(str(path))
        out: dict[str, str] = {}
        for name in repo.references:
            ref = repo.references[name]
            if ref.type == pygit2.enums.ReferenceType.DIRECT:
                out[name] = str(ref.target)
        return out

    @staticmethod
    def restore_refs(path: Path, before: dict[str, str]) -> list[str]:
        """Put every ref back as it was in `before` (complete map); returns the refs changed.
        The objects are there: they were before."""
        repo = pygit2.Repository(str(path))
        now = RepoStore.all_refs(path)
        changed = sorted(name for name in set(now) | set(before) if now.get(name) != before.get(name))
        for name in changed:
            if name in before:
                repo.references.create(name, pygit2.Oid(hex=before[name]), force=True)
            else:
                repo.references.delete(name)
        return changed

    @staticmethod
    def get_ref(path: Path, name: str) -> str | None:
        repo = pygit2.Repository(str(path))
        ref = repo.references.get(name)
        if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
            return None
        return str(ref.target)

    @staticmethod
    def head(path: Path) -> str | None:
        """The branch HEAD points at (it may not exist yet), or None if HEAD is detached."""
        repo = pygit2.Repository(str(path))
        ref = repo.references.get("HEAD")
        if ref is None or ref.type != pygit2.enums.ReferenceType.SYMBOLIC:
            return None
        return str(ref.target)

    @staticmethod
    def set_ref(path: Path, name: str, oid: str) -> None:
        """Point a ref at an oid; libgit2 refuses an oid whose object is not in the repo."""
        repo = pygit2.Repository(str(path))
        try:
            repo.references.create(name, pygit2.Oid(hex=oid), force=True)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"cannot set {name} to {oid}: {exc}") from None

    @staticmethod
    def delete_ref(path: Path, name: str) -> bool:
        repo = pygit2.Repository(str(path))
        if name not in repo.references:
            return False
        repo.references.delete(name)
        return True

    @classmethod
    def set_refs(cls, path: Path, refs: dict[str, str], head: str | None) -> None:
        """Make branches and tags exactly `refs` (a state event's) and point HEAD at `head`.

        Objects are checked first so a missing one leaves the repo untouched rather than half
        aligned."""
        bad = [name for name in refs if not name.startswith(BRANCH_AND_TAG_PREFIXES)]
        if bad:
            raise RepoError(f"only branches and tags can be aligned, got {bad[0]}")
        missing = cls.missing(path, refs.values())
        if missing:
            raise RepoError(f"objects missing for alignment: {sorted(missing)[:3]}")
        repo = pygit2.Repository(str(path))
        current = cls.refs(path)
        for name in current.keys() - refs.keys():
            repo.references.delete(name)
        for name, oid in refs.items():
            if current.get(name) != oid:
                repo.references.create(name, pygit2.Oid(hex=oid), force=True)
        if head is not None:
            if not head.startswith("refs/heads/"):
                raise RepoError(f"HEAD must point at a branch, got {head}")
            repo.references.create("HEAD", head, force=True)

    # --- objects ----------------------------------------------------------------------
    @staticmethod
    def packs(path: Path) -> set[str]:
        """The pack files now (every push is kept as one pack: transfer.unpackLimit=1)."""
        pack_dir = path / "objects" / "pack"
        return {p.name for p in pack_dir.iterdir()} if pack_dir.is_dir() else set()

    def drop_unreachable_in(self, path: Path, packs: set[str], old_tips: set[str]) -> int:
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
                out = subprocess.run([self.git_binary, "show-index"], stdin=handle, capture_output=True, check=True)
            objects.update(line.split()[1].decode() for line in out.stdout.splitlines() if line.strip())
        present_old = sorted(set(old_tips) - self.missing(path, old_tips))
        walk = subprocess.run(
            [self.git_binary, "-C", str(path), "rev-list", "--objects", "--all", "--stdin"],
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
            subprocess.run([self.git_binary, "-C", str(path), "pack-objects", "-q", str(pack_dir / "pack")],
                           input="".join(f"{oid}\n" for oid in keep).encode(), capture_output=True, check=True)
        for stem in stems:
            for leftover in pack_dir.glob(f"{stem}.*"):
                leftover.unlink(missing_ok=True)
        log.warning("unreachable_objects_dropped", repo=str(path), objects=len(extra), kept=len(keep))
        return len(extra)

    @classmethod
    def remove_packs_since(cls, path: Path, before: set[str]) -> list[str]:
        """Remove the pack files written after `before` was taken: the objects of a push
        whose refs did not land (or were put back) must not stay servable by id. Only safe
        under the repo lock, where nothing else writes objects into this repo."""
        removed = sorted(cls.packs(path) - before)
        for name in removed:
            (path / "objects" / "pack" / name).unlink(missing_ok=True)
        if removed:
            log.warning("packs_removed", repo=str(path), files=removed)
        return removed

    @staticmethod
    def missing(path: Path, oids: object) -> set[str]:
        """Which of these oids have no object here (malformed oids count as missing)."""
        repo = pygit2.Repository(str(path))
        out: set[str] = set()
        for oid in oids:  # type: ignore[attr-defined]
            if not nip34.is_oid(oid) or oid not in repo:
                out.add(str(oid))
        return out

    @classmethod
    def has_objects(cls, path: Path, oids: object) -> bool:
        return not cls.missing(path, oids)

    def copy_objects(self, src_path: Path, dst_path: Path, oids: list[str]) -> None:
        """Make everything reachable from `oids` in src available in dst.

        Done with `git fetch <src-path> <oid>...` rather than walking objects in pygit2: git
        negotiates what dst already has, sends one pack with deltas, checks connectivity
        before it finishes, and handles repos of any size without Python touching each
        object. Refs in dst are not changed (the caller aligns them)."""
        needed = sorted(self.missing(dst_path, oids))
        if not needed:
            return
        still_missing_in_src = self.missing(src_path, needed)
        if still_missing_in_src:
            raise RepoError(f"source repo lacks {sorted(still_missing_in_src)[:3]}")
        cmd = [
            self.git_binary, "-C", str(dst_path),
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

    def housekeeping(self, path: Path) -> None:
        """git's `gc --auto` (nothing unless packs or loose objects piled up), in the
        foreground: run it under the repo lock, like every other writer of packs."""
        cmd = [self.git_binary, "-C", str(path), "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0:
            log.warning("housekeeping_failed", repo=str(path), stderr=proc.stderr.decode(errors="replace")[-300:])

    async def copy_objects_async(self, src_path: Path, dst_path: Path, oids: list[str]) -> None:
        await asyncio.to_thread(self.copy_objects, src_path, dst_path, oids)

    async def set_refs_async(self, path: Path, refs: dict[str, str], head: str | None) -> None:
        await asyncio.to_thread(self.set_refs, path, refs, head)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # drop the owner dir once its last repo is gone
    except OSError:
        pass


def _config_text(value: str | bool | int) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _apply_config(repo: pygit2.Repository, path: Path, wanted: dict[str, str | bool | int]) -> None:
    """Set what differs, in one write of the config file: libgit2 rewrites the whole file
    for every key set, and a new repo needs all of them."""
    have = {entry.name.lower(): entry.value for entry in repo.config}
    missing = {k: v for k, v in wanted.items() if have.get(k.lower()) != _config_text(v)}
    if not missing:
        return
    if len(missing) == 1:
        key, value = next(iter(missing.items()))
        repo.config[key] = value
        return
    sections: dict[str, list[str]] = {}
    for key, value in missing.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(f"\t{name} = {_config_text(value)}\n")
    with open(path / "config", "a", encoding="utf-8") as config:
        for section, lines in sections.items():
            config.write(f"[{section}]\n{''.join(lines)}")
