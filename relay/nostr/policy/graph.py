"""The repo graph: PRs (1618) and PR updates (1619) must name a served repository, and every
other event is stored when it tags, or is tagged by, a served event of the graph. Held events
anchor nothing: an event tagging only those is refused with `WAITING_ANCHOR` as the reason."""

from __future__ import annotations

from relay.nostr.policy.context import PolicyContext
from relay.nostr.policy.verdict import ReadView, Verdict, accept, reject
from storage.nostr import nip34
from storage.nostr.event import Event, is_hex

#: Why an event tagging only held events is refused (announcements, states and PRs that
#: wait for git data anchor nothing until they are served).
WAITING_ANCHOR = (
    "what it tags still waits for its git data in the purgatory and anchors nothing until it "
    "is served; send the event again once the repository has been pushed"
)


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
    return accept("purgatory", identifier, owners)


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


def graph_rule(event: Event, view: ReadView, ctx: PolicyContext) -> Verdict | None:
    """Last rule: store what is linked to the *served* repo graph, refuse orphans. Held
    events anchor nothing: a junk announcement that is never pushed must not carry notes."""
    ids, coords = _references(event)
    for coord in coords:
        if view.has_served_coordinate(coord):
            return accept("store", *_repo_of_coordinate(coord))
    for event_id in ids:
        if view.is_served(event_id):
            return accept("store", *_repo_of_event(event_id, view))
    if view.is_referenced_by_served(event.id, event.coordinate):
        return accept("store", None, ())
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


