"""The git config every repo carries, and how it is written: only what differs, in one
write of the config file."""

from __future__ import annotations

from pathlib import Path

import pygit2

# Config every repo carries, re-applied by `RepoStore.ensure` so older repos pick up changes.
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


def _config_text(value: str | bool | int) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def apply_config(repo: pygit2.Repository, path: Path, wanted: dict[str, str | bool | int]) -> None:
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


#: A pending repo's config (receive.autogc off: it is removed whole once its refs are claimed or gone).
PENDING_REPO_CONFIG: dict[str, str | bool | int] = {"transfer.unpackLimit": 1, "core.logAllRefUpdates": False,
                                                    "receive.autogc": False}
