"""Running it as a service, through the daemon: health and metrics after a known sequence,
abuse limits, SIGHUP reload, SIGTERM during a push."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets

from storage.nostr.event import sign_event
from tests.daemon import (
    ALICE,
    BOB,
    CAROL,
    Client,
    announcement,
    issue,
    metric,
    now,
    npub_of,
    pubkey_of,
    state,
    wait_for,
    wait_log,
    wait_metric,
)
from tests.gitutil import commit, git, make_repo, push, remote_refs, rev
from tests.test_push_integrity import Z as ZERO
from tests.test_push_integrity import commands, pack_of


async def refused_upgrade(url: str, headers: dict[str, str] | None = None) -> Any:
    """Connect and expect the upgrade to be refused with 429; returns the HTTP response."""
    try:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=5)
    except websockets.exceptions.InvalidStatus as exc:
        assert exc.response.status_code == 429
        return exc.response
    await ws.close()
    raise AssertionError("the connection was accepted over a connection limit")


async def test_health_and_metrics_count_a_known_sequence(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "m")
        st = state(ALICE, "m", {"refs/heads/main": rev(work)})
        assert (await client.publish(ann))[0] and (await client.publish(st))[0]
        health = json.loads(daemon.get("/health")[2])
        assert health["purgatory"] == {"30617": 1, "30618": 1} and health["store_ok"] is True
        assert not (await client.publish(issue(BOB, pubkey_of(CAROL), "none")))[0]
        assert push(work, f"{daemon.http_url}/{npub_of(ALICE)}/m.git", "main").returncode == 0
        refused = push(work, f"{daemon.http_url}/{npub_of(ALICE)}/m.git", "main:refs/heads/other")
        assert refused.returncode != 0
        assert (await client.publish(issue(BOB, pubkey_of(ALICE), "m")))[0]
        health = json.loads(daemon.get("/health")[2])
        assert health["purgatory"] == {} and health["connections"] == 1
        status, headers, body = daemon.get("/metrics")
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert metric(text, "grasp_events_received_total", kind="30617") == 1
        assert metric(text, "grasp_events_accepted_total", kind="1621") == 1
        assert metric(text, "grasp_events_rejected_total", kind="1621", reason="blocked") == 1
        assert metric(text, "grasp_purgatory_events_total", kind="30618", outcome="held") == 1
        assert metric(text, "grasp_purgatory_events_total", kind="30618", outcome="released") == 1
        assert metric(text, "grasp_purgatory_events_total", kind="30617", outcome="released") == 1
        assert metric(text, "grasp_push_authorisations_total", result="accepted") == 1
        assert metric(text, "grasp_push_authorisations_total", result="refused") == 1
        assert metric(text, "grasp_connections") == 1
        assert "127.0.0.1" not in text and pubkey_of(ALICE) not in text
        lines = daemon.log_records()
        push_ids = {line["request_id"] for line in lines if line["event"] == "push" and line["result"] == "accepted"}
        released = [line for line in lines if line["event"] == "purgatory_released"]
        assert len(push_ids) == 1 and {line["request_id"] for line in released} == push_ids
        assert any(line["event"] == "event_rejected" and line.get("event_id") for line in lines)
        accepted = [line for line in lines if line["event"] == "event_accepted"]
        assert {line["kind"] for line in accepted} >= {30617, 30618, 1621}
    finally:
        await client.close()


async def test_metrics_can_be_switched_off(start_daemon) -> None:
    daemon = start_daemon(metrics_enabled="false")
    assert daemon.get("/metrics")[0] == 404


async def test_connection_limits_answer_429_and_others_keep_working(start_daemon) -> None:
    daemon = start_daemon(max_connections_per_ip="2")
    first = await Client.connect(daemon.ws_url)
    second = await Client.connect(daemon.ws_url)
    try:
        response = await refused_upgrade(daemon.ws_url)
        assert response.headers["Retry-After"] == "10"
        assert b"rate-limited:" in response.body
        assert (await first.publish(sign_event(CAROL, 10317, "", [], now())))[0]
    finally:
        await first.close()
        await second.close()

    async def accepted() -> Client | None:
        try:
            return await Client.connect(daemon.ws_url)
        except websockets.exceptions.InvalidStatus:
            return None

    # the server frees the slots once it sees the closes
    third = await wait_for(accepted, "a connection accepted once the others closed", timeout=10)
    await third.close()


async def test_event_and_req_rate_limits(start_daemon) -> None:
    daemon = start_daemon(events_per_minute_per_conn="3", reqs_per_minute_per_conn="2")
    client = await Client.connect(daemon.ws_url)
    other = await Client.connect(daemon.ws_url)
    try:
        results = [await client.publish(sign_event(CAROL, 10317, "", [["g", str(i)]], now() - i)) for i in range(4)]
        assert [ok for ok, _ in results[:3]] == [True] * 3
        assert results[3][0] is False and results[3][1].startswith("rate-limited:")
        assert (await other.publish(sign_event(BOB, 10317, "", [], now())))[0]
        assert await client.query({"kinds": [0]}, sub_id="a") == []
        assert await client.query({"kinds": [0]}, sub_id="b") == []
        await client.send(["REQ", "c", {"kinds": [0]}])
        msg = await client.recv()
        assert msg[:2] == ["CLOSED", "c"] and msg[2].startswith("rate-limited:")
    finally:
        await client.close()
        await other.close()


async def test_events_per_ip_limit_counts_across_connections(start_daemon) -> None:
    daemon = start_daemon(events_per_minute_per_ip="2")
    a = await Client.connect(daemon.ws_url)
    b = await Client.connect(daemon.ws_url)
    try:
        assert (await a.publish(sign_event(CAROL, 10317, "", [], now())))[0]
        assert (await b.publish(sign_event(BOB, 10317, "", [], now())))[0]
        ok, msg = await a.publish(sign_event(ALICE, 10317, "", [], now()))
        assert not ok and "from your address" in msg
    finally:
        await a.close()
        await b.close()


async def test_sighup_reloads_blacklist(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    client = await Client.connect(daemon.ws_url)
    try:
        assert (await client.publish(sign_event(CAROL, 10317, "", [], now() - 5)))[0]
        (daemon.data_dir.parent / ".env").write_text(f"GRASP_PUBKEY_BLACKLIST={npub_of(CAROL)}\n")
        mark = daemon.log_length()
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_log(daemon, "reloaded", mark)
        ok, msg = await client.publish(sign_event(CAROL, 10317, "", [["g", "x"]], now()))
        assert not ok and msg.startswith("blocked:")
        assert (await client.publish(sign_event(BOB, 10317, "", [], now())))[0]
        doc = json.loads(daemon.get("/", {"Accept": "application/nostr+json"})[2])
        assert "curation" in doc
    finally:
        await client.close()


def _open_push(daemon, path: str, head: bytes, pack: bytes, sent: int) -> socket.socket:
    """A push sent by hand so it can be held mid-body: the request, the commands and the
    first `sent` bytes of the pack; the rest is the caller's to send, or not."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
    request = (f"POST {path} HTTP/1.1\r\nHost: {daemon.domain}\r\n"
               "Content-Type: application/x-git-receive-pack-request\r\n"
               f"Content-Length: {len(head) + len(pack)}\r\n\r\n").encode()
    sock.sendall(request + head + pack[:sent])
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    return answer


@pytest.mark.parametrize("client_finishes", [True, False], ids=["push-finishes", "push-abandoned"])
async def test_sigterm_during_push_leaves_repo_consistent(start_daemon, tmp_path: Path,
                                                         client_finishes: bool) -> None:
    """SIGTERM while a push is under way: the relay has read its commands and authorised it
    (the metric says so) and holds half of its pack. The relay stops accepting and drains:
    a pusher that sends the rest gets its push landed (the ref, and the state it released,
    are there after a restart); one that sends nothing more is cut at the shutdown timeout
    and leaves nothing (no ref, the state still held). Either way the repo passes fsck, the
    relay exits 0, and every event it acknowledged is still there."""
    daemon = start_daemon(tmp_path / "termdata", shutdown_timeout_s="2")
    work = make_repo(tmp_path / "work", commits=1)
    (work / "blob.bin").write_bytes(os.urandom(2_000_000))
    tip = commit(work, "marker.txt")
    client = await Client.connect(daemon.ws_url)
    ann = announcement(ALICE, daemon.domain, "term")
    st = state(ALICE, "term", {"refs/heads/main": tip})
    assert (await client.publish(ann))[0] and (await client.publish(st))[0]
    accepted = sign_event(CAROL, 10317, "", [], now())
    assert (await client.publish(accepted))[0]
    pack = pack_of(work, tip)
    push_path = f"/{npub_of(ALICE)}/term.git/git-receive-pack"
    sock = _open_push(daemon, push_path, commands((ZERO, tip, "refs/heads/main")), pack, len(pack) // 2)
    with sock:
        # under way: authorised, its body being spooled, nothing landed yet
        await wait_metric(daemon, "grasp_push_authorisations_total", 1, result="accepted")
        assert daemon.metric("grasp_git_operations_total", service="receive-pack", outcome="ok") == 0
        mark = daemon.log_length()
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        # uvicorn has stopped accepting and waits for the open push (and the websocket)
        await wait_log(daemon, "Waiting for connections to close. (CTRL+C to force quit)", mark)
        if client_finishes:
            sock.sendall(pack[len(pack) // 2:])
            answer = await asyncio.to_thread(_read_to_end, sock)
            assert b" 200 " in answer.split(b"\r\n", 1)[0] and b"ok refs/heads/main" in answer, answer[-500:]
        code = await asyncio.to_thread(daemon.wait_exit, 30.0)  # SIGTERM already sent: no second one
    await client.close()
    assert code == 0, daemon.log()
    repo = daemon.data_dir / "repos" / npub_of(ALICE) / "term.git"
    assert git("fsck", "--no-dangling", cwd=repo, check=False).returncode == 0
    daemon.start()
    client = await Client.connect(daemon.ws_url)
    try:
        assert [e["id"] for e in await client.query({"ids": [accepted.id]})] == [accepted.id]
        refs = remote_refs(f"{daemon.http_url}/{npub_of(ALICE)}/term.git")
        served = {e["id"] for e in await client.query({"ids": [ann.id, st.id]})}
        held = json.loads(daemon.get("/health")[2])["purgatory"]
        if client_finishes:  # landed before the exit: the data, and the events it released
            assert refs.get("refs/heads/main") == tip and served == {ann.id, st.id} and held == {}
        else:  # cut: no ref, no stray objects served, the events still waiting for their data
            assert "refs/heads/main" not in refs and served == set()
            assert held == {"30617": 1, "30618": 1}
            counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=repo).stdout.splitlines())
            assert counts["count"] == "0" and counts["in-pack"] == "0", counts
    finally:
        await client.close()


async def test_refs_nostr_push_limits(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(nostr_ref_pushes_per_ip_per_hour="1", nostr_ref_push_max_bytes="65536")
    work = make_repo(tmp_path / "work", commits=1)
    client = await Client.connect(daemon.ws_url)
    try:
        ann = announcement(ALICE, daemon.domain, "n")
        st = state(ALICE, "n", {"refs/heads/main": rev(work)})
        assert (await client.publish(ann))[0] and (await client.publish(st))[0]
        url = f"{daemon.http_url}/{npub_of(ALICE)}/n.git"
        assert push(work, url, "main").returncode == 0  # branch pushes are not PR pushes
        first = commit(work, "one.txt")
        assert push(work, url, f"{first}:refs/nostr/{'1' * 64}").returncode == 0
        second = commit(work, "two.txt")
        limited = push(work, url, f"{second}:refs/nostr/{'2' * 64}")
        assert limited.returncode != 0 and "rate-limited:" in limited.stderr + limited.stdout
    finally:
        await client.close()
    other = start_daemon(nostr_ref_push_max_bytes="65536")
    big_work = make_repo(tmp_path / "big", commits=1)
    client = await Client.connect(other.ws_url)
    try:
        assert (await client.publish(announcement(ALICE, other.domain, "n")))[0]
        (big_work / "blob.bin").write_bytes(os.urandom(300_000))
        tip = commit(big_work, "big.txt")
        url = f"{other.http_url}/{npub_of(ALICE)}/n.git"
        too_big = push(big_work, url, f"{tip}:refs/nostr/{'3' * 64}")
        assert too_big.returncode != 0
        assert f"refs/nostr/{'3' * 64}" not in remote_refs(url)
        assert other.get("/health")[0] == 200
    finally:
        await client.close()


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(start_daemon) -> None:
    """With no trusted proxies, a client on 127.0.0.1 cannot dodge the per-address limit by
    claiming other addresses; with 127.0.0.1 trusted, each forwarded address counts alone."""
    untrusting = start_daemon(max_connections_per_ip="1")
    first = await websockets.connect(untrusting.ws_url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
    try:
        await refused_upgrade(untrusting.ws_url, {"X-Forwarded-For": "198.51.100.2"})
    finally:
        await first.close()
    trusting = start_daemon(max_connections_per_ip="1", trusted_proxies="127.0.0.1")
    a = await websockets.connect(trusting.ws_url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
    b = await websockets.connect(trusting.ws_url, additional_headers={"X-Forwarded-For": "198.51.100.2"})
    await a.close()
    await b.close()


async def test_total_connection_limit(start_daemon) -> None:
    daemon = start_daemon(max_connections="2", max_connections_per_ip="50")
    first = await Client.connect(daemon.ws_url)
    second = await Client.connect(daemon.ws_url)
    try:
        assert b"limit of 2 connections" in (await refused_upgrade(daemon.ws_url)).body
        assert daemon.get("/health")[0] == 200  # plain HTTP keeps being served
    finally:
        await first.close()
        await second.close()
