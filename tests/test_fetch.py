"""fetch_oids against a real git http-backend: by-id fetches, the plain-server fallback, and every
failure class the sync throttle reacts to."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from purgatory.fetch.objects import classify, fetch_oids, quarantine_has
from tests.daemon import wait_for
from tests.gitutil import commit, git, make_repo, rev
from tests.upstream import Upstream

TIMEOUT_S = 10.0


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    with Upstream(tmp_path / "served") as up:
        yield up


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "work", commits=3)
    git("checkout", "-q", "-b", "side", cwd=path)
    commit(path, "side.txt")
    git("checkout", "-q", "main", cwd=path)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_repo(dest: Path) -> pygit2.Repository:
    return pygit2.Repository(str(dest))


async def test_fetch_tip_and_inner_commit_by_id(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    tip, inner = rev(work, "main"), rev(work, "main~1")
    dest = tmp_path / "q" / "r.git"

    outcome = await fetch_oids(upstream.url_for("r"), dest, {tip, inner}, TIMEOUT_S)

    assert outcome.ok and outcome.kind == "ok" and outcome.detail == "oid"
    repo = _fresh_repo(dest)
    assert repo.is_bare
    assert repo.config.get_bool("uploadpack.allowAnySHA1InWant")
    assert tip in repo and inner in repo
    assert quarantine_has(dest, {tip, inner}) == set()
    # only what was asked for: the side branch was not fetched
    assert rev(work, "side") not in repo
    assert upstream.fetches == 1


async def test_tag_object_by_id(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    git("tag", "-a", "-m", "release", "v1", "main~1", cwd=work)
    upstream.make_repo("r", work)
    tag = rev(work, "refs/tags/v1")
    dest = tmp_path / "q.git"

    outcome = await fetch_oids(upstream.url_for("r"), dest, {tag}, TIMEOUT_S)

    assert outcome.ok, outcome
    assert _fresh_repo(dest)[tag].type == pygit2.enums.ObjectType.TAG


async def test_second_fetch_into_same_quarantine(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    dest = tmp_path / "q.git"
    assert (await fetch_oids(upstream.url_for("r"), dest, {rev(work, "main")}, TIMEOUT_S)).ok
    newer = commit(work, "later.txt")
    upstream.make_repo("r", work)

    outcome = await fetch_oids(upstream.url_for("r"), dest, {newer}, TIMEOUT_S)

    assert outcome.ok, outcome
    assert quarantine_has(dest, {newer, rev(work, "main~1")}) == set()


async def test_plain_server_falls_back_to_advertised_refs(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("plain", work, allow_sha1_in_want=False)
    inner, side = rev(work, "main~2"), rev(work, "side")
    dest = tmp_path / "q.git"

    outcome = await fetch_oids(upstream.url_for("plain"), dest, {inner, side}, TIMEOUT_S)

    assert outcome.ok and outcome.detail == "refs", outcome
    assert quarantine_has(dest, {inner, side}) == set()


async def test_plain_server_unreachable_oid_is_not_our_ref(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("plain", work, allow_sha1_in_want=False)
    dest = tmp_path / "q.git"
    absent = "1" * 40

    outcome = await fetch_oids(upstream.url_for("plain"), dest, {absent, rev(work)}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "not-our-ref"
    assert absent in outcome.detail
    assert quarantine_has(dest, {absent}) == {absent}


async def test_unknown_oid_fails_and_dest_lacks_it(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    dest = tmp_path / "q.git"
    absent = "2" * 40

    outcome = await fetch_oids(upstream.url_for("r"), dest, {absent}, TIMEOUT_S)

    assert not outcome.ok
    assert outcome.kind == "not-our-ref"
    assert not outcome.network_failure
    assert absent not in _fresh_repo(dest)


async def test_blob_is_not_an_acceptable_target(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    blob = rev(work, "main:file0.txt")
    dest = tmp_path / "q.git"

    outcome = await fetch_oids(upstream.url_for("r"), dest, {blob}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "not-our-ref"
    assert "type blob" in outcome.detail


async def test_http_500(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    upstream.fail_next(1, status=500)

    outcome = await fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "http"
    assert "500" in outcome.detail
    assert not outcome.network_failure
    # the next attempt is served normally
    assert (await fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S)).ok


async def test_missing_repo_is_http_404(upstream: Upstream, tmp_path: Path) -> None:
    outcome = await fetch_oids(upstream.url_for("nope"), tmp_path / "q.git", {"3" * 40}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "http" and "404" in outcome.detail


async def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/x.git"

    outcome = await fetch_oids(url, tmp_path / "q.git", {"4" * 40}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "refused"
    assert outcome.network_failure


async def test_unresolvable_host_is_dns(tmp_path: Path) -> None:
    outcome = await fetch_oids("http://nonexistent.invalid/x.git", tmp_path / "q.git", {"5" * 40}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "dns"
    assert outcome.network_failure


async def test_tls_to_plain_http_port_is_tls(upstream: Upstream, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{upstream.port}/x.git"

    outcome = await fetch_oids(url, tmp_path / "q.git", {"6" * 40}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "tls"


async def test_hanging_server_times_out(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    upstream.hang = True
    timeout_s = 1.0

    # generous outer bound: the point is that the call returns at all, not how fast
    outcome = await asyncio.wait_for(fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, timeout_s), 20)

    assert not outcome.ok and outcome.kind == "timeout"
    assert outcome.network_failure
    assert upstream.requests >= 1
    upstream.hang = False
    assert (await fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S)).ok


async def test_server_that_never_finishes_is_abandoned(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    """Progress keeps arriving, so no socket timeout fires: the deadline in the callbacks must
    stop the worker, which the server sees as its connection going away."""
    upstream.make_repo("r", work)
    upstream.drip = True

    outcome = await asyncio.wait_for(fetch_oids(upstream.url_for("r"), tmp_path / "q.git", {rev(work)}, 1.0), 20)

    assert not outcome.ok and outcome.kind == "timeout"
    # the worker must hang up, the server then notices on its next write
    await wait_for(lambda: upstream.current == 0, "the upstream's request over", timeout=10)
    assert any(p.startswith("POST") for p in upstream.paths)


async def test_silent_listener_times_out(tmp_path: Path) -> None:
    """A socket that completes TCP connects (kernel backlog) but never reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.git"
        outcome = await asyncio.wait_for(fetch_oids(url, tmp_path / "q.git", {"7" * 40}, 1.0), 20)

    assert not outcome.ok and outcome.kind == "timeout"


async def test_nothing_wanted_and_bad_ids_do_not_touch_the_network(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/x.git"
    assert (await fetch_oids(url, tmp_path / "q.git", set(), TIMEOUT_S)).ok

    outcome = await fetch_oids(url, tmp_path / "q.git", {"refs/heads/main"}, TIMEOUT_S)

    assert not outcome.ok and outcome.kind == "error"


def test_quarantine_has_without_repo(tmp_path: Path) -> None:
    assert quarantine_has(tmp_path / "none.git", {"a" * 40}) == {"a" * 40}


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("failed to connect to 127.0.0.1: Connection refused", "refused"),
        ("failed to resolve address for x.invalid: Name or service not known", "dns"),
        ("SSL error: error:0A00010B:SSL routines::wrong version number", "tls"),
        ("the SSL certificate is invalid", "tls"),
        ("could not read from socket: timed out", "timeout"),
        ("unexpected http status code: 502", "http"),
        ("could not read from remote repository", "not-our-ref"),
        ("remote: want 1234 not our ref", "not-our-ref"),
        ("object not found - no match for id (abcd)", "not-our-ref"),
        ("early EOF", "error"),
    ],
)
def test_classify(message: str, kind: str) -> None:
    assert classify(message) == kind


def test_upstream_counts_fetch_sessions_and_windows(upstream: Upstream, work: Path, tmp_path: Path) -> None:
    upstream.make_repo("r", work)
    for i in range(3):
        git("clone", "-q", "--bare", upstream.url_for("r"), str(tmp_path / f"c{i}.git"))

    assert upstream.fetches == 3
    assert upstream.requests > upstream.fetches
    assert upstream.max_fetches_in_window(60) == 3
    assert upstream.peak >= 1 and upstream.current == 0
    assert len(upstream.request_starts) == upstream.requests


async def test_localhost_upstream_is_another_domain(tmp_path: Path, upstream: Upstream, work: Path) -> None:
    with Upstream(tmp_path / "other", host="localhost") as other:
        other.make_repo("r", work)
        upstream.make_repo("r", work)
        assert other.domain != upstream.domain and other.url_for("r").startswith("http://localhost:")

        outcome = await fetch_oids(other.url_for("r"), tmp_path / "q.git", {rev(work)}, TIMEOUT_S)

        assert outcome.ok, outcome
        assert other.fetches == 1 and upstream.fetches == 0


def test_quarantine_links_follow_the_served_repos(tmp_path: Path, work: Path) -> None:
    """Each link replaces the last: a served repo that is gone leaves no alternate and no
    mirrored tip behind, and the quarantine reads the served objects through the link."""
    from purgatory.quarantine import SERVED_NAMESPACE, init_quarantine, link_served

    one, two = tmp_path / "one.git", tmp_path / "two.git"
    git("clone", "-q", "--bare", str(work), str(one))
    git("init", "-q", "--bare", str(two))
    git("push", "-q", str(two), "side:refs/heads/other", cwd=work)
    quarantine = tmp_path / "q.git"
    init_quarantine(quarantine)
    assert link_served(quarantine, [one, two]) == 3  # main and side, then other
    repo = pygit2.Repository(str(quarantine))
    assert rev(work) in repo and rev(work, "side") in repo
    assert len((quarantine / "objects/info/alternates").read_text().splitlines()) == 2
    assert link_served(quarantine, [one, tmp_path / "gone.git"]) == 2
    mirrored = [r for r in pygit2.Repository(str(quarantine)).references if r.startswith(SERVED_NAMESPACE)]
    assert len(mirrored) == 2 and not any(r.endswith("/heads/other") for r in mirrored)
    assert (quarantine / "objects/info/alternates").read_text() == f"{(one / 'objects').resolve()}\n"
    assert link_served(quarantine, []) == 0
    assert not (quarantine / "objects/info/alternates").exists()
    assert rev(work) not in pygit2.Repository(str(quarantine))
