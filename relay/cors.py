"""CORS headers for every HTTP answer, errors included: browser git clients (isomorphic-git)
talk to the relay cross-origin and read error bodies too."""

from __future__ import annotations

CORS_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST"),
    (
        b"access-control-allow-headers",
        b"Content-Type, Git-Protocol, Authorization, Accept, Content-Encoding",
    ),
)


def cors_headers() -> list[tuple[bytes, bytes]]:
    """A fresh list of the CORS header pairs, in ASGI form, for callers to extend."""
    return list(CORS_HEADERS)
