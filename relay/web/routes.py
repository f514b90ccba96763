"""Which web page a request path names, decided without I/O. Paths are read raw (still
percent-encoded, as ASGI's `raw_path` gives them) so an encoded `/` in an identifier or a
file path is seen as such and refused, never turned into a separator.

    /                                  landing page (?q= name filter, ?page=)
    /static/style.css                  the stylesheet
    /<npub>                            one owner's repositories
    /<npub>/<identifier>[.git]         summary (the .git form is the clone URL)
    /<npub>/<identifier>/<tab>[/<path>] refs, log, tree, blob, raw, commit/<id>, issues, prs

Tree, blob, log and raw take `?h=<branch or tag>` or `?id=<commit id>`; log takes `?ofs=`."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from relay.web.shown import BadRequest

TABS = frozenset({"summary", "refs", "log", "tree", "blob", "raw", "commit", "issues", "prs"})
MAX_QUERY_FIELDS = 8
MAX_QUERY_BYTES = 4096
STYLESHEET = "/static/style.css"


@dataclass(frozen=True, slots=True)
class Route:
    page: str  # "landing", "owner", "static", or a repo tab
    npub: str = ""
    identifier: str = ""  # still percent-encoded; validate_identifier decodes it
    path: str = ""  # decoded, for tree/blob/raw/commit
    params: dict[str, str] = field(default_factory=dict)


def query(raw: bytes) -> dict[str, str]:
    """The query string as a dict; repeated or too many fields are refused."""
    if len(raw) > MAX_QUERY_BYTES:
        raise BadRequest("query string too long")
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_QUERY_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("bad query string") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"{key} given twice")
        out[key] = value
    return out


def _decode(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8") from None


def parse(raw_path: str, raw_query: bytes) -> Route | None:
    """The page `raw_path` names, None when it names no web page (the caller's 404), or
    BadRequest for a malformed request."""
    if raw_path == "/":
        return Route("landing", params=query(raw_query))
    if raw_path == STYLESHEET:
        return Route("static")
    if not raw_path.startswith("/npub1"):
        return None
    parts = raw_path[1:].split("/", 3)
    npub = parts[0]
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
        return Route("owner", npub, params=query(raw_query))
    identifier = parts[1]
    if identifier.endswith(".git"):
        if len(parts) > 2 and parts[2] != "":
            return None  # git smart HTTP, not a page
        identifier = identifier[: -len(".git")]
    tab = parts[2] if len(parts) > 2 and parts[2] else "summary"
    if tab not in TABS:
        return None
    rest = parts[3] if len(parts) > 3 else ""
    if tab in ("summary", "refs", "log", "issues", "prs") and rest.strip("/"):
        return None
    return Route(tab, npub, identifier, _decode(rest), query(raw_query))
