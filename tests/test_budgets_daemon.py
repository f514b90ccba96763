"""Budgets through the running daemon: a client that does not read costs at most its outbox
budget, is told where its REQ was cut, gets one result for a REQ it repeats, and is dropped
once it stays congested; a query past the time budget is answered CLOSED while other
queries go on. Each of these behaved otherwise before the budgets (see the asserts)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets

from storage.nostr.event import sign_event
from tests.daemon import Client, Daemon, metric, now, wait_for, wait_metric
from tests.test_store_reads import corpus, fill

BIG_EVENTS = 30
CONTENT = 100_000


async def slow_client(daemon: Daemon) -> Any:
    """A websocket that reads nothing until told: a tiny receive buffer, and the library
    stops reading the socket after one queued message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", daemon.port))
    return await websockets.connect(daemon.ws_url, sock=sock, max_size=2**24, max_queue=1, open_timeout=10)


async def publish_big(daemon: Daemon, count: int = BIG_EVENTS, first: int = 0) -> None:
    """`count` kind 10317 lists (accepted from anyone) of CONTENT bytes each, by as many
    authors (the kind is replaceable): 3 MB of stored events one REQ returns."""
    client = await Client.connect(daemon.ws_url)
    try:
        for i in range(first, first + count):
            secret = f"{i + 1:064x}"
            event = sign_event(secret, 10317, "x" * CONTENT, [["g", f"wss://{i}.example"]], now())
            ok, msg = await client.publish(event)
            assert ok, msg
    finally:
        await client.close()


async def drain(ws: Any, until_sub: str | None = None, timeout: float = 3.0) -> list[list[Any]]:
    """Read what arrives until `until_sub` gets EOSE or CLOSED, or nothing comes for `timeout`."""
    frames: list[list[Any]] = []
    while True:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except TimeoutError:
            return frames
        frames.append(msg)
        if until_sub is not None and msg[0] in ("EOSE", "CLOSED") and msg[1] == until_sub:
            return frames


def answered(daemon: Daemon) -> float:
    """REQs the relay has answered: each ends in an EOSE (counted by the REQ latency
    histogram) or is closed at the outbox budget."""
    text = daemon.metrics()
    return (metric(text, "grasp_req_seconds_count")
            + metric(text, "grasp_budget_exceeded_total", budget="outbox", action="req_closed"))


async def wait_answered(daemon: Daemon, count: int) -> None:
    """Until the relay has answered `count` REQs, into a socket nobody reads."""
    await wait_for(lambda: answered(daemon) >= count, f"{count} REQs answered")


async def test_req_is_cut_at_the_outbox_budget_then_closed(start_daemon) -> None:
    """Four REQs of 3 MB each into a socket nobody reads: the kernel takes a few MB, the outbox
    256 kB, and what does not fit is cut with a reason (the first REQ may fit whole)."""
    daemon = start_daemon(outbox_max_bytes=256 * 1024, outbox_stall_s=60)
    await publish_big(daemon)
    ws = await slow_client(daemon)
    subs = [f"big{i}" for i in range(4)]
    try:
        for sub in subs:
            await ws.send(json.dumps(["REQ", sub, {"kinds": [10317]}]))
        await wait_answered(daemon, len(subs))
        frames = await drain(ws, timeout=3.0)
    finally:
        await ws.close()
    ends = {f[1]: f for f in frames if f[0] in ("EOSE", "CLOSED")}
    assert set(ends) == set(subs)  # every REQ got its answer
    cut = [sub for sub, end in ends.items() if end[0] == "CLOSED"]
    # before the budget: four full results and four EOSE, 12 MB queued for a non-reader. Now
    # at least one is cut where it stopped fitting; once the outbox is full, the next REQs
    # are refused before any query ("not reading what it asked for")
    reasons = [ends[sub][2] for sub in cut]
    assert any(r.startswith("error: results were cut") for r in reasons)
    assert all(r.startswith(("error: results were cut", "error: this connection is not reading")) for r in reasons)
    for sub in cut:
        created = [f[2]["created_at"] for f in frames if f[0] == "EVENT" and f[1] == sub]
        assert len(created) < BIG_EVENTS
        assert created == sorted(created, reverse=True)  # newest first: a client can go on with until
    text = daemon.metrics()
    assert metric(text, "grasp_budget_exceeded_total", budget="outbox", action="req_closed") == len(cut)


async def test_repeated_req_replaces_the_unsent_result(start_daemon) -> None:
    daemon = start_daemon(outbox_max_bytes=16 * 1024**2)
    await publish_big(daemon)
    ws = await slow_client(daemon)
    try:
        for _ in range(5):
            await ws.send(json.dumps(["REQ", "same", {"kinds": [10317]}]))
        await ws.send(json.dumps(["NOTICE-ME"]))  # an answer that marks the end of the REQs
        await wait_answered(daemon, 5)
        frames = await drain(ws, timeout=3.0)
    finally:
        await ws.close()
    eose = [f for f in frames if f[0] == "EOSE"]
    events = [f for f in frames if f[0] == "EVENT"]
    # before: five full results (150 events, 15 MB queued) and five EOSE. Now: the last result
    # whole, and of the earlier ones what the kernel had already taken (a few MB)
    assert len(eose) == 1 and frames[-1][0] == "NOTICE"
    assert BIG_EVENTS <= len(events) <= 2 * BIG_EVENTS + 5


async def test_live_subscription_that_overflows_is_closed(start_daemon) -> None:
    """Live events for a client that does not read: they fill its outbox, then the
    subscription is closed with a reason instead of silently missing events."""
    daemon = start_daemon(outbox_max_bytes=256 * 1024, outbox_stall_s=60)
    ws = await slow_client(daemon)
    try:
        await ws.send(json.dumps(["REQ", "live", {"kinds": [10317]}]))
        await wait_metric(daemon, "grasp_subscriptions", 1)  # live from here on
        await publish_big(daemon, count=80)  # 8 MB: past the kernel's buffers and the budget
        await wait_metric(daemon, "grasp_budget_exceeded_total", 1, budget="outbox", action="subscription_closed")
        frames = await drain(ws, timeout=3.0)
    finally:
        await ws.close()
    live = [f for f in frames if f[0] == "EVENT" and f[1] == "live"]
    closed = [f for f in frames if f[0] == "CLOSED"]
    # before: all 80 queued, however long the client takes
    assert len(closed) == 1 and closed[0][1] == "live" and frames[-1] == closed[0]
    assert "live events for this subscription were dropped" in closed[0][2]
    assert 0 < len(live) < 80
    assert metric(daemon.metrics(), "grasp_budget_exceeded_total", budget="outbox",
                  action="subscription_closed") == 1


async def test_client_that_stays_congested_is_dropped(start_daemon) -> None:
    daemon = start_daemon(outbox_max_bytes=256 * 1024, outbox_stall_s=1)
    await publish_big(daemon)
    ws = await slow_client(daemon)
    other = await Client.connect(daemon.ws_url)
    try:
        # each REQ is cut near the budget, but the kernel takes ~4 MB before the socket is
        # full: 40 of them outlast both, and the outbox stays full
        for i in range(40):
            await ws.send(json.dumps(["REQ", f"big{i}", {"kinds": [10317]}]))
        await wait_metric(daemon, "grasp_budget_exceeded_total", 1, budget="outbox", action="connection_dropped")
        text = daemon.metrics()
        # before: a client that never reads was kept, with everything queued, forever
        assert metric(text, "grasp_budget_exceeded_total", budget="outbox", action="connection_dropped") == 1
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert len(await other.query({"kinds": [10317], "limit": 2})) == 2  # the others are served
    finally:
        await ws.close()
        await other.close()
    assert "slow_consumer_dropped" in daemon.log_path.read_text()
    await wait_for(lambda: daemon.metric("grasp_connections") == 0, "no connection counted once all closed")


async def test_query_past_its_budget_is_closed_and_others_go_on(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "big"
    fill(data / "events.sqlite3", corpus())
    daemon = start_daemon(data, query_budget_s=0.003)
    client = await Client.connect(daemon.ws_url)
    try:
        both = {"#t": ["bug"], "#p": ["x" * 64]}  # two large tags, nothing in common: a scan
        await client.send(["REQ", "scan", both])
        msg = await client.recv()
        # before: the scan ran to its end (EOSE), holding a reader for as long as it took
        assert msg[:2] == ["CLOSED", "scan"] and msg[2].startswith("error: this query needs more")
        await client.send(["COUNT", "n", both])
        msg = await client.recv()
        assert msg[:2] == ["CLOSED", "n"] and msg[2].startswith("error:")
        assert len(await client.query({"#t": ["bug"], "limit": 5})) == 5
        await client.send(["COUNT", "c", {"#t": ["bug"]}])
        assert await client.recv() == ["COUNT", "c", {"count": 12_000}]
    finally:
        await client.close()
    text = daemon.metrics()
    assert metric(text, "grasp_budget_exceeded_total", budget="query", action="req_closed") == 1
    assert metric(text, "grasp_budget_exceeded_total", budget="query", action="count_closed") == 1
