"""GRASP flows through the running daemon: the real git CLI over HTTP and a real websocket
client. Events first, then pushes; refused pushes; maintainers; PRs; expiry; crash."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

from relay.git.pktline import FLUSH, encode
from storage.nostr.event import sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, announcement, now, npub_of, pubkey_of, state, wait_for
from tests.gitutil import commit, git, make_repo, push, remote_head, remote_refs, rev


def repo_url(daemon, secret: str, identifier: str) -> str:
    return f"{daemon.http_url}/{npub_of(secret)}/{identifier}.git"


async def announce_and_state(client: Client, daemon, secret: str, identifier: str, refs: dict[str, str],
                             head: str = "refs/heads/main", maintainers: list[str] | None = None) -> tuple:
    ann = announcement(secret, daemon.domain, identifier, maintainers=maintainers)
    ok, msg = await client.publish(ann)
    assert ok and msg.startswith("purgatory:"), msg
    st = state(secret, identifier, refs, head)
    ok, msg = await client.publish(st)
    assert ok and msg.startswith("purgatory:"), msg
    return ann, st


async def ids_served(client: Client, *ids: str) -> set[str]:
    return {e["id"] for e in await client.query({"ids": list(ids)})}


async def test_event_first_then_push_releases_and_serves(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=2)
    git("branch", "dev", cwd=work)
    main = rev(work)
    client = await Client.connect(daemon.ws_url)
    listener = await Client.connect(daemon.ws_url)
    try:
        await listener.send(["REQ", "live", {"kinds": [30617, 30618]}])
        assert (await listener.recv())[0] == "EOSE"
        refs = {"refs/heads/main": main, "refs/heads/dev": main}
        ann, st = await announce_and_state(client, daemon, ALICE, "proj", refs, head="refs/heads/dev")
        assert await ids_served(client, ann.id, st.id) == set()
        url = repo_url(daemon, ALICE, "proj")
        result = push(work, url, "main", "dev")
        assert result.returncode == 0, result.stderr
        assert await ids_served(client, ann.id, st.id) == {ann.id, st.id}
        live = {(await listener.recv())[2]["id"] for _ in range(2)}
        assert live == {ann.id, st.id}
        assert remote_refs(url) == {"HEAD": main, "refs/heads/main": main, "refs/heads/dev": main}
        assert remote_head(url) == "refs/heads/dev"
        clone = tmp_path / "clone"
        git("clone", "-q", url, str(clone))
        assert rev(clone) == main
        status, _, body = daemon.get(f"/{npub_of(ALICE)}/proj.git")
        assert status == 200 and b"git clone" in body
    finally:
        await client.close()
        await listener.close()


async def test_refused_pushes_show_reasons(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=1)
    first = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        url = repo_url(daemon, ALICE, "r")
        ann = announcement(ALICE, daemon.domain, "r")
        assert (await client.publish(ann))[0]
        no_state = push(work, url, "main")
        assert no_state.returncode != 0 and "no state event" in no_state.stderr + no_state.stdout
        second = commit(work, "x.txt")
        st = state(ALICE, "r", {"refs/heads/main": first})
        assert (await client.publish(st))[0]
        wrong = push(work, url, "main")
        assert wrong.returncode != 0
        assert f"lists refs/heads/main at {first}" in wrong.stderr + wrong.stdout
        outsider = state(CAROL, "r", {"refs/heads/main": second}, created_at=now() + 5)
        ok, msg = await client.publish(outsider)
        assert not ok and msg.startswith("invalid:")
        assert push(work, url, f"{first}:refs/heads/main").returncode == 0
        extra = push(work, url, "main:refs/heads/extra")
        assert extra.returncode != 0 and "refs/heads/extra" in extra.stderr + extra.stdout
        deleting = push(work, url, ":refs/heads/main")
        assert deleting.returncode != 0
        assert remote_refs(url)["refs/heads/main"] == first
        other_ns = push(work, url, "main:refs/other/x")
        assert other_ns.returncode != 0 and "only refs/heads" in other_ns.stderr + other_ns.stdout
    finally:
        await client.close()


async def test_maintainer_state_authorises_push_and_updates_maintainer_repo(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=2)
    tip = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        # maintainership is reciprocal (ngit v3): Bob's own announcement names Alice (and
        # Carol, who will list him later) back
        a_ann = announcement(ALICE, daemon.domain, "shared", maintainers=[pubkey_of(BOB)])
        b_ann = announcement(BOB, daemon.domain, "shared", maintainers=[pubkey_of(ALICE), pubkey_of(CAROL)])
        assert (await client.publish(a_ann))[0] and (await client.publish(b_ann))[0]
        b_state = state(BOB, "shared", {"refs/heads/main": tip})
        assert (await client.publish(b_state))[1].startswith("purgatory:")
        result = push(work, repo_url(daemon, ALICE, "shared"), "main")
        assert result.returncode == 0, result.stderr
        assert remote_refs(repo_url(daemon, BOB, "shared"))["refs/heads/main"] == tip
        assert await ids_served(client, a_ann.id, b_ann.id, b_state.id) == {a_ann.id, b_ann.id, b_state.id}
        # a later owner who trusts Bob gets his served state's data at once, nothing waits
        c_ann = announcement(CAROL, daemon.domain, "shared", maintainers=[pubkey_of(BOB)])
        ok, msg = await client.publish(c_ann)
        assert ok and msg == "", msg
        assert await ids_served(client, c_ann.id) == {c_ann.id}
        assert remote_refs(repo_url(daemon, CAROL, "shared"))["refs/heads/main"] == tip
    finally:
        await client.close()


def pr_event(secret: str, owner: str, identifier: str, tip: str, created_at: int | None = None):
    tags = [["a", f"30617:{owner}:{identifier}"], ["c", tip], ["subject", "a change"], ["branch-name", "feature"]]
    return sign_event(secret, 1618, "please merge", tags, created_at or now())


async def test_pull_request_flows(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=1)
    base = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "prs", {"refs/heads/main": base})
        url = repo_url(daemon, ALICE, "prs")
        assert push(work, url, "main").returncode == 0
        owner = pubkey_of(ALICE)
        # event first: held until the tip is pushed to refs/nostr/<id>
        tip1 = commit(work, "pr1.txt")
        pr1 = pr_event(CAROL, owner, "prs", tip1)
        ok, msg = await client.publish(pr1)
        assert ok and msg.startswith("purgatory:")
        assert await ids_served(client, pr1.id) == set()
        wrong_tip = push(work, url, f"{base}:refs/nostr/{pr1.id}")
        assert wrong_tip.returncode != 0 and f"names tip {tip1}" in wrong_tip.stderr + wrong_tip.stdout
        assert push(work, url, f"{tip1}:refs/nostr/{pr1.id}").returncode == 0
        assert await ids_served(client, pr1.id) == {pr1.id}
        # push first: the later event is served at once
        tip2 = commit(work, "pr2.txt")
        pr2 = pr_event(CAROL, owner, "prs", tip2, created_at=now() + 1)
        assert push(work, url, f"{tip2}:refs/nostr/{pr2.id}").returncode == 0
        ok, msg = await client.publish(pr2)
        assert ok and msg == ""
        assert await ids_served(client, pr2.id) == {pr2.id}
        refs = remote_refs(url)
        assert refs[f"refs/nostr/{pr1.id}"] == tip1 and refs[f"refs/nostr/{pr2.id}"] == tip2
        # push first with one tip, then an event naming another: the ref goes, the event waits
        tip3 = commit(work, "pr3.txt")
        pr3 = pr_event(CAROL, owner, "prs", tip3, created_at=now() + 2)
        assert push(work, url, f"{tip2}:refs/nostr/{pr3.id}").returncode == 0
        ok, msg = await client.publish(pr3)
        assert ok and msg.startswith("purgatory:")
        assert f"refs/nostr/{pr3.id}" not in remote_refs(url)
        assert push(work, url, f"{tip3}:refs/nostr/{pr3.id}").returncode == 0
        assert await ids_served(client, pr3.id) == {pr3.id}
    finally:
        await client.close()


async def test_fetch_non_tip_oid_and_partial_clone(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=3)
    tip, older = rev(work), rev(work, "HEAD~2")
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "fetchy", {"refs/heads/main": tip})
        url = repo_url(daemon, ALICE, "fetchy")
        assert push(work, url, "main").returncode == 0
    finally:
        await client.close()
    target = tmp_path / "by-oid"
    git("init", "-q", "--bare", str(target))
    git("fetch", "-q", url, older, cwd=target)
    assert git("cat-file", "-t", older, cwd=target).stdout.strip() == "commit"
    partial = tmp_path / "partial"
    git("clone", "-q", "--filter=blob:none", "--no-checkout", url, str(partial))
    assert git("config", "remote.origin.promisor", cwd=partial).stdout.strip() == "true"


async def test_purgatory_expiry_removes_unserved_repo(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(purgatory_expiry_s="1", purgatory_sweep_s="0.2")
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "gone")
        assert (await client.publish(ann))[1].startswith("purgatory:")
        repo_dir = daemon.data_dir / "repos" / npub_of(ALICE) / "gone.git"
        assert repo_dir.is_dir()
        await wait_for(lambda: not repo_dir.exists(), "the unserved repo removed at expiry", timeout=10, every=0.1)
        assert json.loads(daemon.get("/health")[2])["purgatory"] == {}
        ok, msg = await client.publish(ann)
        assert not ok and "expired" in msg
    finally:
        await client.close()


async def test_expired_ids_are_remembered_for_a_while_only(start_daemon) -> None:
    """An expired event is refused when it comes again, until the memory of it lapses; then
    it may wait in purgatory once more (the memory must not grow forever)."""
    daemon = start_daemon(purgatory_expiry_s="0.5", purgatory_sweep_s="0.2", purgatory_expired_memory_s="3")
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "again")
        assert (await client.publish(ann))[1].startswith("purgatory:")
        await wait_for(lambda: not json.loads(daemon.get("/health")[2])["purgatory"], "the announcement expired",
                       timeout=10, every=0.1)
        ok, msg = await client.publish(ann)
        assert not ok and "expired" in msg

        async def taken_again() -> str | None:
            ok, msg = await client.publish(ann)
            return msg if ok else None

        msg = await wait_for(taken_again, "the expired id forgotten", timeout=15, every=0.5)
        assert msg.startswith("purgatory:"), msg
    finally:
        await client.close()


async def test_kill_9_with_purgatory_then_restart_and_push(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "crashdata")
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    ann, st = await announce_and_state(client, daemon, ALICE, "crash", {"refs/heads/main": rev(work)})
    await client.close()
    daemon.kill9()
    daemon.start()
    assert push(work, repo_url(daemon, ALICE, "crash"), "main").returncode == 0
    client = await Client.connect(daemon.ws_url)
    try:
        assert await ids_served(client, ann.id, st.id) == {ann.id, st.id}
    finally:
        await client.close()


async def test_pages_traversal_and_oversized_push(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(max_push_bytes="65536")
    npub = npub_of(ALICE)
    assert daemon.get(f"/{npub}/unknown.git")[0] == 404
    assert daemon.get(f"/{npub}/unknown.git/info/refs?service=git-upload-pack")[0] == 404
    for bad in ("%2e%2e", "a%2fb", "a%00b", "a%5cb"):
        status, headers, _ = daemon.get(f"/{npub}/{bad}.git/info/refs?service=git-upload-pack")
        assert status in (400, 404) and headers["Access-Control-Allow-Origin"] == "*"
    work = make_repo(tmp_path / "work", commits=1)
    (work / "big.bin").write_bytes(__import__("os").urandom(200_000))
    big = commit(work, "marker.txt")
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "big", {"refs/heads/main": big})
        result = push(work, repo_url(daemon, ALICE, "big"), "main")
        assert result.returncode != 0
        assert daemon.get("/health")[0] == 200
        assert "refs/heads/main" not in remote_refs(repo_url(daemon, ALICE, "big"))
    finally:
        await client.close()


async def test_pull_request_update_follows_its_root(daemon, tmp_path: Path) -> None:
    """A PR update (1619) names its PR with an E tag only; it finds the repository through
    it, waits for its new tip, and is served once the tip is pushed."""
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "upd", {"refs/heads/main": rev(work)})
        url = repo_url(daemon, ALICE, "upd")
        assert push(work, url, "main").returncode == 0
        first = commit(work, "v1.txt")
        pr = pr_event(CAROL, pubkey_of(ALICE), "upd", first)
        assert (await client.publish(pr))[1].startswith("purgatory:")
        assert push(work, url, f"{first}:refs/nostr/{pr.id}").returncode == 0
        second = commit(work, "v2.txt")
        update = sign_event(CAROL, 1619, "", [["E", pr.id], ["P", pubkey_of(ALICE)], ["c", second]], now() + 1)
        ok, msg = await client.publish(update)
        assert ok and msg.startswith("purgatory:"), msg
        assert await ids_served(client, update.id) == set()
        assert push(work, url, f"{second}:refs/nostr/{update.id}").returncode == 0
        assert await ids_served(client, pr.id, update.id) == {pr.id, update.id}
        assert remote_refs(url)[f"refs/nostr/{update.id}"] == second
    finally:
        await client.close()


async def test_unclaimed_pr_ref_is_removed_after_expiry(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(purgatory_expiry_s="1", purgatory_sweep_s="0.2")
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "unclaimed", {"refs/heads/main": rev(work)})
        url = repo_url(daemon, ALICE, "unclaimed")
        assert push(work, url, "main").returncode == 0
        tip = commit(work, "pr.txt")
        claimed = pr_event(CAROL, pubkey_of(ALICE), "unclaimed", tip)
        nobody = "7" * 64
        assert push(work, url, f"{tip}:refs/nostr/{nobody}").returncode == 0
        assert push(work, url, f"{tip}:refs/nostr/{claimed.id}").returncode == 0
        ok, msg = await client.publish(claimed)
        assert ok and msg == ""
        await wait_for(lambda: f"refs/nostr/{nobody}" not in remote_refs(url), "the unclaimed PR ref removed",
                       timeout=10, every=0.2)
        refs = remote_refs(url)
        assert f"refs/nostr/{nobody}" not in refs and refs[f"refs/nostr/{claimed.id}"] == tip
    finally:
        await client.close()


def _processes_naming(fragment: str) -> list[int]:
    """Pids whose command line mentions `fragment` (here: one test's repo path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_clone_abandoned_half_way_stops_git(daemon, tmp_path: Path) -> None:
    """A client that hangs up in the middle of a large pack: git upload-pack is stopped
    (counted as cut) rather than left to pack the rest for nobody."""
    work = make_repo(tmp_path / "work", commits=1)
    (work / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))  # incompressible
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    tip = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, "big", {"refs/heads/main": tip})
    finally:
        await client.close()
    url = repo_url(daemon, ALICE, "big")
    assert push(work, url, "main").returncode == 0
    before = daemon.metric("grasp_git_operations_total", service="upload-pack", outcome="cut")
    body = encode(f"want {tip} side-band-64k ofs-delta\n") + FLUSH + encode("done\n")
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    conn.request("POST", f"/{npub_of(ALICE)}/big.git/git-upload-pack", body=body,
                 headers={"Content-Type": "application/x-git-upload-pack-request"})
    response = conn.getresponse()
    assert response.status == 200
    assert len(response.read(64 * 1024)) == 64 * 1024
    conn.close()  # hang up with megabytes still to come
    repo_path = str(daemon.data_dir / "repos" / npub_of(ALICE) / "big.git")

    def stopped() -> bool:
        cut = daemon.metric("grasp_git_operations_total", service="upload-pack", outcome="cut")
        return cut > before and not _processes_naming(repo_path)

    await wait_for(stopped, "git upload-pack stopped and counted as cut", timeout=15, every=0.1)
    assert daemon.metric("grasp_git_operations_total", service="upload-pack", outcome="cut") == before + 1
    assert _processes_naming(repo_path) == []
    assert remote_refs(url)["refs/heads/main"] == tip  # still serving
