"""NIP-34 facts as pure functions: kinds, coordinates, tag readers, the maintainer model
(ngit v3: role tags, reciprocal confirmation, a bounded walk) and "does this URL point at us".

No I/O here, so the acceptance policy, the push authoriser and the purgatory can share one
reading of the spec and it is unit-tested in isolation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable, Sequence
from urllib.parse import SplitResult, unquote, urlsplit

from storage.nostr.event import Event, is_hex

# --- kinds -------------------------------------------------------------------------------
DELETION = 5
PATCH = 1617
PR = 1618
PR_UPDATE = 1619
ISSUE = 1621
COMMENT = 1111
STATUS_OPEN = 1630
STATUS_APPLIED = 1631
STATUS_CLOSED = 1632
STATUS_DRAFT = 1633
STATUS_KINDS = frozenset({STATUS_OPEN, STATUS_APPLIED, STATUS_CLOSED, STATUS_DRAFT})
GRASP_LIST = 10317
ANNOUNCEMENT = 30617
STATE = 30618

#: Kinds the purgatory may hold: they promise git data that may not be here yet.
GIT_DATA_KINDS = frozenset({ANNOUNCEMENT, STATE, PR, PR_UPDATE})
#: The kinds metrics count under their own label (NIP-34, with the NIP-22 comments and
#: NIP-09 deletions that ride along); every other kind is "other", so labels stay bounded.
NIP34_KINDS = frozenset({ANNOUNCEMENT, STATE, PATCH, PR, PR_UPDATE, ISSUE, *STATUS_KINDS, GRASP_LIST,
                         COMMENT, DELETION})

# --- git names ------------------------------------------------------------------------------
#: git's id of "no object": the old side of a ref being created, the new side of one deleted.
ZERO_OID = "0" * 40
#: Where a PR's tip lives in a repo: `refs/nostr/<PR event id>` (NIP-34).
PR_REF_PREFIX = "refs/nostr/"

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_CLONE_SCHEMES = frozenset({"http", "https"})
_RELAY_SCHEMES = frozenset({"ws", "wss"})
#: A repo lives at `<data_dir>/repos/<npub>/<identifier>.git`; the name must fit one
#: path component (255 bytes on common filesystems) with its `.git` suffix.
MAX_IDENTIFIER_BYTES = 251


# --- keys --------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def hex_to_npub(pubkey_hex: str) -> str:
    """Bech32 of a hex pubkey; cached because every announcement check needs the owner's."""
    from nostr_sdk import PublicKey

    return PublicKey.parse(pubkey_hex).to_bech32()


def npub_to_hex(value: str) -> str | None:
    """Hex pubkey of an `npub1...`, or None for anything else (operator lists hold junk too)."""
    if not value.startswith("npub1"):
        return None
    from nostr_sdk import PublicKey

    try:
        return PublicKey.parse(value).to_hex()
    except Exception:  # nostr-sdk raises its own error family; any failure means "not an npub"
        return None


def pubkey_from_operator_value(value: str) -> str | None:
    """Operators write pubkeys as hex or npub in settings; accept both."""
    value = value.strip()
    if is_hex(value.lower(), 64):
        return value.lower()
    return npub_to_hex(value)


# --- identifiers and coordinates -----------------------------------------------------------
def identifier_problem(identifier: str) -> str | None:
    """Why an identifier cannot name a repo here (it becomes a directory name), or None."""
    if not identifier:
        return "repository identifier (d tag) is empty"
    if identifier in (".", ".."):
        return "repository identifier cannot be '.' or '..'"
    if any(ch in identifier for ch in ("/", "\\", "\0")):
        return "repository identifier cannot contain '/', '\\' or NUL"
    if len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        return f"repository identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
    return None


def repo_coordinate(pubkey: str, identifier: str) -> str:
    return f"{ANNOUNCEMENT}:{pubkey}:{identifier}"


def parse_coordinate(value: str) -> tuple[int, str, str] | None:
    """`kind:pubkey:d` -> parts, or None. The d part may itself contain ':'."""
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    kind_s, pubkey, d = parts
    if not kind_s.isdigit() or len(kind_s) > 5 or not is_hex(pubkey, 64):
        return None
    kind = int(kind_s)
    return (kind, pubkey, d) if kind <= 65535 else None


# --- tag readers ---------------------------------------------------------------------------
def clone_urls(event: Event) -> list[str]:
    return event.tag_all_values("clone")


def relay_urls(event: Event) -> list[str]:
    return event.tag_all_values("relays")


def maintainers(event: Event) -> list[str]:
    """Valid hex pubkeys of the `maintainers` tags, deduplicated in order; junk is ignored
    because one bad entry must not void the rest of a signed list."""
    seen: dict[str, None] = {}
    for value in event.tag_all_values("maintainers"):
        if is_hex(value, 64):
            seen.setdefault(value, None)
    return list(seen)


def is_oid(value: object) -> bool:
    """A git object id as events and the git protocol spell it: 40 (SHA-1) or 64 (SHA-256)
    lowercase hex characters."""
    return is_hex(value, 40) or is_hex(value, 64)


def state_identifier(event: Event) -> str | None:
    return event.d_tag if event.kind == STATE else None


def pr_tip(event: Event) -> str | None:
    """The tip commit a PR or PR update promises (`c` tag), if it is a plausible object id."""
    if event.kind not in (PR, PR_UPDATE):
        return None
    for value in event.tag_values("c"):
        if is_oid(value):
            return value
    return None


def pr_repo_coordinates(event: Event) -> list[str]:
    """The repository coordinates (`a` tags of kind 30617) an event is about."""
    out: list[str] = []
    for value in event.tag_values("a"):
        parsed = parse_coordinate(value)
        if parsed is not None and parsed[0] == ANNOUNCEMENT and value not in out:
            out.append(value)
    return out


def pr_root(event: Event) -> str | None:
    """The root PR id of a PR update (NIP-22 `E` tag)."""
    if event.kind != PR_UPDATE:
        return None
    for value in event.tag_values("E"):
        if is_hex(value, 64):
            return value
    return None


# --- repository state ----------------------------------------------------------------------
BRANCH_AND_TAG = ("refs/heads/", "refs/tags/")


def state_refs(event: Event) -> tuple[dict[str, str], str | None]:
    """Branches/tags and the HEAD branch a 30618 state event lists.

    Peeled entries (`refs/tags/v1^{}`) and values that are not object ids are ignored: they
    are not refs a repo can hold."""
    refs: dict[str, str] = {}
    head: str | None = None
    for tag in event.tags:
        if len(tag) < 2:
            continue
        name, value = tag[0], tag[1]
        if name == "HEAD":
            if value.startswith("ref: refs/heads/"):
                head = value[5:].strip()
        elif name.startswith(BRANCH_AND_TAG) and "^{}" not in name:
            value = value.strip().lower()
            if is_oid(value):
                refs[name] = value
    return refs, head


# --- maintainers ---------------------------------------------------------------------------
#: NIP-34 role tags (PR #2324, shipped by ngit v3): lead, co-maintainer, moderator.
LEAD = "M"
MAINTAINER = "m"
MODERATOR = "o"
ROLE_TAGS = frozenset({LEAD, MAINTAINER, MODERATOR})
#: The one non-numeric value a role entry may carry: last, in an end position.
DEFER = "defer"
#: Longest decimal timestamp read (unix seconds fit in 11 digits until the year 5138).
_MAX_TIME_DIGITS = 15
DEFAULT_WALK_ROUNDS = 6
DEFAULT_WALK_KEYS = 64


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Bounds of the maintainer walk. It runs on unauthenticated requests (every state, every
    push) and each key costs a store lookup, so neither its depth nor its width may be left
    to whoever writes announcements. `max_rounds`: levels of appointment read from the owner
    (the owner's own list is round 1); `max_keys`: distinct keys considered, the owner
    included. Settings `maintainer_walk_max_rounds` / `maintainer_walk_max_keys`."""

    max_rounds: int = DEFAULT_WALK_ROUNDS
    max_keys: int = DEFAULT_WALK_KEYS

    @classmethod
    def of(cls, settings: object) -> "WalkLimits":
        """From anything with the two settings (the Settings model), without importing it."""
        return cls(int(getattr(settings, "maintainer_walk_max_rounds", DEFAULT_WALK_ROUNDS)),
                   int(getattr(settings, "maintainer_walk_max_keys", DEFAULT_WALK_KEYS)))


@dataclass(frozen=True, slots=True)
class RoleEntry:
    """One `M`/`m`/`o` tag read at a moment: `valid` (well formed; an invalid entry grants
    nothing) and `active` (valid and in force at that moment)."""

    role: str
    pubkey: str
    valid: bool
    active: bool

    @property
    def grants_maintainer(self) -> bool:
        return self.active and self.role in (LEAD, MAINTAINER)


def role_entry(tag: Sequence[str], now: float) -> RoleEntry | None:
    """Read one tag as a role entry at `now`; None when it is not a role tag.

    Values after the pubkey are unix times alternating start, end, start, end... They must
    be decimal digits and never decrease; `defer` may stand only last and in an end
    position. Anything else makes the entry invalid. A valid entry is active when it has no
    times, or an odd number whose last (open) interval has started (`<= now`): a start in
    the future is not authority yet, and an entry whose last interval is closed, by a time
    (even a future one) or by `defer`, is not active."""
    if len(tag) < 2 or tag[0] not in ROLE_TAGS:
        return None
    role, pubkey, times = tag[0], tag[1], tag[2:]
    valid = is_hex(pubkey, 64)
    numbers: list[int] = []
    for index, value in enumerate(times):
        if value == DEFER:
            valid = valid and index == len(times) - 1 and index % 2 == 1
        elif value.isascii() and value.isdigit() and len(value) <= _MAX_TIME_DIGITS:
            number = int(value)
            valid = valid and (not numbers or number >= numbers[-1])
            numbers.append(number)
        else:
            valid = False
    if not valid:
        return RoleEntry(role, pubkey, False, False)
    if not times:
        return RoleEntry(role, pubkey, True, True)
    is_open = len(times) % 2 == 1  # `defer` is always in an end position, so never open
    return RoleEntry(role, pubkey, True, is_open and numbers[-1] <= now)


@dataclass(frozen=True, slots=True)
class Appointments:
    """What one announcement says about who maintains its repo, read at one moment.
    `maintainers` and `moderators` are in tag order, the author left out (naming oneself
    appoints nobody). `stepped_down`: the author names themselves in a role tag, but with
    no active `M`/`m` entry."""

    maintainers: tuple[str, ...] = ()
    moderators: tuple[str, ...] = ()
    stepped_down: bool = False
    role_tags: bool = False


def appointments(announcement: Event, now: float) -> Appointments:
    """Who `announcement` names as maintainers and moderators at `now`.

    With any role tag (`M`, `m` or `o`, valid or not) the legacy `maintainers` tag is
    ignored. A key is a maintainer when one of its `M`/`m` entries is active (several
    entries per key are allowed, as ngit writes one per interval); a moderator when an `o`
    entry is active and no `M`/`m` is. Without role tags the `maintainers` tag lists the
    maintainers and nobody steps down (that tag cannot say so)."""
    entries = [e for e in (role_entry(t, now) for t in announcement.tags) if e is not None]
    author = announcement.pubkey
    if not entries:
        return Appointments(tuple(k for k in maintainers(announcement) if k != author))
    granted: dict[str, None] = {}
    moderating: dict[str, None] = {}
    for entry in entries:
        if entry.grants_maintainer:
            granted.setdefault(entry.pubkey, None)
        elif entry.active and entry.role == MODERATOR:
            moderating.setdefault(entry.pubkey, None)
    names_self = any(e.pubkey == author for e in entries)
    return Appointments(
        tuple(k for k in granted if k != author),
        tuple(k for k in moderating if k not in granted and k != author),
        stepped_down=names_self and author not in granted,
        role_tags=True,
    )


@dataclass(frozen=True, slots=True)
class Maintainers:
    """Who speaks for `owner`'s repo: `confirmed` maintainers (the owner always; their
    states and pushes count), `invited` keys (named by a confirmed maintainer, but their own
    announcement does not name a confirmed maintainer back, or is missing), `stepped_down`
    keys (named, but their own announcement says they left), and `moderators` (never
    maintainers). `truncated`: the walk hit a bound, so keys beyond it were not considered."""

    owner: str
    confirmed: frozenset[str]
    invited: frozenset[str] = frozenset()
    stepped_down: frozenset[str] = frozenset()
    moderators: frozenset[str] = frozenset()
    truncated: bool = False


def walk_maintainers(owner: str, identifier: str, announcement_of: Callable[[str], Event | None],
                     *, now: float, limits: WalkLimits = WalkLimits()) -> Maintainers:
    """The maintainers of `owner`'s repo `identifier` at `now`: the ngit v3 model (NIP-34 PR
    #2324), the one reading every authority decision of this relay uses.

    The rules, as the text gives them:

    - Role tags `["M"|"m"|"o", <pubkey>, <t>...]`: lead, co-maintainer, moderator. The times
      alternate start, end, ...; an entry is active with none or an odd number; `defer` only
      last, in an end position; any other non-numeric value makes the entry invalid, and an
      invalid entry grants nothing. An announcement with any role tag has its `maintainers`
      tag ignored. Moderators are never maintainers. (See `role_entry`, `appointments`.)
    - The walk starts with the owner as the one confirmed maintainer. The latest announcement
      (`announcement_of`) of each confirmed maintainer names others (its active `M`/`m`, or its
      `maintainers` tag when it has no role tag).
    - Reciprocal: a named key is only *invited* until its own announcement of the same
      identifier names a confirmed maintainer back (by an active `M`/`m` or by the legacy
      tag). This is what stops the takeover: naming someone who already has a fork
      announcement of the same identifier makes the fork authoritative only if the fork's
      announcement names the namer's side back.
    - Stepping down: an author whose own announcement names themselves only in inactive (or
      invalid) entries, or only as `o`, is out and appoints nobody. The owner always stays:
      the URL path is theirs.

    Where the text is silent, our choices:

    - "Active" is judged at `now` (callers pass the current time): an open interval that
      starts in the future is not active yet; a closed interval is inactive even if its end
      lies in the future (future times never grant more than the structure says). Times must
      be decimal digits that never decrease, or the entry is invalid.
    - `defer` closes its interval without saying when: the entry is inactive.
    - A key with several entries is a maintainer when any `M`/`m` entry is active; an active
      `o` beside it does not take that away.
    - Any tag named `M`, `m` or `o` counts as a role tag for ignoring `maintainers`, even an
      invalid one (the author chose the role-tag form).
    - The owner's own announcement is always read, even if it steps the owner down (a handover
      names the new lead there), and a missing owner announcement appoints nobody.
    - Naming back counts only an active maintainer entry: an inactive entry is history, not
      consent, and naming someone as `o` is not naming them a maintainer.
    - Only announcements by their own author with this `d` are read; anything else returned by
      the lookup counts as no announcement.
    - Bounds (`limits`): a round reads the announcements of the keys confirmed in the round
      before (the owner's is round 1); keys beyond `max_keys` (in the order they were named,
      tag order, round by round) are ignored. Either bound sets `truncated`. Each key costs at
      most one lookup, so a walk costs at most `max_keys` lookups.
    - Cycles end because a key is confirmed, and read, at most once; two invited keys naming
      only each other never confirm (confirmation needs a key already confirmed)."""
    readings: dict[str, Appointments | None] = {}

    def reading(pubkey: str) -> Appointments | None:
        if pubkey not in readings:
            ann = announcement_of(pubkey)
            ok = ann is not None and ann.kind == ANNOUNCEMENT and ann.pubkey == pubkey and ann.d_tag == identifier
            readings[pubkey] = appointments(ann, now) if ok and ann is not None else None
        return readings[pubkey]

    confirmed: dict[str, None] = {owner: None}
    named: dict[str, None] = {}  # named by a confirmed maintainer, not (yet) confirmed
    moderators: dict[str, None] = {}
    truncated = False
    frontier = [owner]
    rounds = 0
    while frontier:
        if rounds >= limits.max_rounds:
            truncated = True
            break
        rounds += 1
        for member in frontier:
            said = reading(member)
            if said is None or (member != owner and said.stepped_down):
                continue
            for key in said.maintainers:
                if key in confirmed or key in named:
                    continue
                if len(confirmed) + len(named) >= limits.max_keys:
                    truncated = True
                    continue
                named[key] = None
            for key in said.moderators:
                moderators.setdefault(key, None)
        frontier = []
        added = True
        while added:  # a key may name back one confirmed later in the same round
            added = False
            for key in list(named):
                said = reading(key)
                if said is None or said.stepped_down:
                    continue
                if any(k in confirmed for k in said.maintainers):
                    del named[key]
                    confirmed[key] = None
                    frontier.append(key)
                    added = True
    left = {k for k in named if (r := reading(k)) is not None and r.stepped_down}
    return Maintainers(
        owner,
        frozenset(confirmed),
        frozenset(k for k in named if k not in left),
        frozenset(left),
        frozenset(k for k in moderators if k not in confirmed),
        truncated,
    )


def maintainer_set(owner: str, identifier: str, announcement_of: Callable[[str], Event | None],
                   *, now: float, limits: WalkLimits = WalkLimits()) -> frozenset[str]:
    """The confirmed maintainers of `walk_maintainers`: whose states and pushes count."""
    return walk_maintainers(owner, identifier, announcement_of, now=now, limits=limits).confirmed


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one author stands among the owners of one identifier: the owners whose
    confirmed set holds them (their states count there), and those who only invited them
    or whom they left (for a refusal that says what is missing)."""

    confirmed_by: tuple[str, ...] = ()
    invited_by: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


def standing(author: str, announcements: list[Event], announcement_of: Callable[[str], Event | None],
             *, now: float, limits: WalkLimits = WalkLimits()) -> Standing:
    """`author` against every owner of `announcements` (one identifier), in their order."""
    confirmed: list[str] = []
    invited: list[str] = []
    left: list[str] = []
    for ann in announcements:
        owner = ann.pubkey
        if owner in confirmed or owner in invited or owner in left:
            continue
        found = walk_maintainers(owner, ann.d_tag, announcement_of, now=now, limits=limits)
        if author in found.confirmed:
            confirmed.append(owner)
        elif author in found.invited:
            invited.append(owner)
        elif author in found.stepped_down:
            left.append(owner)
    return Standing(tuple(confirmed), tuple(invited), tuple(left))


def owners_authorising(author: str, announcements: list[Event], announcement_of: Callable[[str], Event | None],
                       *, now: float, limits: WalkLimits = WalkLimits()) -> list[str]:
    """Owners (authors of `announcements`, one identifier) whose confirmed set holds `author`."""
    return list(standing(author, announcements, announcement_of, now=now, limits=limits).confirmed_by)


# --- does a URL point at this service? -----------------------------------------------------
def _host_port(domain: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + domain.strip())
        return (parts.hostname or "", parts.port)
    except ValueError:
        return None


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts


def _points_at(parts: SplitResult, domain: str) -> bool:
    default = _DEFAULT_PORTS.get(parts.scheme)
    ours = _host_port(domain)
    if default is None or ours is None or not parts.hostname:
        return False
    our_host, our_port = ours
    url_port = parts.port if parts.port is not None else default
    return parts.hostname == our_host.lower() and url_port == (our_port or default)


def service_urls_match(url: str, domain: str) -> bool:
    """Does an http(s)/ws(s) URL point at `domain` (host[:port])? Hosts compare
    case-insensitively; a missing port on either side is the scheme's default."""
    parts = _split(url)
    return parts is not None and _points_at(parts, domain)


def is_our_relay_url(url: str, domain: str) -> bool:
    """A `relays` entry naming this relay: ws(s)://domain with no path beyond `/`."""
    parts = _split(url)
    if parts is None or parts.scheme not in _RELAY_SCHEMES:
        return False
    return parts.path in ("", "/") and not parts.query and not parts.fragment and _points_at(parts, domain)


def is_our_clone_url(url: str, domain: str, owner: str, identifier: str) -> bool:
    """A `clone` entry naming the owner's repo here: http(s)://domain/<npub>/<d>.git.
    Contributor URLs under `/prs/` never match (they have an extra path segment)."""
    parts = _split(url)
    if parts is None or parts.scheme not in _CLONE_SCHEMES or parts.query or parts.fragment:
        return False
    if not _points_at(parts, domain):
        return False
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")
    if len(segments) != 3 or segments[0] != "":
        return False
    npub, repo = segments[1].lower(), unquote(segments[2])
    return npub == hex_to_npub(owner) and repo == f"{identifier}.git"


def announcement_lists_us(event: Event, domain: str) -> tuple[bool, bool]:
    """(our clone URL is in `clone`, our relay is in `relays`) for an announcement."""
    identifier = event.d_tag
    clone_ok = any(is_our_clone_url(u, domain, event.pubkey, identifier) for u in clone_urls(event))
    relay_ok = any(is_our_relay_url(u, domain) for u in relay_urls(event))
    return clone_ok, relay_ok
