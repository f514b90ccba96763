"""GRASP acceptance: which events we store, hold in purgatory, or refuse.

Each rule is a small pure function `(event, view, ctx) -> Verdict | None`; None passes the
event on to the next rule, and `decide` runs them in order. The rules read the world through
`ReadView` only, so they are unit-tested against a dict and the store stays unaware of them.

Choices the protocol leaves open (see grasp-protocol.md, "Which events are accepted"):

- The pubkey blacklist applies to every kind, before anything else.
- Who maintains a repo is `nip34.walk_maintainers` (the ngit v3 model: role tags,
  reciprocal confirmation, stepping down, a bounded walk), judged at `ctx.clock()`, with
  `ctx.walk` as bounds. Nothing here computes maintainers on its own.
- Announcements: accepted when they list us in both `clone` and `relays`, when the archive
  whitelist names them, or (the maintainer exception) when the walk of another announcement
  of the same identifier that is hosted here (lists us, or is whitelisted) names the author
  as confirmed, invited or stepped down, reading the incoming announcement as the author's:
  it is the one that confirms an invitation or records a departure, so it must get in. A
  mirror (an exception announcement) vouches for nobody else. Accepted ones go to the
  purgatory, except an update of an announcement we already serve (its repo is live:
  metadata changes must not make it vanish) and a maintainer-exception announcement hanging
  off a served one (clients need it to resolve the maintainer chain now, and its git data
  is the served repo's).
- States count for every owner whose confirmed set holds the author, the author's own repo
  included, and go to the purgatory (the caller may release them at once when the git data
  is already here). A state that counts for no repo is refused `invalid:` with what is
  missing: the author is only invited (their own announcement must name a maintainer back),
  or stepped down, or not named at all. The author's own repo alone does not count when it
  is only a mirror (their announcement does not list us): otherwise a key that stepped down,
  or was never confirmed, could still publish states here through the chain it hangs off.
- PRs (1618) and PR updates (1619) must name a *served* repository and carry a `c` tip; they
  go to the purgatory. A PR update finds its repository through its root PR (`E`), falling
  back to its own `a` tags.
- Deletions (kind 5) are stored when they name at least one known event or address of their
  own author: deleting is harmless, but storing deletions of nothing would let anyone
  park arbitrary kind-5 events here. A deleted announcement is no longer served, so it
  anchors nothing from then on; what was stored about it earlier stays.
- Ephemeral events are refused: this relay serves a repository graph at rest, not a
  general-purpose fan-out.
- Everything else is stored when it tags, or is tagged by, a *served* event of the repo
  graph. Only served events anchor: an event that tags only held ones (an announcement, a
  state or a PR still waiting for git data) is refused `blocked:` with that reason, not held
  with them. We chose refusing over holding: held events would still take disk for the whole
  purgatory expiry (the junk-announcement attack: announce, never push, publish 128 KB notes
  tagging it), clients learn the reason at once and may send again after the push, and peer
  relays are asked for events tagging a repo only once its announcement is served (see
  `relay/peers/sync.py`). So an announcement that expires in the purgatory leaves nothing
  behind: nothing could rest on it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import structlog

from config.settings import Settings
from purgatory.release import PURGATORY_MESSAGE
from storage.nostr import nip34
from storage.nostr.event import Event, is_hex

log = structlog.get_logger(__name__)

Action = Literal["store", "purgatory", "reject"]


class ReadView(Protocol):
    """What the policy may ask the store. "Known" means stored or held in purgatory;
    "served" means stored (returned by REQ), not held."""

    def announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def served_announcement(self, pubkey: str, identifier: str) -> Event | None: ...
    def announcements_for(self, identifier: str) -> list[Event]: ...
    def get_event(self, event_id: str) -> Event | None: ...
    def is_served(self, event_id: str) -> bool: ...
    def has_coordinate(self, coordinate: str) -> bool: ...
    def has_served_coordinate(self, coordinate: str) -> bool: ...
    def is_referenced_by_served(self, event_id: str, coordinate: str | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    message: str = ""
    #: The repository (identifier) a stored/held event concerns, when it can be told.
    identifier: str | None = None
    #: The owner whose repo is primarily concerned (the announcement author, a state's own
    #: announcement if it has one, the first repository a PR names).
    owner: str | None = None
    #: Every owner whose repo this event concerns (a state is authoritative for all owners
    #: whose maintainer set holds its author).
    owners: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.action != "reject"


def reject(message: str) -> Verdict:
    return Verdict("reject", message)


def _accept(action: Action, identifier: str | None, owners: list[str] | tuple[str, ...]) -> Verdict:
    message = PURGATORY_MESSAGE if action == "purgatory" else ""
    owners = tuple(owners)
    return Verdict(action, message, identifier, owners[0] if owners else None, owners)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The settings the rules need, parsed once (npubs decoded) rather than per event."""

    domain: str
    blacklist: frozenset[str] = frozenset()
    whitelist_pubkeys: frozenset[str] = frozenset()
    whitelist_repos: frozenset[tuple[str, str]] = frozenset()
    whitelist_identifiers: frozenset[str] = frozenset()
    walk: nip34.WalkLimits = nip34.WalkLimits()
    #: "Now" for the maintainer walk (role entries are judged at a moment); tests pin it.
    clock: Callable[[], float] = field(default=time.time, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "PolicyContext":
        blacklist: set[str] = set()
        for value in settings.pubkey_blacklist:
            pubkey = nip34.pubkey_from_operator_value(value)
            if pubkey is None:
                log.warning("ignoring bad pubkey_blacklist entry", entry=value)
            else:
                blacklist.add(pubkey)
        pubkeys, repos, identifiers = parse_archive_whitelist(settings.archive_whitelist)
        return cls(settings.domain, frozenset(blacklist), pubkeys, repos, identifiers,
                   nip34.WalkLimits.of(settings))

    def archive_whitelisted(self, pubkey: str, identifier: str) -> bool:
        return (
            pubkey in self.whitelist_pubkeys
            or (pubkey, identifier) in self.whitelist_repos
            or identifier in self.whitelist_identifiers
        )


def parse_archive_whitelist(
    entries: list[str],
) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """GRASP-05 entries: `npub` (all of a user's repos), `npub/identifier` (one repo), or a
    bare `identifier` (that name from anyone). Only the npub form names a pubkey, so a
    64-hex entry is an identifier, as the entry grammar says."""
    pubkeys: set[str] = set()
    repos: set[tuple[str, str]] = set()
    identifiers: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        head, sep, tail = entry.partition("/")
        pubkey = nip34.npub_to_hex(head)
        if sep and pubkey is not None and tail:
            repos.add((pubkey, tail))
        elif not sep and pubkey is not None:
            pubkeys.add(pubkey)
        elif not sep and entry:
            identifiers.add(entry)
        else:
            log.warning("ignoring bad archive_whitelist entry", entry=raw)
    return frozenset(pubkeys), frozenset(repos), frozenset(identifiers)


Rule = Callable[[Event, ReadView, PolicyContext], "Verdict | None"]


# --- rules ---------------------------------------------------------------------------------
def blacklist_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.pubkey in ctx.blacklist:
        return reject("blocked: this pubkey is not allowed to publish here")
    return None


def ephemeral_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.is_ephemeral:
        return reject("blocked: ephemeral events are not relayed by this GRASP server")
    return None


def grasp_list_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    return _accept("store", None, ()) if event.kind == nip34.GRASP_LIST else None


def deletion_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.DELETION:
        return None
    ids = [v for v in event.tag_values("e") if is_hex(v, 64)]
    coords = [v for v in event.tag_values("a") if nip34.parse_coordinate(v) is not None]
    if not ids and not coords:
        return reject("invalid: a deletion must name events (e tags) or addresses (a tags)")
    for event_id in ids:
        target = view.get_event(event_id)
        if target is not None and target.pubkey == event.pubkey:
            return _accept("store", None, ())
    for coord in coords:
        parsed = nip34.parse_coordinate(coord)
        if parsed is not None and parsed[1] == event.pubkey and view.has_coordinate(coord):
            return _accept("store", None, ())
    return reject("blocked: this deletion names none of your events stored here")


def announcement_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.ANNOUNCEMENT:
        return None
    identifier = event.d_tag
    problem = nip34.identifier_problem(identifier)
    if problem is not None:
        return reject(f"invalid: {problem}")
    already_served = view.served_announcement(event.pubkey, identifier) is not None
    clone_ok, relay_ok = nip34.announcement_lists_us(event, ctx.domain)
    if (clone_ok and relay_ok) or ctx.archive_whitelisted(event.pubkey, identifier):
        return _accept("store" if already_served else "purgatory", identifier, [event.pubkey])
    via = _maintainer_exception(event, view, ctx)
    if via is not None:
        live = already_served or view.served_announcement(via, identifier) is not None
        return _accept("store" if live else "purgatory", identifier, [event.pubkey])
    return reject(_missing_listing_message(event, ctx.domain, clone_ok, relay_ok))


def _maintainer_exception(event: Event, view: ReadView, ctx: PolicyContext) -> str | None:
    """The owner of another accepted announcement (same identifier) hosted here (listing us
    or whitelisted: a mirror does not vouch for others) whose maintainer walk names the
    author (confirmed, invited or stepped down), preferring a served one; None if there is
    none. The walk reads this very announcement as the author's: it is the one that
    confirms an invited key (by naming a maintainer back) or records that they left, so it
    must be accepted for the chain to resolve; a key nobody names gets no exception."""
    identifier = event.d_tag
    others = [a for a in view.announcements_for(identifier) if a.pubkey != event.pubkey and _hosted_here(a, ctx)]
    found = nip34.standing(event.pubkey, others, _lookup(view, identifier, event), now=ctx.clock(),
                           limits=ctx.walk)
    owners = [*found.confirmed_by, *found.invited_by, *found.left]
    for owner in owners:
        if view.served_announcement(owner, identifier) is not None:
            return owner
    return owners[0] if owners else None


def _missing_listing_message(event: Event, domain: str, clone_ok: bool, relay_ok: bool) -> str:
    clone_hint = f"http(s)://{domain}/{nip34.hex_to_npub(event.pubkey)}/{event.d_tag}.git"
    relay_hint = f"ws(s)://{domain}"
    if not clone_ok and not relay_ok:
        return (
            "blocked: announcement must list this server in its clone tag "
            f"({clone_hint}) and its relays tag ({relay_hint})"
        )
    if not clone_ok:
        return f"blocked: announcement must list this server in its clone tag ({clone_hint})"
    return f"blocked: announcement must list this server in its relays tag ({relay_hint})"


def state_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind != nip34.STATE:
        return None
    identifier = event.d_tag
    problem = nip34.identifier_problem(identifier)
    if problem is not None:
        return reject(f"invalid: {problem}")
    announcements = view.announcements_for(identifier)
    if not announcements:
        return reject(
            f"invalid: no repository announcement for '{identifier}' here; "
            "send the announcement (kind 30617) first"
        )
    found = nip34.standing(event.pubkey, announcements, _lookup(view, identifier), now=ctx.clock(),
                           limits=ctx.walk)
    owners = list(found.confirmed_by)
    if owners == [event.pubkey] and not _hosted_here(view.announcement(event.pubkey, identifier), ctx):
        # only the author's own mirror, kept here because others name them: it does not
        # make their states count on its own (else stepping down would change nothing)
        owners = []
    if not owners:
        return reject(_not_a_maintainer_message(identifier, found))
    if event.pubkey in owners:  # the author's own repo is the one it speaks for first
        owners.remove(event.pubkey)
        owners.insert(0, event.pubkey)
    return _accept("purgatory", identifier, owners)


def _hosted_here(announcement: Event | None, ctx: PolicyContext) -> bool:
    """Did this announcement's author ask this relay to host the repo (it lists us in clone
    and relays, or the archive whitelist names it), rather than get in through the
    maintainer exception?"""
    if announcement is None:
        return False
    clone_ok, relay_ok = nip34.announcement_lists_us(announcement, ctx.domain)
    return (clone_ok and relay_ok) or ctx.archive_whitelisted(announcement.pubkey, announcement.d_tag)


def _not_a_maintainer_message(identifier: str, found: nip34.Standing) -> str:
    """Why a state counts for no repo: say what would make it count."""
    if found.invited_by:
        who = ", ".join(nip34.hex_to_npub(owner) for owner in found.invited_by[:3])
        return (
            f"invalid: you are only invited as a maintainer of '{identifier}' (by {who}): your own "
            f"repository announcement (kind 30617, d '{identifier}') must name a maintainer back "
            "before your states count"
        )
    if found.left:
        return (
            f"invalid: your own repository announcement of '{identifier}' steps you down as a "
            "maintainer, so your states count for no repository here"
        )
    return f"invalid: you are not a maintainer of any repository '{identifier}' announced here"


def pull_request_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    if event.kind not in (nip34.PR, nip34.PR_UPDATE):
        return None
    name = "pull request" if event.kind == nip34.PR else "pull request update"
    if nip34.pr_tip(event) is None:
        return reject(f"invalid: {name} needs a c tag with the tip commit id")
    coords = _pr_coordinates(event, view)
    if not coords and event.kind == nip34.PR:
        return reject(f"invalid: {name} must tag its repository (a 30617:<pubkey>:<identifier>)")
    known = [c for c in coords if view.has_served_coordinate(c)]
    if not known:
        if any(view.has_coordinate(c) for c in coords):
            return reject(f"blocked: {name} names no repository served here yet ({WAITING_ANCHOR})")
        return reject(f"blocked: {name} names no repository served here")
    parsed = [p for p in map(nip34.parse_coordinate, known) if p is not None]
    identifier = parsed[0][2]
    owners = [pubkey for _kind, pubkey, d in parsed if d == identifier]
    return _accept("purgatory", identifier, owners)


def _pr_coordinates(event: Event, view: ReadView) -> list[str]:
    """Repository coordinates of a PR; for an update, those of its root PR first."""
    coords: list[str] = []
    root_id = nip34.pr_root(event)
    if root_id is not None:
        root = view.get_event(root_id)
        if root is not None and root.kind == nip34.PR:
            coords.extend(nip34.pr_repo_coordinates(root))
    coords.extend(c for c in nip34.pr_repo_coordinates(event) if c not in coords)
    return coords


#: Why an event tagging only held events is refused (announcements, states and PRs that
#: wait for git data anchor nothing until they are served).
WAITING_ANCHOR = (
    "what it tags still waits for its git data in the purgatory and anchors nothing until it "
    "is served; send the event again once the repository has been pushed"
)


def graph_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    """Last rule: store what is linked to the *served* repo graph, refuse orphans. Held
    events anchor nothing: a junk announcement that is never pushed must not carry notes."""
    ids, coords = _references(event)
    for coord in coords:
        if view.has_served_coordinate(coord):
            return _accept("store", *_repo_of_coordinate(coord))
    for event_id in ids:
        if view.is_served(event_id):
            return _accept("store", *_repo_of_event(event_id, view))
    if view.is_referenced_by_served(event.id, event.coordinate):
        return _accept("store", None, ())
    if any(view.has_coordinate(c) for c in coords) or any(view.get_event(i) is not None for i in ids):
        return reject(f"blocked: event tags nothing served here: {WAITING_ANCHOR}")
    return reject("blocked: event does not reference a repository served here")


def _references(event: Event) -> tuple[list[str], list[str]]:
    """(event ids, coordinates) an event tags: e/E ids, a/A coordinates, q either."""
    ids: list[str] = []
    coords: list[str] = []
    for tag in event.tags:
        if len(tag) < 2 or tag[0] not in ("e", "E", "a", "A", "q"):
            continue
        value = tag[1]
        if is_hex(value, 64) and tag[0] in ("e", "E", "q"):
            ids.append(value)
        elif nip34.parse_coordinate(value) is not None and tag[0] in ("a", "A", "q"):
            coords.append(value)
    return ids, coords


def _repo_of_coordinate(coord: str) -> tuple[str | None, list[str]]:
    parsed = nip34.parse_coordinate(coord)
    if parsed is None or parsed[0] not in (nip34.ANNOUNCEMENT, nip34.STATE):
        return None, []
    return parsed[2], [parsed[1]]


def _repo_of_event(event_id: str, view: ReadView) -> tuple[str | None, list[str]]:
    """The repository a tagged event belongs to, when it says (one hop only)."""
    target = view.get_event(event_id)
    if target is None:
        return None, []
    if target.kind in (nip34.ANNOUNCEMENT, nip34.STATE):
        return target.d_tag, [target.pubkey]
    coords = nip34.pr_repo_coordinates(target)
    return _repo_of_coordinate(coords[0]) if coords else (None, [])


def _lookup(view: ReadView, identifier: str, incoming: Event | None = None) -> Callable[[str], Event | None]:
    """Announcement lookup for one decision, memoised: several owners' maintainer sets
    usually share members, and each lookup is a store query. `incoming`, an announcement
    being decided, stands for its author's (as it would once accepted)."""
    cache: dict[str, Event | None] = {} if incoming is None else {incoming.pubkey: incoming}

    def announcement_of(pubkey: str) -> Event | None:
        if pubkey not in cache:
            cache[pubkey] = view.announcement(pubkey, identifier)
        return cache[pubkey]

    return announcement_of


RULES: tuple[Rule, ...] = (
    blacklist_rule,
    ephemeral_rule,
    grasp_list_rule,
    deletion_rule,
    announcement_rule,
    state_rule,
    pull_request_rule,
    graph_rule,
)


def decide(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict:
    """Run the rules in order; the first that speaks decides. `graph_rule` always speaks."""
    for rule in RULES:
        verdict = rule(event, view, ctx)
        if verdict is not None:
            return verdict
    return reject("blocked: event does not reference a repository served here")
