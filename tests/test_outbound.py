"""Unit tests of the outbound address guard."""

from __future__ import annotations

import pytest

from purgatory.fetch.outbound import (
    GIT_SCHEMES,
    check_clone_url,
    check_outbound,
    is_public,
    outbound_refusal,
    scheme_refusal,
)


@pytest.mark.parametrize("address,public", [
    ("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("192.168.0.1", False), ("172.16.5.5", False), ("169.254.1.1", False), ("::1", False),
    ("fe80::1%eth0", False), ("0.0.0.0", False), ("not-an-ip", False),
])
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_refusals() -> None:
    assert "non-public" in (await outbound_refusal("http://127.0.0.1:9/x.git", False, GIT_SCHEMES) or "")
    assert "non-public" in (await outbound_refusal("ws://localhost:9", False) or "")
    assert await outbound_refusal("http://127.0.0.1:9/x.git", True, GIT_SCHEMES) is None
    assert await outbound_refusal("http:///nohost", True, GIT_SCHEMES) == "URL has no host"
    assert "cannot resolve" in (await outbound_refusal("https://nonexistent.invalid/x.git", False, GIT_SCHEMES) or "")


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "file://localhost/srv/repo.git", "ssh://git@example.org/x.git", "git://example.org/x.git",
    "git@example.org:x/y.git", "example.org:x/y.git", "/srv/git/x.git", "./x.git", "ftp://example.org/x.git",
    "ws://example.org/x.git", "http:/example.org/x.git", " https://example.org/x.git", "https://exa\tmple.org/x.git",
    "https://example.org/x\n.git", "ext::sh -c touch% /tmp/pwned",
])
async def test_clone_urls_other_than_http_and_https_are_refused_even_with_private_allowed(url: str) -> None:
    """libgit2 would read all of these (local paths, file://, ssh, scp-like, transports)."""
    check = await check_clone_url(url, True)
    assert check.refusal and check.addresses == ()
    assert scheme_refusal(url, GIT_SCHEMES) == check.refusal


async def test_clone_url_refusal_reasons_name_the_rule() -> None:
    assert (await check_clone_url("ssh://git@example.org/x.git", True)).refusal == \
        "scheme 'ssh' is not allowed; only http, https"
    assert "scp-like" in ((await check_clone_url("git@example.org:x/y.git", True)).refusal or "")
    assert "control characters" in ((await check_clone_url("https://a.example/x\n", True)).refusal or "")


async def test_http_and_https_clone_urls_and_ws_peers_pass_the_scheme_rule() -> None:
    assert (await check_clone_url("HTTP://127.0.0.1:9/x.git", True)).addresses == ("127.0.0.1",)
    assert (await check_clone_url("https://127.0.0.1:9/x.git", True)).refusal is None
    assert (await check_outbound("wss://127.0.0.1:9", True)).refusal is None  # the peers' default
    assert "scheme 'http'" in ((await check_outbound("http://127.0.0.1:9", True)).refusal or "")
    assert "scheme 'ws'" in ((await check_clone_url("ws://127.0.0.1:9", True)).refusal or "")


async def test_check_gives_the_addresses_to_connect_to() -> None:
    allowed = await check_outbound("ws://localhost:9", True)
    assert allowed.refusal is None and set(allowed.addresses) & {"127.0.0.1", "::1"}
    refused = await check_outbound("ws://localhost:9", False)
    assert refused.refusal and refused.addresses == ()
    assert (await check_outbound("ws://127.0.0.1:9", True)).addresses == ("127.0.0.1",)


def test_peer_connections_are_pinned_to_the_checked_address() -> None:
    from relay.peers.sync import _pinned

    assert _pinned("wss://relay.example.org", ("203.0.113.7",)) == [{"host": "203.0.113.7", "port": 443, "proxy": None}]
    assert _pinned("ws://relay.example.org:7777/x", ("2001:db8::1",))[0]["port"] == 7777
    assert [o["host"] for o in _pinned("ws://relay.example.org", ("2001:db8::1", "203.0.113.7"))] == \
        ["203.0.113.7", "2001:db8::1"]  # IPv4 first, then the rest in turn
    assert _pinned("ws://relay.example.org", ("203.0.113.7",))[0]["port"] == 80
    assert _pinned("ws://relay.example.org", ()) == []


async def test_peer_connection_tries_the_checked_addresses_in_turn() -> None:
    """The first checked address refuses (nothing listens there); the next one is used."""
    from types import SimpleNamespace

    import websockets

    from config.settings import Settings
    from relay.peers.sync import PeerSync

    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        fake = SimpleNamespace(settings=Settings(peer_connect_timeout_s=5))
        url = f"ws://relay.invalid:{port}"  # never resolved: the pinned addresses are used
        async with await PeerSync._connect(fake, url, ("127.0.0.2", "127.0.0.1")) as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await ws.recv() == "hi"
        with pytest.raises(OSError):
            await PeerSync._connect(fake, url, ("127.0.0.2",))  # type: ignore[arg-type]
