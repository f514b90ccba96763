"""RepoStore against real bare repos on disk (pygit2 and the git CLI)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import pytest
from nostr_sdk import Keys

from storage.repos import BadRepoPath, RepoError, RepoStore, to_npub, validate_identifier


@pytest.fixture()
def store(tmp_path: Path) -> RepoStore:
    return RepoStore(tmp_path / "repos")


@pytest.fixture()
def owner() -> tuple[str, str]:
    pk = Keys.generate().public_key()
    return pk.to_bech32(), pk.to_hex()


def commit_chain(path: Path, n: int) -> list[str]:
    """n commits on refs/heads/main of a bare repo, each with its own blob; oldest first."""
    repo = pygit2.Repository(str(path))
    sig = pygit2.Signature("t", "t@t", 1700000000, 0)
    parents: list[pygit2.Oid] = []
    ids = []
    for i in range(n):
        blob = repo.create_blob(f"content {i}\n".encode())
        builder = repo.TreeBuilder()
        builder.insert("f.txt", blob, pygit2.enums.FileMode.BLOB)
        oid = repo.create_commit(None, sig, sig, f"c{i}", builder.write(), parents)
        parents = [oid]
        ids.append(str(oid))
    return ids


@pytest.mark.parametrize("raw,decoded", [("repo", "repo"), ("my%20repo", "my repo"),
                                         ("a.b-c_d", "a.b-c_d"), ("%252e", "%2e")])
def test_identifier_accepted(raw: str, decoded: str) -> None:
    assert validate_identifier(raw) == decoded


@pytest.mark.parametrize("raw", ["", ".", "..", "%2e%2e", "%2E", "a/b", "a%2fb", "a%5Cb", "a\\b",
                                 "a%00b", "%ff", "x" * 252])
def test_identifier_refused(raw: str) -> None:
    with pytest.raises(BadRepoPath):
        validate_identifier(raw)


def test_owner_forms(owner: tuple[str, str], store: RepoStore) -> None:
    npub, hexkey = owner
    assert to_npub(hexkey) == npub and to_npub(npub) == npub
    assert store.path(npub, "r") == store.path(hexkey, "r") == store.repos_dir / npub / "r.git"
    for bad in ("npub1abc", "zz" * 32, "abc", npub[:-1] + ("q" if npub[-1] != "q" else "p")):
        with pytest.raises(BadRepoPath):
            store.path(bad, "r")
    with pytest.raises(BadRepoPath):
        store.path(npub, "..")


def test_ensure_is_idempotent_and_configured(store: RepoStore, owner: tuple[str, str]) -> None:
    npub, hexkey = owner
    assert not store.exists(npub, "r")
    path = store.ensure(hexkey, "r")
    assert store.exists(npub, "r") and store.ensure(npub, "r") == path
    cfg = pygit2.Repository(str(path)).config
    assert cfg.get_bool("uploadpack.allowTipSHA1InWant")
    assert cfg.get_bool("uploadpack.allowReachableSHA1InWant")
    assert cfg.get_bool("uploadpack.allowFilter")
    assert "uploadpack.allowAnySHA1InWant" not in cfg
    assert cfg.get_int("transfer.unpackLimit") == 1
    assert not cfg.get_bool("core.logAllRefUpdates")
    assert store.head(path) == "refs/heads/main"
    store.remove(npub, "r")
    assert not store.exists(npub, "r") and not path.exists()


def test_refs_set_refs_and_head(store: RepoStore, owner: tuple[str, str]) -> None:
    path = store.ensure(owner[0], "r")
    ids = commit_chain(path, 3)
    store.set_ref(path, "refs/heads/old", ids[0])
    store.set_ref(path, "refs/nostr/" + "e" * 64, ids[1])
    assert store.refs(path) == {"refs/heads/old": ids[0]}
    store.set_refs(path, {"refs/heads/dev": ids[2], "refs/tags/v1": ids[1]}, "refs/heads/dev")
    assert store.refs(path) == {"refs/heads/dev": ids[2], "refs/tags/v1": ids[1]}
    assert store.get_ref(path, "refs/nostr/" + "e" * 64) == ids[1]  # other namespaces untouched
    assert store.head(path) == "refs/heads/dev"
    assert store.delete_ref(path, "refs/tags/v1") and not store.delete_ref(path, "refs/tags/v1")
    with pytest.raises(RepoError):
        store.set_ref(path, "refs/heads/x", "d" * 40)
    with pytest.raises(RepoError):  # missing object: nothing changes
        store.set_refs(path, {"refs/heads/main": "d" * 40}, None)
    assert store.refs(path) == {"refs/heads/dev": ids[2]}


def test_missing_objects(store: RepoStore, owner: tuple[str, str]) -> None:
    path = store.ensure(owner[0], "r")
    ids = commit_chain(path, 2)
    assert store.has_objects(path, ids)
    assert store.missing(path, ids + ["d" * 40, "nothex"]) == {"d" * 40, "nothex"}


async def test_copy_objects_between_repos(store: RepoStore, owner: tuple[str, str]) -> None:
    src = store.ensure(owner[0], "src")
    dst = store.ensure(Keys.generate().public_key().to_hex(), "src")
    ids = commit_chain(src, 5)
    store.set_ref(src, "refs/heads/main", ids[-1])
    await store.copy_objects_async(src, dst, [ids[2]])  # a non-tip commit, by id
    assert store.has_objects(dst, ids[:3]) and store.missing(dst, ids[3:]) == set(ids[3:])
    assert store.refs(dst) == {}  # objects only; refs are the caller's business
    await store.copy_objects_async(src, dst, [ids[-1]])
    store.set_refs(dst, {"refs/heads/main": ids[-1]}, "refs/heads/main")
    fsck = subprocess.run(["git", "-C", str(dst), "fsck", "--connectivity-only"],
                          capture_output=True, text=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
    assert fsck.returncode == 0, fsck.stderr
    with pytest.raises(RepoError):
        store.copy_objects(src, dst, ["d" * 40])


async def test_copies_get_gits_housekeeping(store: RepoStore, owner: tuple[str, str]) -> None:
    """Each copy adds a pack; past gc.autoPackLimit, git's own gc --auto consolidates them
    (as after a push), so a repo updated only by sync does not pile up packs."""
    from tests.daemon import wait_for

    src = store.ensure(owner[0], "busy")
    dst = store.ensure(Keys.generate().public_key().to_hex(), "busy")
    pygit2.Repository(str(dst)).config["gc.autoPackLimit"] = 3
    ids = commit_chain(src, 6)
    store.set_ref(src, "refs/heads/main", ids[-1])
    packs = lambda: len(list((dst / "objects" / "pack").glob("*.pack")))  # noqa: E731
    most = 0
    for oid in ids:
        await store.copy_objects_async(src, dst, [oid])
        store.set_refs(dst, {"refs/heads/main": oid}, "refs/heads/main")
        most = max(most, packs())
    # gc runs detached, in the background
    await wait_for(lambda: packs() <= 3, f"at most 3 packs after {len(ids)} copies (up to {most} seen)",
                   timeout=30, every=0.1)
    assert store.has_objects(dst, ids)
