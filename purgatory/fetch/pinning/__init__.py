"""Pinned fetches: libgit2 reaches only the addresses the outbound check approved, and a
server cannot redirect a fetch anywhere else.

Why: `outbound.check_clone_url` resolves the clone URL's host and checks the addresses, but
libgit2 would resolve the name once more itself (a DNS answer that changes in between, "DNS
rebinding", sends the fetch to 127.0.0.1 or the intranet), and it follows HTTP redirects. So
every fetch gets its own small forwarder on 127.0.0.1 (an ephemeral port, its own threads,
cut when the fetch ends or is abandoned). libgit2 is told the forwarder *is* the server
(`http://127.0.0.1:P/<path>`, no proxy); the forwarder dials only the checked addresses
(IPv4 first, in turn), speaks TLS itself for https URLs, and passes requests and responses
on one by one, reading every head: a request for another host or port is refused (403), a
3xx response is replaced by a 502, and nothing it does not understand is passed on.

libgit2 1.9.7 facts this is built on (read in src/libgit2/transports/{http,httpclient}.c,
remote.c, streams/{socket,openssl}.c and src/util/net.c; checked by tests/test_pinning.py):

- **Plain http never goes through a proxy.** With a proxy given (`GIT_PROXY_SPECIFIED`),
  libgit2 writes the absolute-form request line `GET http://host:port/path HTTP/1.1` but opens
  the socket straight to host:port, resolving the name itself: only https uses the proxy
  (`use_connect_proxy()` is true for https alone; `server_connect()` dials the server unless
  a proxy stream exists). That is why an earlier prototype saw its proxy ignored. It is not
  the proxy URL's form (`http://127.0.0.1:P`, with or without a trailing slash, or without a
  scheme, all parse), not no_proxy/NO_PROXY (read only for `GIT_PROXY_AUTO`, pygit2's
  `proxy=True`), and there is no loopback bypass. pygit2 1.21 maps `proxy=None` to
  `GIT_PROXY_NONE`, `True` to `GIT_PROXY_AUTO`, and only an exact `str` to `GIT_PROXY_SPECIFIED`.
- **https through a proxy is unsafe to use.** libgit2 does send `CONNECT host:port` and runs
  TLS through the tunnel, but when the server's certificate is rejected,
  `http_client_connect()` frees the proxy stream before closing the TLS stream layered on it;
  the TLS close then writes its alert through the freed stream (a use-after-free, still there
  on libgit2's main branch) and the fetch thread was seen blocked in poll() for good. An
  expired or mismatched certificate upstream must not hang a worker thread, so libgit2 is
  given no proxy at all and the forwarder does TLS (Python's `ssl`, default trust store,
  host name checked; `client_tls()`).
- **Redirects:** `http.followRedirects` (false / initial / true; unset means initial) decides;
  libgit2's per-fetch `git_fetch_options.follow_redirects` would too, but pygit2's
  `Remote.fetch` does not expose it. Even `false` refuses only a redirect to a different host
  *name*: `git_net_url_apply_redirect` compares the host strings and nothing else, so a
  Location on the same host with another port, a path-only Location, and http to https are
  still followed. Since libgit2 takes the forwarder for the server, `127.0.0.1` is the host
  name it compares, so the forwarder refusing every 3xx is what makes "no redirect" true.

Each request is parsed before it is passed on (origin-form, or absolute-form naming the
checked host and port), so a later request on a kept-alive connection is checked like the
first; the upstream connection only ever goes to the checked address it was dialled to.
Bodies are framed as HTTP/1.1 says (Content-Length, chunked, or until the server closes) and
copied verbatim; ambiguous framing (both headers, other transfer codings) is refused.

Bounds: request heads 16 KiB within 10 s (later requests on a connection: the idle time),
response heads 64 KiB, chunk-size lines 4 KiB; 8 connections at once and 256 in all per
fetch, 256 requests per connection; every socket read waits at most the idle timeout and
nothing is read after the fetch's deadline. Bytes move in 256 KiB reads (TLS: a record, 16
KiB, per read), with Python work per chunk or read, never per byte. Another local process
could connect to the forwarder during the fetch, but it would only reach the server the
fetch may reach anyway.

The package, by job: `http1` reads and rewrites HTTP/1.1 heads and says how each body is
framed (pure, no sockets); `upstream` is where a fetch may go (`Target`) and how it is dialled
(TCP to a checked address, TLS of our own); `reader` does the bounded socket reads and body
copies; `forwarder` is the per-fetch server, its threads and connections. The names importers
use are re-exported here, so `from purgatory.fetch.pinning import Forwarder, Target` is the
package's public face.
"""

from purgatory.fetch.pinning.forwarder import HEAD_TIMEOUT_S, MAX_CONCURRENT, MAX_CONNECTIONS, MAX_REQUESTS, Forwarder
from purgatory.fetch.pinning.http1 import ProtocolError
from purgatory.fetch.pinning.upstream import Target, client_tls, dial

__all__ = ["HEAD_TIMEOUT_S", "MAX_CONCURRENT", "MAX_CONNECTIONS", "MAX_REQUESTS", "Forwarder", "ProtocolError",
           "Target", "client_tls", "dial"]
