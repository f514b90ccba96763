"""The push promise as a property, through real `git receive-pack` on a real bare repo behind
GitHttp on uvicorn: for random command lists (duplicates, wrong old ids, creates, deletes,
no-ops, other namespaces, objects that do not exist) against random refs and random signed
states, the repo's branches and tags afterwards are either what they were before the push
or exactly one of the signed states. Never anything else; and PR refs never reach the
served repo."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from relay.git.pktline import FLUSH, RefUpdate, encode
from storage.repos import RepoStore
from tests.test_git_http import Server, env, git, make_work, server  # noqa: F401 - fixtures

Z = "0" * 40
ABSENT = "d" * 40  # an object nobody has
BRANCHES = ["refs/heads/main", "refs/heads/side", "refs/tags/v1"]
OTHER = [f"refs/nostr/{'e' * 64}", "refs/other/x"]


@pytest.fixture(scope="module")
def pool(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bytes]:  # noqa: F811
    """A served repo that holds the objects of four commits (no refs), and one pack of them
    all, sent with every push."""
    import os
    import subprocess

    tmp = tmp_path_factory.mktemp("pool")
    home = tmp / "home"
    home.mkdir()
    genv = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    work = tmp / "w"
    ids = make_work(genv, work, commits=3)
    git(genv, "checkout", "-q", "-b", "other", ids[0], cwd=work)
    (work / "o.txt").write_text("other\n")
    git(genv, "add", ".", cwd=work)
    git(genv, "commit", "-q", "-m", "other", cwd=work)
    ids.append(git(genv, "rev-parse", "HEAD", cwd=work).stdout.strip())
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work, env=genv, check=True,
                          input="".join(f"{i}\n" for i in ids).encode(), capture_output=True).stdout
    path = server.store.ensure(server.npub, "property")
    git(genv, "-C", str(path), "fetch", "-q", str(work), "+refs/heads/*:refs/seed/*")
    RepoStore.restore_refs(path, {})
    return path, ids, pack


def _commands(updates: list[RefUpdate]) -> bytes:
    out = b""
    for i, u in enumerate(updates):
        line = f"{u.old} {u.new} {u.ref}"
        out += encode(f"{line}\0report-status\n" if i == 0 else f"{line}\n")
    return out + FLUSH


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, str], list[RefUpdate], list[dict[str, str]]]:
    commit_ix = st.integers(0, 3)
    before = {name: f"@{draw(commit_ix)}" for name in draw(st.lists(st.sampled_from(BRANCHES), unique=True))}
    count = draw(st.integers(1, 4))
    updates = []
    for _ in range(count):
        # mostly well-formed commands, so that many pushes are authorised and land; the rest
        # are what an attacker sends
        ref = draw(st.sampled_from(BRANCHES * 3 + OTHER))
        old = draw(st.sampled_from(["current"] * 6 + ["zero", "@0", "@1", "@2", "@3", "absent"]))
        new = draw(st.sampled_from(["zero", "@0", "@1", "@2", "@3", "@0", "@1", "@2", "@3", "absent", "current"]))
        updates.append(RefUpdate(old, new, ref))
    states = [
        {name: f"@{draw(commit_ix)}" for name in draw(st.lists(st.sampled_from(BRANCHES), unique=True))}
        for _ in range(draw(st.integers(0, 2)))
    ]
    if draw(st.integers(0, 9)) < 7:
        states.append({"apply": "yes"})  # stands for "the state that this push would produce"
    return before, updates, states


def _resolve(token: str, ids: list[str], current: str | None) -> str:
    if token == "zero":
        return Z
    if token == "absent":
        return ABSENT
    if token == "current":
        return current or Z
    return ids[int(token[1:])] if token.startswith("@") else token


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=scenario())
def test_a_push_leaves_the_refs_before_or_a_signed_state(server: Server, pool, case) -> None:  # noqa: F811
    path, ids, pack = pool
    raw_before, raw_updates, raw_states = case
    before = {name: _resolve(v, ids, None) for name, v in raw_before.items()}
    updates = [RefUpdate(_resolve(u.old, ids, before.get(u.ref)), _resolve(u.new, ids, before.get(u.ref)), u.ref)
               for u in raw_updates]
    states: list[dict[str, str]] = []
    for raw in raw_states:
        if raw == {"apply": "yes"}:  # the naive "apply every command in order" result
            after = dict(before)
            for u in updates:
                if u.ref in BRANCHES:
                    if u.new == Z:
                        after.pop(u.ref, None)
                    else:
                        after[u.ref] = u.new
            states.append(after)
        else:
            states.append({name: _resolve(v, ids, None) for name, v in raw.items()})
    RepoStore.restore_refs(path, before)
    server.policy.allow_all = False
    server.policy.candidates = [(f"{i:064x}", s) for i, s in enumerate(states)]
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("POST", f"/{server.npub}/property.git/git-receive-pack", body=_commands(updates) + pack,
                     headers={"Content-Type": "application/x-git-receive-pack-request"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 400), resp.status
    finally:
        conn.close()
    left = RepoStore.all_refs(path)
    branches = {k: v for k, v in left.items() if k in BRANCHES}
    assert branches == before or branches in states, (before, updates, states, left)
    event("changed" if branches != before else "unchanged")
    assert set(left) <= set(BRANCHES), f"only branches and tags may be in the served repo: {left}"
