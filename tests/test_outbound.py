"""Unit tests of the outbound address guard."""

from __future__ import annotations

import pytest

from purgatory.outbound import check_outbound, is_public, outbound_refusal


@pytest.mark.parametrize("address,public", [
    ("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("192.168.0.1", False), ("172.16.5.5", False), ("169.254.1.1", False), ("::1", False),
    ("fe80::1%eth0", False), ("0.0.0.0", False), ("not-an-ip", False),
])
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_refusals() -> None:
    assert "non-public" in (await outbound_refusal("http://127.0.0.1:9/x.git", False) or "")
    assert "non-public" in (await outbound_refusal("ws://localhost:9", False) or "")
    assert await outbound_refusal("http://127.0.0.1:9/x.git", True) is None
    assert await outbound_refusal("http:///nohost", True) == "URL has no host"
    assert "cannot resolve" in (await outbound_refusal("https://nonexistent.invalid/x.git", False) or "")


async def test_check_gives_the_addresses_to_connect_to() -> None:
    allowed = await check_outbound("ws://localhost:9", True)
    assert allowed.refusal is None and set(allowed.addresses) & {"127.0.0.1", "::1"}
    refused = await check_outbound("ws://localhost:9", False)
    assert refused.refusal and refused.addresses == ()
    assert (await check_outbound("ws://127.0.0.1:9", True)).addresses == ("127.0.0.1",)


def test_peer_connections_are_pinned_to_the_checked_address() -> None:
    from relay.peers import _pinned

    assert _pinned("wss://relay.example.org", ("203.0.113.7",)) == {"host": "203.0.113.7", "port": 443, "proxy": None}
    assert _pinned("ws://relay.example.org:7777/x", ("2001:db8::1",))["port"] == 7777
    assert _pinned("ws://relay.example.org", ("203.0.113.7",))["port"] == 80
    assert _pinned("ws://relay.example.org", ()) == {}
