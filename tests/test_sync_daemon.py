"""The purgatory sync service through the running daemon: events whose data only other git
servers have are released once the relay fetched it, politely. The upstreams are real git
HTTP servers on 127.0.0.1/localhost (tests/upstream.py) that count what they are asked."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from storage.nostr.event import sign_event
from tests.daemon import (
    ALICE,
    CAROL,
    Client,
    announcement,
    metric,
    now,
    npub_of,
    pubkey_of,
    state,
    wait_for,
    wait_metric,
)
from tests.gitutil import commit, git, make_repo, remote_head, remote_refs, rev
from tests.upstream import Upstream

FAST_SYNC = dict(
    sync_user_delay_s="0.2", sync_synced_delay_s="0.1", sync_backoff_base_s="0.5",
    sync_backoff_max_s="1", fetch_timeout_s="2", fetch_cooloff_s="0.5", purgatory_sweep_s="0.2",
    outbound_allow_private="true",  # every upstream here is on 127.0.0.1 or localhost
)


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[list[Upstream]]:
    started = [Upstream(tmp_path / "up1", "127.0.0.1").start(), Upstream(tmp_path / "up2", "localhost").start()]
    yield started
    for upstream in started:
        upstream.stop()


async def wait_served(client: Client, ids: list[str], timeout: float = 20.0) -> float:
    """Poll with REQs until every id is served; returns the seconds it took."""
    started = time.monotonic()

    async def served() -> bool:
        return {e["id"] for e in await client.query({"ids": ids})} == set(ids)

    # polled every 0.25 s: well under the per-connection REQ rate limit
    await wait_for(served, f"{ids} released", timeout, every=0.25)
    return time.monotonic() - started


async def publish_repo(client: Client, daemon, identifier: str, clone_extra: list[str], refs: dict[str, str],
                       head: str = "refs/heads/main") -> tuple:
    ann = announcement(ALICE, daemon.domain, identifier, extra_clone=clone_extra)
    st = state(ALICE, identifier, refs, head)
    for event in (ann, st):
        ok, msg = await client.publish(event)
        assert ok and msg.startswith("purgatory:"), msg
    return ann, st


async def test_state_released_after_fetch_from_upstream(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**FAST_SYNC)
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=3)
    git("branch", "dev", "HEAD~1", cwd=work)
    up.make_repo("proj", work)
    refs = {"refs/heads/main": rev(work), "refs/heads/dev": rev(work, "dev")}
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "proj", [up.url_for("proj")], refs, head="refs/heads/dev")
        await wait_served(client, [ann.id, st.id])
        url = f"{daemon.http_url}/{npub_of(ALICE)}/proj.git"
        served = remote_refs(url)
        assert {k: v for k, v in served.items() if k != "HEAD"} == refs
        assert remote_head(url) == "refs/heads/dev"
        clone = tmp_path / "clone"
        git("clone", "-q", url, str(clone))
        assert rev(clone) == refs["refs/heads/dev"]
        assert not (daemon.data_dir / "quarantine").exists() or not any((daemon.data_dir / "quarantine").iterdir())
        assert up.fetches >= 1
    finally:
        await client.close()


async def test_pr_tip_fetched_from_its_own_clone_url(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**FAST_SYNC)
    fork = upstreams[1]
    work = make_repo(tmp_path / "w", commits=1)
    base = rev(work)
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "prs")
        st = state(ALICE, "prs", {"refs/heads/main": base})
        assert (await client.publish(ann))[0] and (await client.publish(st))[0]
        from tests.gitutil import push

        assert push(work, f"{daemon.http_url}/{npub_of(ALICE)}/prs.git", "main").returncode == 0
        tip = commit(work, "feature.txt")
        fork.make_repo("fork", work)
        tags = [["a", f"30617:{pubkey_of(ALICE)}:prs"], ["c", tip], ["clone", fork.url_for("fork")],
                ["subject", "feature"]]
        pr = sign_event(CAROL, 1618, "a PR", tags, now())
        ok, msg = await client.publish(pr)
        assert ok and msg.startswith("purgatory:")
        await wait_served(client, [pr.id])
        assert remote_refs(f"{daemon.http_url}/{npub_of(ALICE)}/prs.git")[f"refs/nostr/{pr.id}"] == tip
    finally:
        await client.close()


async def test_data_spread_over_two_upstreams(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**FAST_SYNC)
    work = make_repo(tmp_path / "w", commits=1)
    git("checkout", "-q", "-b", "a", cwd=work)
    a_tip = commit(work, "a.txt")
    git("checkout", "-q", "-b", "b", "main", cwd=work)
    b_tip = commit(work, "b.txt")
    # each upstream gets one branch only
    first = tmp_path / "first"
    git("clone", "-q", "--bare", "--single-branch", "-b", "a", str(work), str(first))
    second = tmp_path / "second"
    git("clone", "-q", "--bare", "--single-branch", "-b", "b", str(work), str(second))
    upstreams[0].make_repo("spread", first)
    upstreams[1].make_repo("spread", second)
    refs = {"refs/heads/a": a_tip, "refs/heads/b": b_tip}
    client = await Client.connect(daemon.ws_url)
    try:
        urls = [upstreams[0].url_for("spread"), upstreams[1].url_for("spread")]
        ann, st = await publish_repo(client, daemon, "spread", urls, refs, head="refs/heads/a")
        await wait_served(client, [ann.id, st.id])
        served = remote_refs(f"{daemon.http_url}/{npub_of(ALICE)}/spread.git")
        assert served["refs/heads/a"] == a_tip and served["refs/heads/b"] == b_tip
        assert upstreams[0].fetches >= 1 and upstreams[1].fetches >= 1
    finally:
        await client.close()


async def test_per_object_retries_count_against_the_window(start_daemon, upstreams, tmp_path: Path) -> None:
    """Four branches, two on each upstream: every fetch asking for all four is refused ("not
    our ref") and the objects are asked for one by one. Each of those is a fetch session
    the upstream sees, so with 3 per window neither upstream may see more than 3 in any
    window (asked in one slot, the first upstream saw 5 within a second), and the data
    still all arrives."""
    window = 4.0
    daemon = start_daemon(**{**FAST_SYNC, "throttle_max_per_minute": "3", "throttle_window_s": str(window),
                             "fetch_timeout_s": "10"})
    work = make_repo(tmp_path / "w", commits=1)
    tips: dict[str, str] = {}
    for branch in ("a1", "a2", "b1", "b2"):  # independent branches: no fetch brings another
        git("checkout", "-q", "-b", branch, "main", cwd=work)
        tips[f"refs/heads/{branch}"] = commit(work, f"{branch}.txt")
    for upstream, branches in ((upstreams[0], ("a1", "a2")), (upstreams[1], ("b1", "b2"))):
        bare = tmp_path / f"only-{branches[0]}"
        git("init", "-q", "--bare", str(bare))
        git("push", "-q", str(bare), *branches, cwd=work)
        upstream.make_repo("split", bare)
    client = await Client.connect(daemon.ws_url)
    try:
        urls = [upstreams[0].url_for("split"), upstreams[1].url_for("split")]
        ann, st = await publish_repo(client, daemon, "split", urls, tips, head="refs/heads/a1")
        await wait_served(client, [ann.id, st.id], timeout=40)
        served = remote_refs(f"{daemon.http_url}/{npub_of(ALICE)}/split.git")
        assert {k: v for k, v in served.items() if k != "HEAD"} == tips
        for upstream in upstreams:
            assert upstream.max_fetches_in_window(window) <= 3, upstream.fetch_starts
        # the first upstream is asked first: its refused fetch, then at least one object alone
        # (how many before the window cuts depends on how the object ids sort)
        assert upstreams[0].fetches >= 2
    finally:
        await client.close()


async def test_upstream_500_then_recovers(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**FAST_SYNC)
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    up.make_repo("flaky", work)
    up.fail_next(2)
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "flaky", [up.url_for("flaky")], {"refs/heads/main": rev(work)})
        await wait_served(client, [ann.id, st.id])
        assert up.requests >= 3  # two refused, then a fetch that worked
    finally:
        await client.close()


async def test_hanging_upstream_times_out_and_identifier_is_not_stuck(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**{**FAST_SYNC, "fetch_timeout_s": "1"})
    hanging, good = upstreams
    work = make_repo(tmp_path / "w", commits=1)
    hanging.make_repo("h", work)
    hanging.hang = True
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "h", [hanging.url_for("h")], {"refs/heads/main": rev(work)})
        # the relay gave up on the upstream that never answers: its fetch is counted as timed out
        await wait_metric(daemon, "grasp_sync_fetches_total", 1, domain=hanging.domain, outcome="timeout")
        assert await client.query({"ids": [st.id]}) == []
        assert hanging.fetches >= 1
        good.make_repo("h", work)  # a second clone URL appears in an updated announcement
        ann2 = announcement(ALICE, daemon.domain, "h", extra_clone=[hanging.url_for("h"), good.url_for("h")],
                            created_at=ann.created_at + 1)
        assert (await client.publish(ann2))[0]
        await wait_served(client, [st.id])
    finally:
        await client.close()


async def test_expiry_while_upstream_stays_down(start_daemon, upstreams, tmp_path: Path) -> None:
    daemon = start_daemon(**{**FAST_SYNC, "purgatory_expiry_s": "2"})
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    up.make_repo("down", work)
    up.fail_next(10_000)
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "down", [up.url_for("down")], {"refs/heads/main": rev(work)})
        repo = daemon.data_dir / "repos" / npub_of(ALICE) / "down.git"
        quarantine = daemon.data_dir / "quarantine"

        def cleaned() -> bool:
            # the sweep discards the events first, then removes the repo and the quarantine
            held = json.loads(daemon.get("/health")[2])["purgatory"]
            return not held and not repo.exists() and not (quarantine.exists() and any(quarantine.iterdir()))

        await wait_for(cleaned, "the expired events, their repo and quarantine gone", timeout=15)
        assert json.loads(daemon.get("/health")[2])["purgatory"] == {}
        assert await client.query({"ids": [ann.id, st.id]}) == []
        assert not repo.exists()
        assert not quarantine.exists() or not any(quarantine.iterdir())
        assert up.requests >= 1
    finally:
        await client.close()


@pytest.mark.timeout(260)
async def test_throttle_limits_hold_against_a_real_upstream(start_daemon, upstreams, tmp_path: Path) -> None:
    """20 identifiers on one upstream, at most 2 fetches at once and 10 per minute. Two
    windows are needed; a third when a slow machine lets one fetch time out (a retry takes a
    slot of the window too), hence the generous bounds on time."""
    daemon = start_daemon(**{**FAST_SYNC, "throttle_max_concurrent": "2", "throttle_max_per_minute": "10",
                             "purgatory_expiry_s": "600", "fetch_timeout_s": "15"})
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    client = await Client.connect(daemon.ws_url)
    ids: list[str] = []
    try:
        for i in range(20):
            name = f"t{i}"
            tip = commit(work, f"f{i}.txt")
            up.make_repo(name, work)
            ann, st = await publish_repo(client, daemon, name, [up.url_for(name)], {"refs/heads/main": tip})
            ids += [ann.id, st.id]
        took = await wait_served(client, ids, timeout=240)
        assert up.fetches == 20  # no repo fetched twice (main path and domain queue)
        assert up.max_fetches_in_window(60.0) <= 10
        assert up.peak <= 2
        assert took >= 55  # the second ten had to wait for the window
        waits = metric(daemon.get("/metrics")[2].decode(), "grasp_throttle_waits_total", domain=up.domain)
        assert waits >= 10  # the second ten waited in the domain's queue
    finally:
        await client.close()


async def test_restart_syncs_waiting_identifiers_at_once(start_daemon, upstreams, tmp_path: Path) -> None:
    """Events held when the relay stops are fetched right after it starts again, without
    waiting for the (here very long) client delay."""
    data = tmp_path / "restart"
    slow = {**FAST_SYNC, "sync_user_delay_s": "600"}
    daemon = start_daemon(data, **slow)
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    up.make_repo("later", work)
    client = await Client.connect(daemon.ws_url)
    ann, st = await publish_repo(client, daemon, "later", [up.url_for("later")], {"refs/heads/main": rev(work)})
    await client.close()
    # the relay must stay silent: five times the 0.2 s delay the other tests' fetches wait
    await asyncio.sleep(1.0)
    assert up.fetches == 0  # the 600 s delay holds it back
    daemon.kill9()
    daemon.start()
    client = await Client.connect(daemon.ws_url)
    try:
        await wait_served(client, [ann.id, st.id], timeout=20)
        assert up.fetches >= 1
    finally:
        await client.close()


async def test_grasp02_events_and_data_come_from_a_peer_relay(start_daemon, tmp_path: Path) -> None:
    """Alice's repo lists two GRASP relays. Everything is published and pushed to B only; A,
    given just the announcement, subscribes to B, gets the state and an issue from it, and
    fetches the git data from B's clone URL."""
    b = start_daemon(tmp_path / "b", **FAST_SYNC)
    a = start_daemon(tmp_path / "a", **{**FAST_SYNC, "sync_user_delay_s": "600",
                                         "peer_refresh_s": "0.3", "peer_backoff_s": "0.3"})
    npub = npub_of(ALICE)
    tags = [["d", "both"], ["name", "both"],
            ["clone", f"{a.http_url}/{npub}/both.git", f"{b.http_url}/{npub}/both.git"],
            ["relays", a.ws_url, b.ws_url]]
    ann = sign_event(ALICE, 30617, "", tags, now())
    work = make_repo(tmp_path / "w", commits=2)
    st = state(ALICE, "both", {"refs/heads/main": rev(work)})
    from tests.daemon import BOB, issue

    bug = issue(BOB, pubkey_of(ALICE), "both")
    on_b = await Client.connect(b.ws_url)
    try:
        for event in (ann, st):
            assert (await on_b.publish(event))[0]
        from tests.gitutil import push

        assert push(work, f"{b.http_url}/{npub}/both.git", "main").returncode == 0
        assert (await on_b.publish(bug)) == (True, "")
    finally:
        await on_b.close()
    on_a = await Client.connect(a.ws_url)
    try:
        ok, msg = await on_a.publish(ann)
        assert ok and msg.startswith("purgatory:")
        await wait_served(on_a, [ann.id, st.id, bug.id], timeout=20)
        assert remote_refs(f"{a.http_url}/{npub}/both.git")["refs/heads/main"] == rev(work)
    finally:
        await on_a.close()


async def test_private_addresses_are_not_fetched_by_default(start_daemon, upstreams, tmp_path: Path) -> None:
    """An announcement chooses the URLs the relay fetches from; by default loopback and
    private addresses are refused, so an announcement cannot probe the relay's network."""
    daemon = start_daemon(**{**FAST_SYNC, "outbound_allow_private": "false"})
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    up.make_repo("inside", work)
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "inside", [up.url_for("inside")], {"refs/heads/main": rev(work)})
        await wait_metric(daemon, "grasp_sync_fetches_total", 1, domain=up.domain, outcome="blocked")
        assert up.requests == 0
        assert await client.query({"ids": [st.id]}) == []
    finally:
        await client.close()


async def test_later_state_fetches_only_what_the_relay_lacks(start_daemon, upstreams, tmp_path: Path) -> None:
    """A new state of a repo the relay already serves: the fetch tells the upstream what is
    served here, so the large history is not sent again, only the new commit."""
    import os

    daemon = start_daemon(**FAST_SYNC)
    up = upstreams[0]
    work = make_repo(tmp_path / "w", commits=1)
    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    bare = up.make_repo("hist", work)
    client = await Client.connect(daemon.ws_url)
    try:
        ann, st = await publish_repo(client, daemon, "hist", [up.url_for("hist")], {"refs/heads/main": rev(work)})
        await wait_served(client, [ann.id, st.id])
        first = up.bytes_sent
        assert first > 3 * 1024 * 1024  # the whole history, once
        tip = commit(work, "small.txt")
        git("push", "-q", str(bare), "main", cwd=work)
        up.reset_counters()
        st2 = state(ALICE, "hist", {"refs/heads/main": tip}, created_at=st.created_at + 1)
        ok, msg = await client.publish(st2)
        assert ok and msg.startswith("purgatory:"), msg
        await wait_served(client, [st2.id])
        assert remote_refs(f"{daemon.http_url}/{npub_of(ALICE)}/hist.git")["refs/heads/main"] == tip
        assert 0 < up.bytes_sent < 256 * 1024, up.bytes_sent
    finally:
        await client.close()
