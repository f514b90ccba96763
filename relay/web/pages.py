"""The few HTML pages a browser sees: the landing page, a repository page and 404s. They
point people to a Nostr git client, since the relay itself has no web UI for code."""

from __future__ import annotations

from html import escape

from config import Settings

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}"
)


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()


def _scheme(settings: Settings) -> str:
    host = settings.domain.split(":")[0]
    return "http" if host in ("127.0.0.1", "localhost", "::1") else "https"


def landing(settings: Settings) -> bytes:
    domain = escape(settings.domain)
    ws = "ws" if _scheme(settings) == "http" else "wss"
    return _page(
        settings.relay_name,
        f"<h1>{escape(settings.relay_name)}</h1><p>{escape(settings.relay_description)}</p>"
        f"<p>This is a <strong>GRASP relay</strong>: a Nostr relay at <code>{ws}://{domain}</code> "
        f"and a git server at <code>{_scheme(settings)}://{domain}/&lt;npub&gt;/&lt;identifier&gt;.git</code>. "
        "Push access is granted by signed repository state events (NIP-34), not by accounts.</p>"
        "<p>Publish a repository here with a Nostr git client such as "
        "<a href='https://gitworkshop.dev'>gitworkshop.dev</a> or ngit, listing this relay in "
        "the announcement's clone URLs and relays.</p>",
    )


def repository(settings: Settings, npub: str, identifier: str, name: str, description: str) -> bytes:
    clone = f"{_scheme(settings)}://{settings.domain}/{npub}/{identifier}.git"
    return _page(
        name or identifier,
        f"<h1>{escape(name or identifier)}</h1><p>{escape(description)}</p>"
        f"<p>Clone: <code>git clone {escape(clone)}</code></p>"
        f"<p>Browse issues, patches and pull requests on "
        f"<a href='https://gitworkshop.dev/{escape(npub)}/{escape(identifier)}'>gitworkshop.dev</a>.</p>",
    )


def not_found(settings: Settings, what: str = "page") -> bytes:
    return _page("Not found", f"<h1>Not found</h1><p>No such {escape(what)} on {escape(settings.domain)}.</p>")
