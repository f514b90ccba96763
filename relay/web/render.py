"""Turning page values into HTML: the Jinja2 environment (autoescaping on, templates as
package data), README Markdown (markdown-it-py, then sanitised by nh3 so a README's own
HTML can never script the page) and syntax highlighting (Pygments, only for blobs under a
size cap; larger text is shown plain). The stylesheet is package data too, served with a
content hash in its URL so browsers and proxies may keep it."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Callable
from urllib.parse import quote

import jinja2
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("relay.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["q"] = lambda value: quote(str(value), safe="")
_ENV.filters["qpath"] = lambda value: quote(str(value), safe="/")
_ENV.filters["date"] = lambda stamp: datetime.fromtimestamp(int(stamp), timezone.utc).strftime("%Y-%m-%d")
_ENV.filters["filesize"] = lambda size: filesize(int(size))
_FORMATTER = HtmlFormatter(linenos="table", lineanchors="L", anchorlinenos=True, cssclass="hl", wrapcode=True)
_MARKDOWN = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(["table", "strikethrough"])


def filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


@lru_cache(maxsize=1)
def stylesheet() -> tuple[bytes, str]:
    """The CSS (ours and Pygments') and its short hash, for the cache-busting URL."""
    ours = resources.files("relay.web").joinpath("static/style.css").read_text(encoding="utf-8")
    body = (ours + "\n" + _FORMATTER.get_style_defs(".hl")).encode()
    return body, hashlib.sha256(body).hexdigest()[:12]


def set_site_name(name: str) -> None:
    """The relay's name, shown at the top of every page (one daemon per process)."""
    _ENV.globals["site"] = name


def page(template: str, **values: Any) -> bytes:
    values.setdefault("css_version", stylesheet()[1])
    return _ENV.get_template(template).render(**values).encode()


def code(name: str, text: str, highlight_max: int) -> Markup:
    """Line-numbered HTML of a text blob: highlighted when small enough and recognised."""
    if len(text) <= highlight_max:
        try:
            lexer = get_lexer_for_filename(name, stripnl=False)
        except ClassNotFound:
            lexer = None
        if lexer is not None:
            return Markup(highlight(text, lexer, _FORMATTER))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    numbers = "".join(f'<a href="#L-{i}" id="L-{i}">{i}</a>\n' for i in range(1, len(lines) + 1))
    body = Markup.escape("\n".join(lines))
    return Markup(f'<div class="hl plain"><table class="hltable"><tr><td class="linenos"><div class="linenodiv">'
                  f'<pre>{numbers}</pre></div></td><td class="code"><div><pre><code>{body}\n</code></pre></div>'
                  f'</td></tr></table></div>')


def _is_relative(url: str) -> bool:
    return bool(url) and not url.startswith(("/", "#", "?")) and ":" not in url.split("/", 1)[0]


def markdown(text: str, link: Callable[[str, str], str]) -> Markup:
    """README HTML, sanitised; relative links and images are pointed at this repo's files
    (`link(kind, path)` with kind "blob" or "raw")."""
    html = _MARKDOWN.render(text)

    def attribute(element: str, attr: str, value: str) -> str | None:
        if attr in ("href", "src") and _is_relative(value):
            path = value.split("#", 1)[0].split("?", 1)[0]
            return link("raw" if element == "img" else "blob", path)
        return value

    return Markup(nh3.clean(html, attribute_filter=attribute, url_schemes={"http", "https", "mailto"}))
