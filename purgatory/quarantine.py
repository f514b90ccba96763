"""The quarantine repo of an identifier: where fetched objects wait, never served, until the
events that need them are released.

It borrows the served repos' objects (`objects/info/alternates`) and mirrors their branch and
tag tips under `refs/served/`, so a fetch into it tells the upstream what this server already
has: a new state event of a large repo then costs the new commits, not the whole history
again. The borrowing is one way: nothing fetched here is readable from a served repo."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pygit2

SERVED_NAMESPACE = "refs/served/"


class Quarantines:
    """The quarantine directory of each identifier, under `<data_dir>/quarantine`: fetched
    objects wait here, outside the served repos, until their event is released (protocol v2
    serves any object of a repo by id, so unreleased data must not be in one)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, identifier: str) -> Path:
        return self.root / f"{quote(identifier, safe='')}.git"

    async def ensure(self, identifier: str, served: list[Path]) -> Path:
        """The quarantine, created if needed and linked to the identifier's served repos
        (afresh each time: a fetch negotiates with what is served now)."""
        path = self.path(identifier)
        await asyncio.to_thread(_prepare, path, served)
        return path

    async def drop(self, identifier: str) -> None:
        path = self.path(identifier)
        if path.exists():
            await asyncio.to_thread(shutil.rmtree, path, True)


def _prepare(path: Path, served: list[Path]) -> None:
    if not (path / "HEAD").is_file():
        init_quarantine(path)
    link_served(path, served)


def init_quarantine(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    repo = pygit2.init_repository(str(path), bare=True)
    # never served; local copies out of it ask for objects no ref reaches, by id
    repo.config["uploadpack.allowAnySHA1InWant"] = True


def link_served(quarantine: Path, served: list[Path]) -> int:
    """Point the quarantine at the served repos' objects and tips (replacing earlier links,
    as repos come and go). Returns how many tips it mirrors."""
    objects = [str((repo / "objects").resolve()) for repo in served if (repo / "objects").is_dir()]
    _write_alternates(quarantine, objects)
    repo = pygit2.Repository(str(quarantine))
    wanted = _mirror_names(served)
    # only what changed is written: a repo with thousands of tags must not cost thousands of
    # ref writes per fetch
    for name in [r for r in repo.references if r.startswith(SERVED_NAMESPACE)]:
        ref = repo.references[name]
        if wanted.get(name) == ref.target:
            del wanted[name]
        else:
            ref.delete()
    mirrored = sum(1 for r in repo.references if r.startswith(SERVED_NAMESPACE))
    for name, target in wanted.items():
        try:
            repo.references.create(name, target, force=True)
            mirrored += 1
        except (KeyError, ValueError, pygit2.GitError):
            continue  # a ref moved under us; one tip fewer to negotiate with
    return mirrored


def _mirror_names(served: list[Path]) -> dict[str, pygit2.Oid]:
    """refs/served/<repo tag>/heads/... and .../tags/... for every served tip."""
    wanted: dict[str, pygit2.Oid] = {}
    for source in served:
        tag = hashlib.sha256(str(source).encode()).hexdigest()[:12]
        for name, target in _tips(source).items():
            wanted[f"{SERVED_NAMESPACE}{tag}/{name[5:]}"] = target
    return wanted


def _tips(path: Path) -> dict[str, pygit2.Oid]:
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError:
        return {}
    tips: dict[str, pygit2.Oid] = {}
    for name in repo.references:
        if name.startswith(("refs/heads/", "refs/tags/")):
            target = repo.references[name].target
            if isinstance(target, pygit2.Oid):
                tips[name] = target
    return tips


def _write_alternates(quarantine: Path, object_dirs: list[str]) -> None:
    info = quarantine / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    target = info / "alternates"
    if not object_dirs:
        target.unlink(missing_ok=True)
        return
    tmp = info / "alternates.tmp"
    tmp.write_text("".join(f"{d}\n" for d in object_dirs))
    os.replace(tmp, target)
