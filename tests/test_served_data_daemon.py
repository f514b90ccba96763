"""GRASP-02's hourly pull of missing git data, for repos already served, through the running
daemon: a served repo whose objects were lost on disk (its refs, and its signed state,
still name them) gets them back from the other clone URL of its announcement, a real
`git http-backend` on 127.0.0.1 that counts what it is asked, through the per-domain
throttle of the purgatory's sync. The check interval is set small; the tests wait on the
relay's metrics and logs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from storage.repos import RepoStore
from tests.daemon import ALICE, Client, Daemon, announcement, npub_of, state, wait_log, wait_metric
from tests.gitutil import git, make_repo, push, remote_refs, rev
from tests.test_sync_daemon import FAST_SYNC, wait_served
from tests.upstream import Upstream

CHECK = {**FAST_SYNC, "served_data_check_s": "0.3"}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    started = Upstream(tmp_path / "up", "127.0.0.1").start()
    yield started
    started.stop()


def served_path(daemon: Daemon, identifier: str) -> Path:
    return daemon.data_dir / "repos" / npub_of(ALICE) / f"{identifier}.git"


def lose_objects(path: Path) -> None:
    """What a lost disk or a refs-only restore leaves: the refs, and no object at all."""
    objects = path / "objects"
    for entry in objects.iterdir():
        if entry.name == "pack":
            for pack in entry.iterdir():
                pack.unlink()
        elif len(entry.name) == 2 and entry.is_dir():
            shutil.rmtree(entry)


async def serve_by_push(daemon: Daemon, upstream: Upstream, work: Path, identifier: str) -> dict[str, str]:
    """Announce (clone URLs: this relay and the upstream) and sign a state, then push it here:
    served without any fetch from the upstream."""
    upstream.make_repo(identifier, work)
    refs = {"refs/heads/main": rev(work)}
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, identifier, extra_clone=[upstream.url_for(identifier)])
        st = state(ALICE, identifier, refs)
        for event in (ann, st):
            ok, msg = await client.publish(event)
            assert ok, msg
        result = push(work, f"{daemon.http_url}/{npub_of(ALICE)}/{identifier}.git", "main")
        assert result.returncode == 0, result.stderr
        await wait_served(client, [ann.id, st.id])
    finally:
        await client.close()
    return refs


async def test_served_repo_that_lost_its_objects_gets_them_back(start_daemon, upstream, tmp_path: Path) -> None:
    # the first fetch waits a minute: the push, not the sync, serves the repo
    daemon = start_daemon(**{**CHECK, "sync_user_delay_s": "60"})
    work = make_repo(tmp_path / "w", commits=3)
    refs = await serve_by_push(daemon, upstream, work, "lost")
    assert upstream.fetches == 0
    path = served_path(daemon, "lost")
    mark = daemon.log_length()
    lose_objects(path)
    assert RepoStore.missing(path, refs.values()) == set(refs.values())

    found = await wait_log(daemon, "served_data_missing", after=mark, identifier="lost")
    assert found["objects"] == 1
    await wait_metric(daemon, "grasp_served_data_objects_recovered_total", 1)
    recovered = await wait_log(daemon, "served_data_recovered", after=mark, identifier="lost")
    assert recovered["objects"] == 1
    assert upstream.fetches >= 1  # the objects came from the other clone URL
    assert RepoStore.missing(path, refs.values()) == set()
    assert git("fsck", "--no-dangling", cwd=path).returncode == 0
    url = f"{daemon.http_url}/{npub_of(ALICE)}/lost.git"
    assert {k: v for k, v in remote_refs(url).items() if k != "HEAD"} == refs
    clone = tmp_path / "clone"
    git("clone", "-q", url, str(clone))
    assert rev(clone) == refs["refs/heads/main"]
    assert daemon.metric("grasp_served_data_repos_checked_total") >= 1
    assert daemon.metric("grasp_served_data_repos_missing") == 0
    # nothing waits in a quarantine afterwards
    quarantine = daemon.data_dir / "quarantine"
    assert not quarantine.exists() or not any(quarantine.iterdir())


async def test_the_check_fetches_through_the_per_domain_throttle(start_daemon, upstream, tmp_path: Path) -> None:
    """Three repos on one upstream lose their objects at once; with one fetch per 2 s window
    per domain, the upstream sees their fetches one window apart, never two in a window, and
    every repo still gets its data back."""
    window = 2.0
    daemon = start_daemon(**{**CHECK, "sync_user_delay_s": "60", "throttle_max_per_minute": "1",
                             "throttle_window_s": str(window), "fetch_timeout_s": "10"})
    names = ["t1", "t2", "t3"]
    refs = {}
    for name in names:
        work = make_repo(tmp_path / f"w-{name}", commits=2)
        refs[name] = await serve_by_push(daemon, upstream, work, name)
    assert upstream.fetches == 0
    for name in names:
        lose_objects(served_path(daemon, name))
    await wait_metric(daemon, "grasp_served_data_objects_recovered_total", len(names), timeout=40)
    for name in names:
        assert RepoStore.missing(served_path(daemon, name), refs[name].values()) == set()
    assert upstream.fetches >= len(names)
    assert upstream.max_fetches_in_window(window) <= 1, upstream.fetch_starts
    starts = sorted(upstream.fetch_starts)
    assert starts[-1] - starts[0] >= (len(names) - 1) * window * 0.9  # they waited for the throttle
