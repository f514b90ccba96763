"""GRASP-06 contributor repos through the running daemon and the real git CLI: empty answers
for paths nobody pushed to (nothing created on disk), a contributor's PR pushed to `/prs/`
and released into the owner's repo, mismatching signer, `d` or tip removing the ref, other
namespaces refused (by git and by raw HTTP), the clean-up of repos left without a ref, and
NIP-11 advertising GRASP-06 exactly when it is on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from storage.nostr.event import Event, sign_event
from tests.daemon import ALICE, BOB, CAROL, Client, Daemon, now, npub_of, pubkey_of, wait_for
from tests.gitutil import commit, git, make_repo, push, remote_refs, rev
from tests.test_git_flows import ids_served, repo_url
from tests.test_push_integrity import Z, commands, fetchable_by_id, pack_of, raw_post, served_repo


def prs_url(daemon: Daemon, secret: str, identifier: str) -> str:
    return f"{daemon.http_url}/prs/{npub_of(secret)}/{identifier}.git"


def contributor_pr(secret: str, owner: str, identifier: str, tip: str, clone: str,
                   created_at: int | None = None) -> Event:
    tags = [["a", f"30617:{owner}:{identifier}"], ["c", tip], ["clone", clone], ["subject", "a change"],
            ["branch-name", "feature"]]
    return sign_event(secret, 1618, "please merge", tags, created_at or now())


def pending_refs(daemon: Daemon, secret: str, identifier: str) -> dict[str, str]:
    path = daemon.data_dir / "prs-pending" / npub_of(secret) / f"{identifier}.git"
    if not (path / "HEAD").is_file():
        return {}
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=path).stdout.split()
    return dict(zip(out[::2], out[1::2]))


def nip11(daemon: Daemon) -> dict:
    return json.loads(daemon.get("/", {"Accept": "application/nostr+json"})[2])


async def test_off_by_default_and_advertised_only_when_on(start_daemon, tmp_path: Path) -> None:
    off = start_daemon()
    assert "GRASP-06" not in nip11(off)["supported_grasps"]
    status, _, _ = off.get(f"/prs/{npub_of(CAROL)}/repo.git/info/refs?service=git-upload-pack")
    assert status == 404
    on = start_daemon(grasp06_enabled="true")
    assert nip11(on)["supported_grasps"] == ["GRASP-01", "GRASP-02", "GRASP-06"]


async def test_unknown_path_answers_as_an_empty_repo_and_creates_nothing(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(grasp06_enabled="true")
    url = prs_url(daemon, CAROL, "never-pushed")
    clone = git("clone", url, str(tmp_path / "clone"), check=False)
    assert clone.returncode == 0 and "empty repository" in clone.stderr
    assert remote_refs(url) == {}
    assert git("-c", "protocol.version=0", "ls-remote", url).stdout == ""
    for root in ("prs", "prs-pending"):  # nothing for this path, nor any other
        assert not (daemon.data_dir / root).exists() or not list((daemon.data_dir / root).iterdir())
    status, _, _ = daemon.get("/prs/npub1nope/x.git/info/refs?service=git-upload-pack")
    assert status == 400
    status, _, _ = daemon.get(f"/prs/{npub_of(CAROL)}/..%2fx.git/info/refs?service=git-upload-pack")
    assert status == 400


async def test_contributor_pr_is_released_and_mirrored_into_the_owner_repo(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(grasp06_enabled="true")
    client = await Client.connect(daemon.ws_url)
    try:
        work, _, _ = await served_repo(client, daemon, tmp_path, "repo")
        owner = pubkey_of(ALICE)
        url = prs_url(daemon, CAROL, "repo")
        # push first: the tip waits, unserved, until the PR event names it
        tip = commit(work, "feature.txt")
        pr = contributor_pr(CAROL, owner, "repo", tip, url)
        pushed = push(work, url, f"{tip}:refs/nostr/{pr.id}")
        assert pushed.returncode == 0, pushed.stderr
        assert remote_refs(url) == {} and not fetchable_by_id(url, tip, tmp_path)
        assert pending_refs(daemon, CAROL, "repo") == {f"refs/nostr/{pr.id}": tip}
        ok, msg = await client.publish(pr)
        assert ok and msg == "", msg
        assert await ids_served(client, pr.id) == {pr.id}
        assert remote_refs(url) == {f"refs/nostr/{pr.id}": tip}
        assert remote_refs(repo_url(daemon, ALICE, "repo"))[f"refs/nostr/{pr.id}"] == tip
        assert pending_refs(daemon, CAROL, "repo") == {}
        # event first: held (GRASP-01 alone would take it too, as Alice's repo is served)
        # until the tip lands in the contributor repo
        tip2 = commit(work, "second.txt")
        pr2 = contributor_pr(CAROL, owner, "repo", tip2, url, created_at=now() + 1)
        ok, msg = await client.publish(pr2)
        assert ok and msg.startswith("purgatory:")
        assert push(work, url, f"{tip2}:refs/nostr/{pr2.id}").returncode == 0
        assert await ids_served(client, pr2.id) == {pr2.id}
        assert remote_refs(repo_url(daemon, ALICE, "repo"))[f"refs/nostr/{pr2.id}"] == tip2
        # the owner's refs move only by signed states: the mirror is refs/nostr only
        assert remote_refs(repo_url(daemon, ALICE, "repo"))["refs/heads/main"] != tip2
    finally:
        await client.close()


async def test_pr_for_a_repo_not_served_here_is_taken_through_its_prs_url(start_daemon, tmp_path: Path) -> None:
    """GRASP-01 alone refuses a PR naming no repository served here; GRASP-06 holds it when
    its clone tag names its signer's /prs/ path for the d it tags, and serves it with the tip."""
    daemon = start_daemon(grasp06_enabled="true")
    work = make_repo(tmp_path / "work", commits=2)
    tip = rev(work)
    elsewhere = pubkey_of(BOB)
    client = await Client.connect(daemon.ws_url)
    try:
        other = contributor_pr(CAROL, elsewhere, "far", tip, prs_url(daemon, ALICE, "far"))
        ok, msg = await client.publish(other)
        assert not ok and msg.startswith("blocked:")  # someone else's /prs/ path does not count
        pr = contributor_pr(CAROL, elsewhere, "far", tip, prs_url(daemon, CAROL, "far"))
        ok, msg = await client.publish(pr)
        assert ok and msg.startswith("purgatory:"), msg
        assert push(work, prs_url(daemon, CAROL, "far"), f"{tip}:refs/nostr/{pr.id}").returncode == 0
        assert await ids_served(client, pr.id) == {pr.id}
        assert remote_refs(prs_url(daemon, CAROL, "far")) == {f"refs/nostr/{pr.id}": tip}
        clone = git("clone", "-q", prs_url(daemon, CAROL, "far"), str(tmp_path / "c"), check=False)
        assert clone.returncode == 0
        # a PR update finds its repository through its root PR
        tip2 = commit(work, "update.txt")
        update = sign_event(CAROL, 1619, "", [["E", pr.id], ["P", pubkey_of(CAROL)], ["c", tip2],
                                              ["clone", prs_url(daemon, CAROL, "far")]], now() + 1)
        ok, msg = await client.publish(update)
        assert ok and msg.startswith("purgatory:"), msg
        assert push(work, prs_url(daemon, CAROL, "far"), f"{tip2}:refs/nostr/{update.id}").returncode == 0
        assert await ids_served(client, update.id) == {update.id}
        assert remote_refs(prs_url(daemon, CAROL, "far")) == {f"refs/nostr/{pr.id}": tip,
                                                              f"refs/nostr/{update.id}": tip2}
    finally:
        await client.close()


async def test_mismatching_signer_d_or_tip_removes_the_ref(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(grasp06_enabled="true")
    client = await Client.connect(daemon.ws_url)
    try:
        work, _, _ = await served_repo(client, daemon, tmp_path, "repo")
        owner = pubkey_of(ALICE)
        tip = commit(work, "x.txt")
        wrong = commit(work, "y.txt")
        carol_url = prs_url(daemon, CAROL, "repo")
        # signer: Bob's PR pushed into Carol's contributor repo
        by_bob = contributor_pr(BOB, owner, "repo", tip, carol_url)
        # d: Carol's PR for "repo" pushed to her /prs/ path of another identifier
        other_d = contributor_pr(CAROL, owner, "repo", tip, prs_url(daemon, CAROL, "other"),
                                 created_at=now() + 1)
        # tip: pushed with one tip, the event names another
        wrong_tip = contributor_pr(CAROL, owner, "repo", tip, carol_url, created_at=now() + 2)
        assert push(work, carol_url, f"{tip}:refs/nostr/{by_bob.id}").returncode == 0
        assert push(work, prs_url(daemon, CAROL, "other"), f"{tip}:refs/nostr/{other_d.id}").returncode == 0
        assert push(work, carol_url, f"{wrong}:refs/nostr/{wrong_tip.id}").returncode == 0
        assert len(pending_refs(daemon, CAROL, "repo")) == 2 and len(pending_refs(daemon, CAROL, "other")) == 1
        for event in (by_bob, other_d, wrong_tip):
            assert (await client.publish(event))[0]  # Alice's repo is served: GRASP-01 takes them
        assert pending_refs(daemon, CAROL, "repo") == {} and pending_refs(daemon, CAROL, "other") == {}
        assert not (daemon.data_dir / "prs-pending" / npub_of(CAROL) / "other.git").exists()
        assert remote_refs(carol_url) == {}
        # with the events known, such pushes are refused with the reason
        refused = push(work, carol_url, f"{tip}:refs/nostr/{by_bob.id}")
        assert refused.returncode != 0 and "not the owner of this /prs/ path" in refused.stdout + refused.stderr
        refused = push(work, prs_url(daemon, CAROL, "other"), f"{tip}:refs/nostr/{other_d.id}")
        assert refused.returncode != 0 and "does not tag a repository 'other'" in refused.stdout + refused.stderr
        refused = push(work, carol_url, f"{wrong}:refs/nostr/{wrong_tip.id}")
        assert refused.returncode != 0 and f"names tip {tip}" in refused.stdout + refused.stderr
        # the right tip is then taken and released
        assert push(work, carol_url, f"{tip}:refs/nostr/{wrong_tip.id}").returncode == 0
        assert await ids_served(client, wrong_tip.id) == {wrong_tip.id}
    finally:
        await client.close()


async def test_other_namespaces_are_refused(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(grasp06_enabled="true")
    work = make_repo(tmp_path / "work", commits=1)
    tip = rev(work)
    url = prs_url(daemon, CAROL, "repo")
    for refspec in ("main", f"{tip}:refs/tags/v1", f"{tip}:refs/nostr/not-an-id", f"{tip}:refs/other/x"):
        refused = push(work, url, refspec)
        assert refused.returncode != 0 and "takes only refs/nostr/<event-id>" in refused.stdout + refused.stderr
    path = f"/prs/{npub_of(CAROL)}/repo.git/git-receive-pack"
    status, answer = raw_post(daemon, path, commands((Z, tip, "refs/heads/main")) + pack_of(work, tip))
    assert status == 200 and b"ng refs/heads/main" in answer and b"takes only refs/nostr" in answer
    mixed = commands((Z, tip, f"refs/nostr/{'a' * 64}"), (Z, tip, "refs/heads/main")) + pack_of(work, tip)
    status, answer = raw_post(daemon, path, mixed)
    assert status == 200 and b"ng refs/heads/main" in answer
    assert not (daemon.data_dir / "prs-pending" / npub_of(CAROL)).exists()
    assert not (daemon.data_dir / "prs" / npub_of(CAROL)).exists()


async def test_repos_left_with_no_ref_are_removed(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = start_daemon(data, grasp06_enabled="true", purgatory_expiry_s="1", purgatory_sweep_s="0.2")
    work = make_repo(tmp_path / "work", commits=1)
    url = prs_url(daemon, CAROL, "repo")
    assert push(work, url, f"{rev(work)}:refs/nostr/{'7' * 64}").returncode == 0
    pending = data / "prs-pending" / npub_of(CAROL) / "repo.git"
    assert (pending / "HEAD").is_file()
    await wait_for(lambda: not pending.exists(), "the unclaimed contributor ref removed", timeout=10, every=0.2)
    assert not (data / "prs-pending" / npub_of(CAROL)).exists()
    daemon.stop()
    # at start, contributor repos holding no ref go (left by a crash)
    for root in ("prs", "prs-pending"):
        git("init", "-q", "--bare", str(data / root / npub_of(BOB) / "left.git"))
    daemon.start()
    assert not (data / "prs" / npub_of(BOB)).exists() and not (data / "prs-pending" / npub_of(BOB)).exists()


async def test_prs_pushes_have_the_refs_nostr_limits(start_daemon, tmp_path: Path) -> None:
    """The size cap of refs/nostr pushes, and one per-address window shared with the refs/nostr
    pushes to announced repos."""
    daemon = start_daemon(grasp06_enabled="true", nostr_ref_pushes_per_ip_per_hour="2",
                          nostr_ref_push_max_bytes="65536")
    work = make_repo(tmp_path / "work", commits=1)
    base = rev(work)
    (work / "big.bin").write_bytes(os.urandom(200_000))
    big = commit(work, "big-marker.txt")
    path = f"/prs/{npub_of(CAROL)}/repo.git/git-receive-pack"
    status, answer = raw_post(daemon, path, commands((Z, big, f"refs/nostr/{'a' * 64}")) + pack_of(work, big))
    assert status == 413 and b"refs/nostr push exceeds the limit of 65536 bytes" in answer
    assert not (daemon.data_dir / "prs-pending" / npub_of(CAROL) / "repo.git").exists()
    status, answer = raw_post(daemon, path, commands((Z, base, f"refs/nostr/{'b' * 64}")) + pack_of(work, base))
    assert status == 200 and b"ok refs/nostr/" in answer
    status, answer = raw_post(daemon, path, commands((Z, base, f"refs/nostr/{'c' * 64}")) + pack_of(work, base))
    assert status == 200 and b"rate-limited: more than 2 refs/nostr pushes per hour" in answer
    assert pending_refs(daemon, CAROL, "repo") == {f"refs/nostr/{'b' * 64}": base}


async def test_hostile_requests_on_unknown_prs_paths(start_daemon, tmp_path: Path) -> None:
    """Junk bodies, wrong methods and the bare path get an answer; nothing is created and the
    daemon keeps serving."""
    import http.client

    daemon = start_daemon(grasp06_enabled="true")
    base = f"/prs/{npub_of(CAROL)}/repo.git"
    for method, path, body, expected in (
            # git itself refuses the junk request against the empty repo ("git failed")
            ("POST", f"{base}/git-upload-pack", b"0032want nonsense\n00000009done\n", 500),
            ("POST", f"{base}/git-receive-pack", b"zzzz", 400),
            ("GET", f"{base}/git-receive-pack", b"", 405), ("GET", base, b"", 404),
            ("GET", f"{base}/info/refs?service=git-upload-archive", b"", 403),
            ("GET", f"{base}/info/refs", b"", 403),
            ("GET", f"{base}/objects/info/packs", b"", 404)):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
        try:
            conn.request(method, path, body=body or None)
            status = conn.getresponse().status
        finally:
            conn.close()
        assert status == expected, (method, path, status)
    assert daemon.get("/health")[0] == 200 and "Traceback" not in daemon.log_text()
    for root in ("prs", "prs-pending"):
        assert not (daemon.data_dir / root).exists() or not list((daemon.data_dir / root).iterdir())
