"""Where one pinned fetch may go and how it gets there: the `Target` (the clone URL's scheme,
host, port and the addresses the outbound check approved) and `dial`, which connects to one
numeric address and speaks TLS itself for https (libgit2 is given no proxy: see the package
docstring for why its own https-through-a-proxy path cannot be used).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from purgatory.fetch.pinning.http1 import DEFAULT_PORTS


@lru_cache(maxsize=1)
def client_tls() -> ssl.SSLContext:
    """How the forwarder checks https servers: the default trust store (SSL_CERT_FILE and
    SSL_CERT_DIR are honoured) and the URL's host name. One context per process; tests add
    their own authority to it with `load_verify_locations`."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class Target:
    """Where one fetch may go: the clone URL's scheme, host and port as checked, the Host
    header it implies, and the checked addresses, IPv4 first."""

    scheme: str
    host: str  # as urlsplit gives it: lower case, IPv6 without brackets
    port: int
    authority: str  # host[:port] as written, without userinfo: the Host header
    path: str  # path and query, what libgit2 appends its service paths to
    addresses: tuple[str, ...]

    @classmethod
    def from_url(cls, url: str, addresses: Sequence[str]) -> Target:
        """Raises ValueError for anything but an http(s) URL with an ASCII host."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url[:200]}")
        authority = parts.netloc.rpartition("@")[2]
        if not authority.isascii():
            raise ValueError("non-ASCII host name; use its punycode form")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        ordered = tuple(sorted(dict.fromkeys(addresses), key=lambda address: ":" in address))
        return cls(parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], authority, path, ordered)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_name(self) -> str | None:
        return self.host if self.scheme == "https" else None



def dial(address: str, port: int, timeout_s: float, tls_name: str | None) -> socket.socket:
    """Connect to a numeric address (a host name fails instead of being resolved), then
    speak TLS to `tls_name` when given, its certificate checked against that name."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout_s)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_name is None:
            return sock
        return client_tls().wrap_socket(sock, server_hostname=tls_name)
    except BaseException:
        sock.close()
        raise
