"""Unit tests of the outbound address guard."""

from __future__ import annotations

import pytest

from purgatory.outbound import is_public, outbound_refusal


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
