"""The web view's pure parts (what may be shown, which page a path names, README
sanitising) and its bounded git reads on real repositories made with the git CLI."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from relay.web import diffs, render
from relay.web.reach import ReachCache, walk_reachable
from relay.web.routes import parse, query
from relay.web.shown import (
    BadRequest,
    NotFound,
    listed,
    listing,
    offset,
    resolve_ref,
    split_path,
    status_of,
    target_of,
    threads,
)
from storage.nostr.event import sign_event
from tests.daemon import ALICE, BOB, CAROL, pubkey_of
from tests.gitutil import git, make_repo, rev

REFS = {"refs/heads/main": "a" * 40, "refs/heads/v1": "b" * 40, "refs/tags/v1": "c" * 40,
        "refs/tags/only-tag": "d" * 40}


def test_refs_resolve_only_among_served_branches_and_tags() -> None:
    assert resolve_ref(REFS, "main") == "refs/heads/main"
    assert resolve_ref(REFS, "refs/tags/v1") == "refs/tags/v1"
    assert resolve_ref(REFS, "v1") == "refs/heads/v1"  # a branch wins over a tag, as in git
    assert resolve_ref(REFS, "only-tag") == "refs/tags/only-tag"
    for odd in ("HEAD", "main~1", "@{-1}", ":/fix", "refs/nostr/" + "e" * 64, "heads/main", "a" * 40):
        with pytest.raises(NotFound):
            resolve_ref({**REFS, "refs/nostr/" + "e" * 64: "e" * 40}, odd)
    with pytest.raises(BadRequest):
        resolve_ref(REFS, "x" * 2000)
    assert target_of({}, REFS, "refs/heads/main").ref == "refs/heads/main"
    assert target_of({"id": "f" * 40}, REFS, None).commit == "f" * 40
    for bad in ("F" * 40, "f" * 39, "HEAD", "f" * 41):
        with pytest.raises(BadRequest):
            target_of({"id": bad}, REFS, None)
    with pytest.raises(NotFound):
        target_of({}, {}, None)


def test_paths_and_offsets() -> None:
    assert split_path("") == () and split_path("/") == ()
    assert split_path("src/app.py") == ("src", "app.py") and split_path("/a/b/") == ("a", "b")
    for bad in ("..", "a/../b", "./a", "a//b", "a\\b", "a\0b", "x" * 5000):
        with pytest.raises(BadRequest):
            split_path(bad)
    assert offset({}, 100) == 0 and offset({"ofs": "100"}, 100) == 100
    for bad in ("101", "-1", "1e3", "", "99999999999", " 1"):
        with pytest.raises(BadRequest):
            offset({"ofs": bad}, 100)


def test_routes() -> None:
    npub = "npub1" + "q" * 58
    assert parse("/", b"").page == "landing"
    assert parse("/static/style.css", b"").page == "static"
    assert parse(f"/{npub}", b"").page == "owner"
    assert parse(f"/{npub}/repo", b"").page == "summary"
    assert parse(f"/{npub}/repo.git", b"").page == "summary"
    assert parse(f"/{npub}/repo.git/info/refs", b"") is None  # git's
    route = parse(f"/{npub}/my%20repo/blob/src/caf%C3%A9.py", b"h=main")
    assert route is not None and (route.page, route.identifier, route.path) == ("blob", "my%20repo", "src/café.py")
    assert route.params == {"h": "main"}
    assert parse(f"/{npub}/repo/unknown", b"") is None and parse("/other", b"") is None
    assert parse(f"/{npub}/repo/log/extra", b"") is None
    with pytest.raises(BadRequest):
        parse(f"/{npub}/repo/tree/%ff", b"")
    for bad in (b"h=a&h=b", b"a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9", b"x=" + b"y" * 5000, b"h=\xff"):
        with pytest.raises(BadRequest):
            query(bad)


def test_issue_status_counts_only_the_author_and_maintainers() -> None:
    owner, author = pubkey_of(ALICE), pubkey_of(CAROL)
    root = sign_event(CAROL, 1621, "bug", [["subject", "Crash"]], 1000)

    def status(secret: str, kind: int, at: int):
        return sign_event(secret, kind, "", [["e", root.id]], at)

    maintainers = frozenset({owner})
    assert status_of(root, [], maintainers) == "open"
    assert status_of(root, [status(BOB, 1632, 2000)], maintainers) == "open"  # a stranger's
    assert status_of(root, [status(ALICE, 1632, 2000), status(CAROL, 1630, 3000)], maintainers) == "open"
    assert status_of(root, [status(ALICE, 1631, 3000), status(CAROL, 1630, 2000)], maintainers) == "applied"
    assert status_of(root, [status(CAROL, 1633, 2000)], frozenset()) == "draft"
    reply = sign_event(BOB, 1111, "me too", [["E", root.id], ["e", root.id]], 1500)
    other = sign_event(CAROL, 1621, "x", [], 900)
    listed = threads([other, root], [status(ALICE, 1632, 2000)], [reply], maintainers)
    assert [(t.subject, t.status, t.replies) for t in listed] == [("Crash", "closed", 1), ("x", "open", 0)]
    assert author != owner


def test_landing_orders_by_activity_and_filters() -> None:
    a = listed(sign_event(ALICE, 30617, "", [["d", "alpha"], ["name", "Alpha"], ["description", "first"]], 100))
    b = listed(sign_event(BOB, 30617, "", [["d", "beta"], ["name", "Beta" + "x" * 1000]], 200))
    assert len(b.name) == 300
    assert [x.identifier for x in listing([a, b], {}, "")] == ["beta", "alpha"]
    assert [x.identifier for x in listing([a, b], {"alpha": 300}, "")] == ["alpha", "beta"]
    assert [x.activity for x in listing([a, b], {"alpha": 300}, "FIRST")] == [300]
    assert listing([a, b], {}, "gamma") == []


def test_readme_markdown_is_sanitised_and_relative_links_point_into_the_repo() -> None:
    html = render.markdown(
        "# T\n\n<script>alert(1)</script>\n\n[x](javascript:alert(2)) [g](docs/g.md) ![i](img/a.png)\n\n"
        '<img src="y" onerror="alert(3)"> <a href="https://e.org" onclick="x()">e</a>',
        lambda kind, path: f"/R/{kind}/{path}")
    assert "<h1>T</h1>" in html and "<script" not in html and "alert(1)" not in html
    assert 'href="javascript' not in html and "onerror" not in html and "onclick" not in html
    assert 'href="/R/blob/docs/g.md"' in html and 'src="/R/raw/img/a.png"' in html
    assert 'href="https://e.org"' in html


def test_plain_code_escapes_and_numbers_lines() -> None:
    out = render.code("notes.unknownext", "<b>one</b>\ntwo\n", 0)
    assert "&lt;b&gt;one&lt;/b&gt;" in out and 'id="L-2"' in out and 'id="L-3"' not in out


def test_diff_is_cut_at_its_byte_budget(tmp_path: Path) -> None:
    work = make_repo(tmp_path / "w", commits=1)
    for i in range(5):
        (work / f"f{i}.txt").write_text("".join(f"line {n} of file {i}\n" for n in range(200)))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "many", cwd=work)
    repo = pygit2.Repository(str(work / ".git"))
    whole = diffs.commit_page(repo, rev(work), 100, 10**7)
    assert not whole.truncated and all(f.lines for f in whole.files) and whole.additions == 1000
    cut = diffs.commit_page(repo, rev(work), 100, 9000)
    assert cut.truncated and cut.files[0].lines and cut.files[-1].note == "diff too large"
    few = diffs.commit_page(repo, rev(work), 2, 10**7)
    assert few.truncated and len(few.files) == 2 and few.total_files == 5


def test_reachability_is_bounded_and_follows_the_tips(tmp_path: Path) -> None:
    work = make_repo(tmp_path / "w", commits=6)
    repo = pygit2.Repository(str(work / ".git"))
    commits = git("rev-list", "HEAD", cwd=work).stdout.split()
    assert walk_reachable(repo, frozenset({commits[0]}), 100).complete
    bounded = walk_reachable(repo, frozenset({commits[0]}), 3)
    assert not bounded.complete and len(bounded.commits) == 3
    cache = ReachCache(repos=2, max_commits=100)
    path = tmp_path / "w"
    assert cache.is_served(path, repo, {"refs/heads/main": commits[2]}, commits[5])
    assert not cache.is_served(path, repo, {"refs/heads/main": commits[2]}, commits[0])  # newer than the tip
    assert cache.is_served(path, repo, {"refs/heads/main": commits[0]}, commits[0])
    assert cache.is_served(path, repo, {"refs/heads/main": commits[0]}, commits[1])  # new tips, new walk
    assert not cache.is_served(path, repo, {"refs/heads/main": commits[0]}, "0" * 40)


def test_history_is_in_git_log_order_even_with_equal_dates(tmp_path: Path) -> None:
    """A rebase leaves many commits with one date; the log must still show children before
    parents, in the order `git log` shows them, merges included."""
    import os

    from relay.web.gitread import log_page

    work = tmp_path / "w"
    work.mkdir()
    env = {"GIT_COMMITTER_DATE": "1700000000 +0000", "GIT_AUTHOR_DATE": "1700000000 +0000"}
    os.environ.update(env)
    try:
        git("init", "-q", "-b", "main", str(work))
        for i in range(4):
            (work / f"m{i}").write_text(str(i))
            git("add", ".", cwd=work)
            git("commit", "-q", "-m", f"main {i}", cwd=work)
        git("checkout", "-q", "-b", "side", "HEAD~2", cwd=work)
        for i in range(3):
            (work / f"s{i}").write_text(str(i))
            git("add", ".", cwd=work)
            git("commit", "-q", "-m", f"side {i}", cwd=work)
        git("checkout", "-q", "main", cwd=work)
        git("merge", "-q", "--no-edit", "side", cwd=work)
    finally:
        for name in env:
            os.environ.pop(name)
    expected = git("rev-list", "HEAD", cwd=work).stdout.split()
    repo = pygit2.Repository(str(work / ".git"))
    commits, more = log_page(repo, expected[0], 0, 100)
    assert [c.id for c in commits] == expected and not more
    page, more = log_page(repo, expected[0], 3, 2)
    assert [c.id for c in page] == expected[3:5] and more


async def test_landing_scan_reads_in_chunks_and_stops_at_its_cap(tmp_path: Path) -> None:
    """The landing page reads announcements a chunk at a time (so large events are never all
    in memory) and must neither lose nor repeat any across chunk edges sharing a second."""
    from config import Settings
    from relay.web.nostr_reads import SCAN_CHUNK, served_repos
    from storage.sqlite.events import EventStore

    store = await EventStore.open(tmp_path / "events.sqlite3", Settings(data_dir=tmp_path))
    try:
        count = SCAN_CHUNK * 2 + 50
        for i in range(count):
            event = sign_event(ALICE, 30617, "", [["d", f"repo{i}"], ["name", f"Repo {i}"]], 1_000_000 + i // 3)
            assert (await store.save(event)).status == "saved"
        found = await served_repos(store, Settings(data_dir=tmp_path, web_repos_scan_max=10_000), "")
        assert sorted(r.identifier for r in found) == sorted(f"repo{i}" for i in range(count))
        capped = await served_repos(store, Settings(data_dir=tmp_path, web_repos_scan_max=250), "")
        assert len(capped) == 250 and capped[0].identifier in {f"repo{count - k}" for k in (1, 2, 3)}
        named = [r.identifier for r in await served_repos(store, Settings(data_dir=tmp_path), "REPO 7")]
        assert "repo7" in named and all(name.startswith("repo7") for name in named)
    finally:
        await store.close()
