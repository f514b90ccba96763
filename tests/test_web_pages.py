"""The web view through the running daemon: a real repository (several commits, a
subdirectory, a Markdown README with a script in it, a binary file, an annotated tag) is
announced, its state published and pushed with the git CLI; then every page is read over
HTTP and checked for its content, its escaping and its status, and hostile requests
(traversal, odd refs, commit ids nobody serves, huge offsets) get 4xx."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from pathlib import Path

from storage.nostr.event import sign_event
from tests.daemon import ALICE, CAROL, Client, Daemon, now, npub_of, pubkey_of, state
from tests.gitutil import git, push, rev

HOSTILE = "<img src=x onerror=alert(1)>"
README = f"""# Demo project

Some *emphasis* and a [relative link](docs/guide.md) and ![logo](logo.png).

<script>alert("readme")</script>

<a href="javascript:alert(2)">bad link</a> {HOSTILE}
"""
ODD_NAME = 'odd "name"\n<x>.bin'
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@dataclass
class Served:
    npub: str
    identifier: str
    work: Path
    commits: list[str]
    tag: str
    url: str

    @property
    def base(self) -> str:
        return f"/{self.npub}/{self.identifier}"


def build_work_repo(path: Path) -> tuple[list[str], str]:
    """A working repo with five commits, a subdirectory, the README, a binary, a tag."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(path))
    (path / "README.md").write_text(README)
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "Initial import", cwd=path)
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text('def main() -> None:\n    print("hello <world>")\n\n\nmain()\n')
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", f"Add the app {HOSTILE}", "-m", "Body line with <b>markup</b>.", cwd=path)
    (path / "logo.png").write_bytes(PNG)
    (path / ODD_NAME).write_bytes(b"\0binary\0")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "Add a binary logo", cwd=path)
    git("tag", "-a", "v1.0", "-m", "first release", cwd=path)
    (path / "src" / "app.py").write_text('def main() -> None:\n    print("hello, world")\n\n\nmain()\n')
    git("commit", "-q", "-am", "Say hello properly", cwd=path)
    (path / "docs").mkdir()
    (path / "docs" / "guide.md").write_text("# Guide\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "Add a guide", cwd=path)
    commits = git("rev-list", "--reverse", "HEAD", cwd=path).stdout.split()
    return commits, rev(path, "refs/tags/v1.0")


def rich_announcement(secret: str, domain: str, identifier: str):
    npub = npub_of(secret)
    tags = [["d", identifier], ["name", f"Demo {HOSTILE}"], ["description", "A demo <script>x()</script> repo"],
            ["clone", f"http://{domain}/{npub}/{identifier}.git", "https://example.org/mirror.git"],
            ["relays", f"ws://{domain}"], ["web", "https://example.org/demo"]]
    return sign_event(secret, 30617, "", tags, now())


async def publish_rich_repo(client: Client, daemon: Daemon, tmp_path: Path, identifier: str = "demo") -> Served:
    commits, tag = build_work_repo(tmp_path / f"work-{identifier}")
    ann = rich_announcement(ALICE, daemon.domain, identifier)
    assert (await client.publish(ann))[0]
    st = state(ALICE, identifier, {"refs/heads/main": commits[-1], "refs/tags/v1.0": tag})
    assert (await client.publish(st))[0]
    url = f"{daemon.http_url}/{npub_of(ALICE)}/{identifier}.git"
    result = push(tmp_path / f"work-{identifier}", url, "main", "refs/tags/v1.0")
    assert result.returncode == 0, result.stderr
    return Served(npub_of(ALICE), identifier, tmp_path / f"work-{identifier}", commits, tag, url)


def raw_get(daemon: Daemon, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    """A request with the path sent exactly as written (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def text(daemon: Daemon, path: str, status: int = 200) -> str:
    got, headers, body = raw_get(daemon, path)
    assert got == status, (path, got, body[:500])
    if status == 200:
        assert headers["Content-Type"].startswith("text/html")
    assert headers["Access-Control-Allow-Origin"] == "*"
    page = body.decode()
    assert HOSTILE not in page and "<script" not in page.lower()
    return page


async def test_every_page_of_a_pushed_repository(daemon: Daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        served = await publish_rich_repo(client, daemon, tmp_path)
    finally:
        await client.close()
    c = served.commits
    landing = text(daemon, "/")
    assert "Demo &lt;img src=x onerror=alert(1)&gt;" in landing and "1 repository" in landing
    assert f'href="{served.base}"' in landing and "GRASP-01" in landing
    assert "Demo" not in text(daemon, "/?q=nothing-like-it") and "Demo" in text(daemon, "/?q=dEMo")

    for path in (served.base, served.base + ".git", served.base + "/"):
        summary = text(daemon, path)
        assert f"git clone http://{daemon.domain}/{served.npub}/demo.git" in summary
        assert "https://example.org/mirror.git" in summary and "https://example.org/demo" in summary
        assert summary.index(f"http://{daemon.domain}/") < summary.index("https://example.org/mirror.git")
    assert "<h1>Demo project</h1>" in summary and "<em>emphasis</em>" in summary
    assert "javascript:" not in summary and 'alert("readme")' not in summary
    assert f'href="{served.base}/blob/docs/guide.md?h=main"' in summary
    assert f'src="{served.base}/raw/logo.png?h=main"' in summary
    assert "Say hello properly" in summary and "Add a guide" in summary
    assert "naddr1" in summary and f'href="/{served.npub}"' in summary

    refs = text(daemon, served.base + "/refs")
    assert ">main</a>" in refs and ">v1.0</a>" in refs and c[2][:10] in refs  # the tag peeled to its commit

    log = text(daemon, served.base + "/log")
    assert all(sha[:10] in log for sha in c) and "Add the app &lt;img" in log
    assert c[-1][:10] not in text(daemon, served.base + "/log?h=main&ofs=1")
    tag_log = text(daemon, served.base + "/log?h=v1.0")
    assert c[2][:10] in tag_log and c[3][:10] not in tag_log
    assert c[0][:10] in text(daemon, f"{served.base}/log?id={c[1]}")

    tree = text(daemon, served.base + "/tree")
    for name in ("src/", "docs/", "README.md", "logo.png"):
        assert f">{name}</a>" in tree
    assert ">app.py</a>" in text(daemon, served.base + "/tree/src?h=main")
    blob = text(daemon, served.base + "/blob/src/app.py?h=main")
    assert 'id="L-1"' in blob and 'id="L-5"' in blob and 'href="#L-5"' in blob and "hello" in blob
    old = text(daemon, f"{served.base}/blob/src/app.py?id={c[1]}")
    assert "hello &lt;world&gt;" in old or "&lt;world&gt;" in old
    binary = text(daemon, served.base + "/blob/logo.png?h=v1.0")
    assert "Binary file" in binary and f'href="{served.base}/raw/logo.png?h=v1.0"' in binary
    assert "Binary file" in text(daemon, served.base + "/tree/logo.png")  # tree and blob show what the path is
    assert ">app.py</a>" in text(daemon, served.base + "/blob/src")

    status, headers, body = raw_get(daemon, served.base + "/raw/logo.png?h=main")
    assert status == 200 and body == PNG and headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
    assert "odd &#34;name&#34;\n&lt;x&gt;.bin</a>" in tree
    status, headers, body = raw_get(daemon, served.base + "/raw/odd%20%22name%22%0A%3Cx%3E.bin")
    assert status == 200 and body == b"\0binary\0" and headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == 'attachment; filename="odd__name___x_.bin"'
    status, headers, body = raw_get(daemon, served.base + "/raw/README.md")
    assert status == 200 and body == README.encode() and headers["Content-Type"].startswith("text/plain")

    page = text(daemon, f"{served.base}/commit/{c[1]}")
    assert "Add the app &lt;img src=x onerror=alert(1)&gt;" in page and "Body line with &lt;b&gt;markup" in page
    assert '<span class="add">+    print(&#34;hello &lt;world&gt;&#34;)</span>' in page or "+    print(" in page
    assert f'href="{served.base}/commit/{c[0]}"' in page and "1 file changed" in page
    assert "binary file" in text(daemon, f"{served.base}/commit/{c[2]}")
    root = text(daemon, f"{served.base}/commit/{c[0]}")
    assert "root commit" in root and "+# Demo project" in root

    assert "No issues" in text(daemon, served.base + "/issues")
    assert "No pull requests" in text(daemon, served.base + "/prs")
    assert "Demo" in text(daemon, f"/{served.npub}")


async def test_caching_head_and_hostile_requests(daemon: Daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        served = await publish_rich_repo(client, daemon, tmp_path)
    finally:
        await client.close()
    base, c = served.base, served.commits
    for path in (base, f"{base}/log", f"{base}/tree/src?h=main", f"{base}/commit/{c[1]}", "/static/style.css"):
        status, headers, body = raw_get(daemon, path)
        assert status == 200 and headers.get("ETag"), path
        again = raw_get(daemon, path, headers={"If-None-Match": headers["ETag"]})
        assert again[0] == 304 and again[2] == b"", path
        head = raw_get(daemon, path, "HEAD")
        assert head[0] == 200 and head[2] == b"" and head[1]["Content-Length"] == str(len(body)), path
    assert "max-age=86400" in raw_get(daemon, f"{base}/commit/{c[1]}")[1]["Cache-Control"]
    assert "immutable" in raw_get(daemon, "/static/style.css")[1]["Cache-Control"]
    status, headers, body = raw_get(daemon, f"{base}/nope", "HEAD")
    assert status == 404 and body == b"" and headers["Access-Control-Allow-Origin"] == "*"

    bad = {
        400: [f"{base}/tree/..%2f..%2fetc", f"{base}/tree/../../etc/passwd", f"{base}/blob/src/%2e%2e/README.md",
              f"{base}/tree/src%00x", f"{base}/raw/a\\b", f"{base}/log?ofs=99999999999", f"{base}/log?ofs=-1",
              f"{base}/log?ofs=abc", f"{base}/log?h=main&h=v1.0", f"{base}/log?id=HEAD", f"{base}/log?id={c[1][:12]}",
              f"{base}/commit/HEAD", f"{base}/commit/{c[1].upper()}", "/?page=0", f"/{served.npub[:-1]}x/demo",
              f"/{served.npub}/a%2fb", f"/{served.npub}/%2e%2e/tree", f"{base}/tree/%ff"],
        404: [f"{base}/log?h=HEAD~1", f"{base}/log?h=@{{-1}}", f"{base}/log?h=refs/nostr/x", f"{base}/log?h=HEAD",
              f"{base}/log?h=refs/remotes/main", f"{base}/log?id={'0' * 40}", f"{base}/commit/{'ab' * 20}",
              f"{base}/tree/missing?h=main", f"{base}/raw/src?h=main", f"{base}/raw?h=main",
              f"{base}/log?ofs=10000", f"{base}/tree?h=nope", f"/{served.npub}/other", f"{base}/wat",
              "/?page=99", f"{base}/summary/extra"],
    }
    for status, paths in bad.items():
        for path in paths:
            got, headers, body = raw_get(daemon, path)
            assert got == status, (path, got, body[:300])
            assert headers["Access-Control-Allow-Origin"] == "*"
            assert b"<script" not in body.lower()
    assert raw_get(daemon, f"{base}/tree", "POST")[0] == 405
    assert raw_get(daemon, "/health")[0] == 200
    # the git routes beside the pages still answer as git
    status, headers, _ = raw_get(daemon, f"{base}.git/info/refs?service=git-upload-pack")
    assert status == 200 and "git-upload-pack" in headers["Content-Type"]


async def test_waiting_repo_and_unreleased_commits_are_not_shown(daemon: Daemon, tmp_path: Path) -> None:
    """A held announcement shows only "waiting for git data"; a commit in the served repo
    that only a PR ref (refs/nostr) and a held state name is reachable through no page."""
    client = await Client.connect(daemon.ws_url)
    try:
        held = rich_announcement(ALICE, daemon.domain, "later")
        assert (await client.publish(held))[1].startswith("purgatory:")
        page = text(daemon, f"/{npub_of(ALICE)}/later")
        assert "Waiting for git data" in page and "Demo" not in page and "demo" not in page.lower().split("later")[0]
        assert "later" not in text(daemon, "/").split("repositor")[1]
        text(daemon, f"/{npub_of(ALICE)}/later/log", 404)
        text(daemon, f"/{npub_of(ALICE)}/later/tree", 404)

        served = await publish_rich_repo(client, daemon, tmp_path)
        work, base = served.work, served.base
        git("checkout", "-q", "-b", "feature", cwd=work)
        (work / "pr.txt").write_text("a proposed change\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "Proposed change", cwd=work)
        tip = rev(work)
        owner = pubkey_of(ALICE)
        tags = [["a", f"30617:{owner}:demo"], ["c", tip], ["subject", f"Please merge {HOSTILE}"]]
        pr = sign_event(CAROL, 1618, "please merge", tags, now())
        assert (await client.publish(pr))[0]
        assert push(work, served.url, f"{tip}:refs/nostr/{pr.id}").returncode == 0
        assert (await client.query({"ids": [pr.id]}))  # the PR is served, its tip is in the served repo
        missing = "d" * 40
        held_state = state(ALICE, "demo", {"refs/heads/main": tip, "refs/heads/extra": missing}, created_at=now() + 2)
        ok, msg = await client.publish(held_state)
        assert ok and msg.startswith("purgatory:"), msg
        for path in (f"{base}/commit/{tip}", f"{base}/log?id={tip}", f"{base}/tree?id={tip}",
                     f"{base}/blob/pr.txt?id={tip}", f"{base}/raw/pr.txt?id={tip}"):
            text(daemon, path, 404)
        for path in (base, f"{base}/log", f"{base}/refs", f"{base}/tree"):
            page = text(daemon, path)
            assert tip[:10] not in page and "Proposed change" not in page and "extra" not in page
        prs = text(daemon, f"{base}/prs")
        assert "Please merge &lt;img" in prs and "open" in prs and "https://njump.me/nevent1" in prs
    finally:
        await client.close()


async def test_issues_with_status_and_replies(daemon: Daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        served = await publish_rich_repo(client, daemon, tmp_path)
        owner = pubkey_of(ALICE)
        coord = f"30617:{owner}:demo"
        first = sign_event(CAROL, 1621, "it breaks", [["a", coord], ["p", owner], ["subject", f"Crash {HOSTILE}"]],
                           now() - 10)
        second = sign_event(CAROL, 1621, "idea", [["a", coord], ["subject", "Feature idea"]], now() - 5)
        for event in (first, second):
            assert (await client.publish(event))[0]
        closed = sign_event(ALICE, 1632, "", [["e", first.id, "", "root"], ["a", coord]], now())
        outsider = sign_event("d4" * 32, 1631, "", [["e", second.id, "", "root"], ["a", coord]], now())
        reply = sign_event(ALICE, 1111, "thanks", [["E", first.id], ["K", "1621"], ["e", first.id], ["k", "1621"],
                                                   ["a", coord]], now())
        for event in (closed, outsider, reply):
            await client.publish(event)
    finally:
        await client.close()
    page = text(daemon, f"{served.base}/issues")
    assert "Crash &lt;img" in page and "Feature idea" in page
    assert page.index("Feature idea") < page.index("Crash")  # newest first
    rows = re.findall(r"<li>.*?</li>", page, re.S)
    crash = next(r for r in rows if "Crash" in r)
    idea = next(r for r in rows if "Feature idea" in r)
    assert "status-closed" in crash and "1 reply" in crash
    assert "status-open" in idea and "0 replies" in idea  # a stranger's status does not count
    assert "https://njump.me/nevent1" in crash


async def test_every_bound_is_a_setting(start_daemon, tmp_path: Path) -> None:
    """Small GRASP_WEB_* limits: the landing page pages, the log pages, the tree, blob, raw
    and diff stop at their limits and say so."""
    daemon = start_daemon(web_repos_per_page="1", web_log_commits="2", web_log_max_offset="2",
                          web_tree_max_entries="2", web_blob_max_bytes="1024", web_raw_max_bytes="1024",
                          web_diff_max_bytes="1024", web_highlight_max_bytes="0")
    client = await Client.connect(daemon.ws_url)
    try:
        first = await publish_rich_repo(client, daemon, tmp_path, "alpha")
        second = await publish_rich_repo(client, daemon, tmp_path, "beta")
    finally:
        await client.close()
    newest, older = text(daemon, "/"), text(daemon, "/?page=2")
    assert "2 repositories" in newest and "page 1 of 2" in newest and 'href="?page=2"' in newest
    shown = [[r.base for r in (first, second) if f'href="{r.base}"' in page] for page in (newest, older)]
    assert sorted(shown) == sorted([[first.base], [second.base]])  # one a page, each once
    text(daemon, "/?page=3", 404)
    assert "page 1 of 2" in text(daemon, f"/{first.npub}")

    base, c = first.base, first.commits
    log = text(daemon, f"{base}/log")
    assert c[-1][:10] in log and c[-3][:10] not in log and "ofs=2" in log
    assert c[-3][:10] in text(daemon, f"{base}/log?ofs=2") and "ofs=4" not in text(daemon, f"{base}/log?ofs=2")
    text(daemon, f"{base}/log?ofs=4", 400)
    assert "Showing 2 of 5 entries" in text(daemon, f"{base}/tree")
    assert "too large to show" in text(daemon, f"{base}/blob/logo.png")  # 1040 bytes
    status, _, body = raw_get(daemon, f"{base}/raw/logo.png")
    assert status == 413 and b"GRASP_WEB_RAW_MAX_BYTES" in body
    plain = text(daemon, f"{base}/blob/src/app.py")
    assert 'class="hl plain"' in plain and 'id="L-1"' in plain  # not highlighted above the cap
    big = text(daemon, f"{base}/commit/{c[0]}")  # the root commit: the README alone is 195 bytes, fits
    assert "+# Demo project" in big and "diff too large" not in big
