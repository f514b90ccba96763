"""The maintainer model (ngit v3, NIP-34 PR #2324): role tags read at a moment, what one
announcement appoints, and the bounded, reciprocal walk from an owner that every authority
decision of this relay uses (`walk_maintainers` states the rules and our choices)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.nostr.event import Event, is_hex
from storage.nostr.nip34.kinds import ANNOUNCEMENT
from storage.nostr.nip34.tags import maintainers

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
