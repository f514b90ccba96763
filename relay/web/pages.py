"""The page the app shows for a path no part of it serves: the web view's 404."""

from __future__ import annotations

from config import Settings


def not_found(settings: Settings, what: str = "page") -> bytes:
    from relay.web import render  # the template stack loads on the first page, not at start

    return render.page("error.html", title="Not found", message=f"No such {what} on {settings.domain}.",
                       domain=settings.domain)
