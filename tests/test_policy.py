"""Unit tests of the GRASP acceptance rules against a dict-backed read view."""

from __future__ import annotations

import pytest

from config.settings import Settings
from relay.nostr.policy import PURGATORY_MESSAGE, PolicyContext, RepoList, Verdict, decide, parse_archive_whitelist
from storage.nostr import nip34
from storage.nostr.event import Event, sign_event

DOMAIN = "127.0.0.1:8080"
SECRETS = {name: f"{i:064x}" for i, name in enumerate("ABCDEFGH", start=1)}
PK = {name: sign_event(secret, 1, "", [], 0).pubkey for name, secret in SECRETS.items()}
NPUB = {name: nip34.hex_to_npub(pk) for name, pk in PK.items()}
TIP = "ab" * 20
T0 = 1_700_000_000


class FakeView:
    """The ReadView protocol over two dicts: served events and purgatory-held events."""

    def __init__(self) -> None:
        self.served: dict[str, Event] = {}
        self.held: dict[str, Event] = {}

    def serve(self, *events: Event) -> "FakeView":
        self.served.update((e.id, e) for e in events)
        return self

    def hold(self, *events: Event) -> "FakeView":
        self.held.update((e.id, e) for e in events)
        return self

    def _all(self) -> list[Event]:
        return [*self.served.values(), *self.held.values()]

    def announcement(self, pubkey: str, identifier: str) -> Event | None:
        return self._find(self._all(), pubkey, identifier)

    def served_announcement(self, pubkey: str, identifier: str) -> Event | None:
        return self._find(list(self.served.values()), pubkey, identifier)

    @staticmethod
    def _find(events: list[Event], pubkey: str, identifier: str) -> Event | None:
        for e in events:
            if e.kind == nip34.ANNOUNCEMENT and e.pubkey == pubkey and e.d_tag == identifier:
                return e
        return None

    def announcements_for(self, identifier: str) -> list[Event]:
        return [e for e in self._all() if e.kind == nip34.ANNOUNCEMENT and e.d_tag == identifier]

    def has_event(self, event_id: str) -> bool:
        return event_id in self.served or event_id in self.held

    def get_event(self, event_id: str) -> Event | None:
        return self.served.get(event_id) or self.held.get(event_id)

    def is_served(self, event_id: str) -> bool:
        return event_id in self.served

    def has_coordinate(self, coordinate: str) -> bool:
        return any(e.coordinate == coordinate for e in self._all())

    def has_served_coordinate(self, coordinate: str) -> bool:
        return any(e.coordinate == coordinate for e in self.served.values())

    def is_referenced(self, event_id: str, coordinate: str | None) -> bool:
        return self._referenced(self._all(), event_id, coordinate)

    def is_referenced_by_served(self, event_id: str, coordinate: str | None) -> bool:
        return self._referenced(list(self.served.values()), event_id, coordinate)

    @staticmethod
    def _referenced(events: list[Event], event_id: str, coordinate: str | None) -> bool:
        for e in events:
            for tag in e.tags:
                if len(tag) > 1 and tag[0] in ("e", "E", "q") and tag[1] == event_id:
                    return True
                if coordinate and len(tag) > 1 and tag[0] in ("a", "A", "q") and tag[1] == coordinate:
                    return True
        return False


def ev(who: str, kind: int, tags: list[list[str]], created_at: int = T0, content: str = "") -> Event:
    return sign_event(SECRETS[who], kind, content, tags, created_at)


def clone_url(who: str, d: str, domain: str = DOMAIN) -> str:
    return f"http://{domain}/{NPUB[who]}/{d}.git"


def ann(who: str, d: str = "repo", *, clone: bool = True, relay: bool = True,
        maint: tuple[str, ...] = (), created_at: int = T0, roles: tuple[list[str], ...] = ()) -> Event:
    tags = [["d", d], ["name", d], *roles]
    tags.append(["clone", "https://github.com/x/y.git"] + ([clone_url(who, d)] if clone else []))
    tags.append(["relays", "wss://relay.example.com"] + ([f"ws://{DOMAIN}"] if relay else []))
    if maint:
        tags.append(["maintainers", *(PK[m] for m in maint)])
    return ev(who, nip34.ANNOUNCEMENT, tags, created_at)


def state(who: str, d: str = "repo") -> Event:
    return ev(who, nip34.STATE, [["d", d], ["refs/heads/main", TIP], ["HEAD", "ref: refs/heads/main"]])


def coord(who: str, d: str = "repo") -> str:
    return nip34.repo_coordinate(PK[who], d)


CTX = PolicyContext(DOMAIN)


def assert_reject(verdict: Verdict, prefix: str, *words: str) -> None:
    assert verdict.action == "reject", verdict
    assert verdict.message.startswith(prefix + ": "), verdict.message
    for word in words:
        assert word in verdict.message, verdict.message


# --- settings -> context -----------------------------------------------------------------------
def test_context_from_settings_decodes_lists_and_skips_junk() -> None:
    # Settings refuse junk entries when loaded (config/values.py); built without that check,
    # the policy still skips what it cannot use
    settings = Settings.model_construct(**{
        **Settings(domain=DOMAIN).model_dump(),  # type: ignore[call-arg]
        "pubkey_blacklist": [PK["A"], NPUB["B"], "npub1junk", "nonsense"],
        "archive_whitelist": [NPUB["C"], f"{NPUB['D']}/kept", "linux", "npub1bad/x", f"{NPUB['E']}/"],
    })
    ctx = PolicyContext.from_settings(settings)
    assert ctx.domain == DOMAIN
    assert ctx.blacklist == {PK["A"], PK["B"]}
    assert ctx.archive == RepoList(frozenset({PK["C"]}), frozenset({(PK["D"], "kept")}), frozenset({"linux"}))


def test_settings_lists_from_env_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRASP_ARCHIVE_WHITELIST", f"{NPUB['C']}, linux")
    ctx = PolicyContext.from_settings(Settings())
    assert ctx.archive.pubkeys == {PK["C"]} and ctx.archive.identifiers == {"linux"}


def test_hex_whitelist_entry_is_an_identifier() -> None:
    pubkeys, repos, identifiers = parse_archive_whitelist([PK["A"]])
    assert (pubkeys, repos, identifiers) == (frozenset(), frozenset(), {PK["A"]})


# --- blacklist, ephemeral, grasp lists -----------------------------------------------------------
@pytest.mark.parametrize("kind", [nip34.ANNOUNCEMENT, nip34.GRASP_LIST, nip34.ISSUE, nip34.DELETION])
def test_blacklisted_pubkey_is_blocked_for_every_kind(kind: int) -> None:
    ctx = PolicyContext(DOMAIN, blacklist=frozenset({PK["A"]}))
    view = FakeView().serve(ann("B"))
    event = ann("A") if kind == nip34.ANNOUNCEMENT else ev("A", kind, [["a", coord("B")], ["d", "repo"]])
    assert_reject(decide(event, view, ctx), "blocked", "not allowed")
    # the same event from someone else is not blocked by the list
    assert decide(ann("C") if kind == nip34.ANNOUNCEMENT else ev("C", kind, [["a", coord("B")]]),
                  view, CTX).message.startswith("blocked: this pubkey") is False


def test_grasp_list_is_stored_from_anyone() -> None:
    verdict = decide(ev("H", nip34.GRASP_LIST, [["g", f"ws://{DOMAIN}"]]), FakeView(), CTX)
    assert verdict == Verdict("store")


def test_ephemeral_events_are_blocked_even_when_linked() -> None:
    view = FakeView().serve(ann("A"))
    assert_reject(decide(ev("B", 20001, [["a", coord("A")]]), view, CTX), "blocked", "ephemeral")


# --- announcements ----------------------------------------------------------------------------
def test_announcement_listing_us_goes_to_purgatory() -> None:
    verdict = decide(ann("A"), FakeView(), CTX)
    assert verdict == Verdict("purgatory", PURGATORY_MESSAGE, "repo", PK["A"], (PK["A"],))


def test_announcement_with_default_port_domain() -> None:
    npub = NPUB["A"]
    event = ev("A", nip34.ANNOUNCEMENT, [["d", "r"], ["clone", f"https://Git.Example.org/{npub}/r.git"],
                                         ["relays", "wss://git.example.org/"]])
    assert decide(event, FakeView(), PolicyContext("git.example.org")).action == "purgatory"
    assert decide(event, FakeView(), PolicyContext("git.example.org:8443")).action == "reject"


def test_announcement_update_of_a_served_repo_is_stored_directly() -> None:
    view = FakeView().serve(ann("A", created_at=T0))
    verdict = decide(ann("A", created_at=T0 + 10), view, CTX)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("store", "repo", PK["A"])


def test_announcement_update_of_a_held_repo_stays_in_purgatory() -> None:
    view = FakeView().hold(ann("A", created_at=T0))
    assert decide(ann("A", created_at=T0 + 10), view, CTX).action == "purgatory"


@pytest.mark.parametrize(
    ("clone", "relay", "words"),
    [(False, True, ("clone tag", NPUB["A"])), (True, False, ("relays tag",)),
     (False, False, ("clone tag", "relays tag"))],
)
def test_announcement_not_listing_us_says_what_is_missing(clone: bool, relay: bool, words: tuple[str, ...]) -> None:
    verdict = decide(ann("A", clone=clone, relay=relay), FakeView(), CTX)
    assert_reject(verdict, "blocked", *words)
    if clone:
        assert "clone tag" not in verdict.message
    if relay:
        assert "relays tag" not in verdict.message


def test_announcement_with_someone_elses_npub_in_clone_is_blocked() -> None:
    event = ev("A", nip34.ANNOUNCEMENT, [["d", "repo"], ["clone", clone_url("B", "repo")],
                                         ["relays", f"ws://{DOMAIN}"]])
    assert_reject(decide(event, FakeView(), CTX), "blocked", "clone tag")


def test_announcement_with_only_a_prs_url_is_blocked() -> None:
    event = ev("A", nip34.ANNOUNCEMENT, [["d", "repo"], ["clone", f"http://{DOMAIN}/prs/{NPUB['A']}/repo.git"],
                                         ["relays", f"ws://{DOMAIN}"]])
    assert_reject(decide(event, FakeView(), CTX), "blocked", "clone tag")


@pytest.mark.parametrize("d", ["", "..", "a/b"])
def test_announcement_with_unusable_identifier_is_invalid(d: str) -> None:
    event = ev("A", nip34.ANNOUNCEMENT, [["d", d], ["clone", clone_url("A", d)], ["relays", f"ws://{DOMAIN}"]])
    assert_reject(decide(event, FakeView(), CTX), "invalid", "identifier")


@pytest.mark.parametrize(
    "ctx",
    [PolicyContext(DOMAIN, archive=RepoList(pubkeys=frozenset({PK["A"]}))),
     PolicyContext(DOMAIN, archive=RepoList(repos=frozenset({(PK["A"], "repo")}))),
     PolicyContext(DOMAIN, archive=RepoList(identifiers=frozenset({"repo"})))],
)
def test_archive_whitelist_accepts_announcements_not_listing_us(ctx: PolicyContext) -> None:
    verdict = decide(ann("A", clone=False, relay=False), FakeView(), ctx)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("purgatory", "repo", PK["A"])


@pytest.mark.parametrize(
    "ctx",
    [PolicyContext(DOMAIN, archive=RepoList(pubkeys=frozenset({PK["B"]}))),
     PolicyContext(DOMAIN, archive=RepoList(repos=frozenset({(PK["A"], "other"), (PK["B"], "repo")}))),
     PolicyContext(DOMAIN, archive=RepoList(identifiers=frozenset({"other"})))],
)
def test_archive_whitelist_does_not_leak_to_other_repos(ctx: PolicyContext) -> None:
    assert_reject(decide(ann("A", clone=False, relay=False), FakeView(), ctx), "blocked")


def test_maintainer_exception_off_a_served_announcement_is_stored() -> None:
    view = FakeView().serve(ann("A", maint=("B",)))
    verdict = decide(ann("B", clone=False, relay=False), view, CTX)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("store", "repo", PK["B"])


def test_maintainer_exception_off_a_held_announcement_waits_in_purgatory() -> None:
    view = FakeView().hold(ann("A", maint=("B",)))
    assert decide(ann("B", clone=False, relay=False), view, CTX).action == "purgatory"


def test_maintainer_exception_follows_chains() -> None:
    # A (lists us) names B; B (not listing us) names A back and C; C's announcement
    # resolves through B.
    view = FakeView().serve(ann("A", maint=("B",)), ann("B", clone=False, relay=False, maint=("A", "C")))
    assert decide(ann("C", clone=False, relay=False), view, CTX).action == "store"
    assert_reject(decide(ann("D", clone=False, relay=False), view, CTX), "blocked")


def test_maintainer_exception_does_not_reach_through_an_invited_key() -> None:
    # B is only invited (its announcement does not name A back): B appoints nobody yet.
    view = FakeView().serve(ann("A", maint=("B",)), ann("B", clone=False, relay=False, maint=("C",)))
    assert_reject(decide(ann("C", clone=False, relay=False), view, CTX), "blocked")


def test_maintainer_exception_takes_the_announcement_that_confirms_or_steps_down() -> None:
    # B is named by A: B's own announcement, whatever it says about B, is what resolves it
    view = FakeView().serve(ann("A", maint=("B",)))
    back = ev("B", nip34.ANNOUNCEMENT, [["d", "repo"], ["m", PK["A"]]])
    leave = ev("B", nip34.ANNOUNCEMENT, [["d", "repo"], ["m", PK["B"], str(T0 - 9), str(T0 - 5)]])
    assert decide(back, view, CTX).action == "store"
    assert decide(leave, view, CTX).action == "store"
    # an announcement A names only as an inactive co-maintainer gets no exception
    view = FakeView().serve(ann("A", roles=(["m", PK["B"], str(T0 - 9), str(T0 - 5)],)))
    assert_reject(decide(back, view, CTX), "blocked")


def test_maintainer_exception_needs_the_same_identifier() -> None:
    view = FakeView().serve(ann("A", "other", maint=("B",)))
    assert_reject(decide(ann("B", clone=False, relay=False), view, CTX), "blocked")


def test_maintainer_exception_survives_cycles() -> None:
    view = FakeView().serve(ann("A", maint=("B",)), ann("B", clone=False, relay=False, maint=("A", "C")))
    assert decide(ann("C", clone=False, relay=False), view, CTX).action == "store"


def test_own_earlier_announcement_does_not_grant_the_exception() -> None:
    # A once listed us; a replacement that drops us is not accepted on A's own authority.
    view = FakeView().serve(ann("A", maint=("A",)))
    assert_reject(decide(ann("A", clone=False, created_at=T0 + 5), view, CTX), "blocked", "clone tag")


# --- state events -----------------------------------------------------------------------------
def test_state_without_announcement_is_invalid() -> None:
    assert_reject(decide(state("A"), FakeView(), CTX), "invalid", "announcement")


def test_state_by_a_stranger_is_invalid() -> None:
    view = FakeView().serve(ann("A"))
    assert_reject(decide(state("B"), view, CTX), "invalid", "maintainer")


def test_state_by_owner_goes_to_purgatory() -> None:
    view = FakeView().hold(ann("A"))
    assert decide(state("A"), view, CTX) == Verdict("purgatory", PURGATORY_MESSAGE, "repo", PK["A"], (PK["A"],))


def test_state_by_listed_key_without_own_announcement_is_only_invited() -> None:
    view = FakeView().serve(ann("A", maint=("B",)), ann("C"))
    assert_reject(decide(state("B"), view, CTX), "invalid", "invited", NPUB["A"], "name a maintainer back")


def test_state_by_listed_key_once_it_names_the_owner_back() -> None:
    view = FakeView().serve(ann("A", maint=("B",))).hold(ann("B", clone=False, relay=False, maint=("A",)))
    verdict = decide(state("B"), view, CTX)
    assert (verdict.action, verdict.owner, verdict.owners) == ("purgatory", PK["B"], (PK["B"], PK["A"]))


def test_takeover_a_listed_keys_fork_does_not_speak_for_the_lister() -> None:
    # A names B; B already has its own announcement (a fork) that does not name A: B's state
    # counts for B's repo only, never for A's
    view = FakeView().serve(ann("A", maint=("B",)), ann("B"))
    verdict = decide(state("B"), view, CTX)
    assert (verdict.action, verdict.owners) == ("purgatory", (PK["B"],))


def test_state_covers_every_owner_whose_set_holds_the_author_own_repo_first() -> None:
    view = FakeView().serve(ann("A", maint=("B",)), ann("B", maint=("A", "C")), ann("C", maint=("B",)), ann("D"))
    verdict = decide(state("B"), view, CTX)
    assert verdict.owner == PK["B"]
    assert set(verdict.owners) == {PK["A"], PK["B"], PK["C"]}
    chained = decide(state("C"), view, CTX)
    assert chained.owner == PK["C"] and set(chained.owners) == {PK["A"], PK["B"], PK["C"]}


def test_state_by_a_stepped_down_maintainer_is_refused() -> None:
    left = ev("B", nip34.ANNOUNCEMENT, [["d", "repo"], ["m", PK["B"], str(T0 - 9), str(T0 - 5)], ["m", PK["A"]]])
    view = FakeView().serve(ann("A", roles=(["m", PK["B"]],)), left)
    assert_reject(decide(state("B"), view, CTX), "invalid", "steps you down")


def test_role_tag_intervals_are_judged_at_the_policy_clock() -> None:
    view = FakeView().serve(ann("A", roles=(["m", PK["B"], str(T0 + 100)],)),
                            ev("B", nip34.ANNOUNCEMENT, [["d", "repo"], ["m", PK["A"]]]))
    early = PolicyContext(DOMAIN, clock=lambda: T0)
    late = PolicyContext(DOMAIN, clock=lambda: T0 + 100)
    assert_reject(decide(state("B"), view, early), "invalid")
    assert PK["A"] in decide(state("B"), view, late).owners


def test_walk_bounds_come_from_the_settings() -> None:
    ctx = PolicyContext.from_settings(Settings(domain=DOMAIN, maintainer_walk_max_rounds=2,
                                               maintainer_walk_max_keys=9))
    assert ctx.walk == nip34.WalkLimits(2, 9)


def test_state_for_other_identifier_is_invalid() -> None:
    view = FakeView().serve(ann("A", "repo"))
    assert_reject(decide(state("A", "other"), view, CTX), "invalid", "other")


# --- pull requests ----------------------------------------------------------------------------
def pr(who: str, tags: list[list[str]]) -> Event:
    return ev(who, nip34.PR, tags)


def test_pull_request_to_known_repo_goes_to_purgatory() -> None:
    view = FakeView().serve(ann("A"))
    verdict = decide(pr("B", [["a", coord("A")], ["a", coord("C")], ["c", TIP], ["subject", "x"]]), view, CTX)
    assert verdict == Verdict("purgatory", PURGATORY_MESSAGE, "repo", PK["A"], (PK["A"],))


def test_pull_request_checks() -> None:
    view = FakeView().serve(ann("A"))
    assert_reject(decide(pr("B", [["a", coord("A")]]), view, CTX), "invalid", "c tag")
    assert_reject(decide(pr("B", [["a", coord("A")], ["c", "main"]]), view, CTX), "invalid", "c tag")
    assert_reject(decide(pr("B", [["c", TIP]]), view, CTX), "invalid", "repository")
    assert_reject(decide(pr("B", [["a", coord("C")], ["c", TIP]]), view, CTX), "blocked", "repository")


def test_pr_update_finds_its_repository_through_the_root_pr() -> None:
    root = pr("B", [["a", coord("A")], ["c", TIP]])
    view = FakeView().serve(ann("A")).hold(root)
    update = ev("B", nip34.PR_UPDATE, [["E", root.id], ["P", PK["B"]], ["c", "cd" * 20]])
    verdict = decide(update, view, CTX)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("purgatory", "repo", PK["A"])


def test_pr_update_without_known_root_uses_its_own_a_tags() -> None:
    view = FakeView().serve(ann("A"))
    update = ev("B", nip34.PR_UPDATE, [["E", "ee" * 32], ["a", coord("A")], ["c", "cd" * 20]])
    assert decide(update, view, CTX).identifier == "repo"
    orphan = ev("B", nip34.PR_UPDATE, [["E", "ee" * 32], ["c", "cd" * 20]])
    assert_reject(decide(orphan, view, CTX), "blocked", "repository")
    no_tip = ev("B", nip34.PR_UPDATE, [["E", "ee" * 32], ["a", coord("A")]])
    assert_reject(decide(no_tip, view, CTX), "invalid", "c tag")


# --- deletions --------------------------------------------------------------------------------
def test_deletions() -> None:
    own = ev("B", nip34.ISSUE, [["a", coord("A")], ["subject", "x"]])
    theirs = ev("C", nip34.ISSUE, [["a", coord("A")], ["subject", "y"]])
    view = FakeView().serve(ann("A"), theirs).hold(own)
    assert decide(ev("B", nip34.DELETION, [["e", own.id]]), view, CTX).action == "store"
    assert decide(ev("A", nip34.DELETION, [["a", coord("A")]]), view, CTX).action == "store"
    assert_reject(decide(ev("B", nip34.DELETION, [["e", theirs.id]]), view, CTX), "blocked", "deletion")
    assert_reject(decide(ev("B", nip34.DELETION, [["a", coord("A")]]), view, CTX), "blocked", "deletion")
    assert_reject(decide(ev("B", nip34.DELETION, [["e", "ff" * 32]]), view, CTX), "blocked", "deletion")
    assert_reject(decide(ev("B", nip34.DELETION, [["k", "1621"]]), view, CTX), "invalid", "deletion")


# --- the repo graph ---------------------------------------------------------------------------
def test_issue_tagging_a_served_repo_is_stored_with_its_repository() -> None:
    view = FakeView().serve(ann("A"))
    verdict = decide(ev("B", nip34.ISSUE, [["a", coord("A")], ["p", PK["A"]]]), view, CTX)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("store", "repo", PK["A"])


def test_a_held_announcement_anchors_nothing() -> None:
    # the junk-announcement attack: announce, never push, publish notes tagging it
    view = FakeView().hold(ann("A"))
    for event in (ev("B", nip34.ISSUE, [["a", coord("A")]]), ev("B", 1, [["q", coord("A")]], content="x" * 1000),
                  ev("B", nip34.COMMENT, [["A", coord("A")], ["K", "30617"]])):
        assert_reject(decide(event, view, CTX), "blocked", "waits for its git data")
    pr_to_held = ev("B", nip34.PR, [["a", coord("A")], ["c", TIP]])
    assert_reject(decide(pr_to_held, view, CTX), "blocked", "served here yet")
    # an event a held event tags is not anchored either
    note = ev("C", 1, [], content="hello")
    view.hold(ev("B", nip34.PR, [["a", coord("A")], ["c", TIP], ["q", note.id]]))
    assert_reject(decide(note, view, CTX), "blocked")
    # once the announcement is served, the same events are stored
    view.serve(*view.held.values())
    assert decide(ev("B", nip34.ISSUE, [["a", coord("A")]]), view, CTX).action == "store"
    assert decide(note, view, CTX).action == "store"


def test_a_held_state_or_pr_anchors_nothing_but_its_served_repo_does() -> None:
    held_state = state("A")
    view = FakeView().serve(ann("A")).hold(held_state)
    assert_reject(decide(ev("B", 1, [["e", held_state.id]]), view, CTX), "blocked", "waits")
    assert decide(ev("B", 1, [["e", held_state.id], ["a", coord("A")]]), view, CTX).action == "store"


def test_orphans_are_blocked() -> None:
    view = FakeView().serve(ann("A"))
    for event in (
        ev("B", nip34.ISSUE, [["a", coord("C")]]),
        ev("B", 1, [["e", "ff" * 32], ["p", PK["A"]]]),
        ev("B", 0, []),
        ev("B", nip34.COMMENT, [["A", "30617:not-a-key:repo"], ["E", "zz"]]),
    ):
        assert_reject(decide(event, view, CTX), "blocked", "does not reference a repository")


def test_comment_on_a_known_issue_is_stored_with_the_issues_repository() -> None:
    issue = ev("B", nip34.ISSUE, [["a", coord("A")]])
    view = FakeView().serve(ann("A"), issue)
    comment = ev("C", nip34.COMMENT, [["E", issue.id], ["K", "1621"], ["e", issue.id], ["k", "1621"]])
    verdict = decide(comment, view, CTX)
    assert (verdict.action, verdict.identifier, verdict.owner) == ("store", "repo", PK["A"])


def test_status_referencing_a_held_pr_needs_the_served_repo() -> None:
    root = pr("B", [["a", coord("A")], ["c", TIP]])
    view = FakeView().serve(ann("A")).hold(root)
    status = ev("A", nip34.STATUS_CLOSED, [["e", root.id, "", "root"]])
    assert_reject(decide(status, view, CTX), "blocked", "waits")
    with_repo = ev("A", nip34.STATUS_CLOSED, [["e", root.id, "", "root"], ["a", coord("A")]])
    assert decide(with_repo, view, CTX).action == "store"
    view.serve(root)
    assert decide(status, view, CTX).action == "store"


@pytest.mark.parametrize("use_coordinate", [False, True])
def test_quote_tags_link_to_the_graph(use_coordinate: bool) -> None:
    issue = ev("B", nip34.ISSUE, [["a", coord("A")]])
    view = FakeView().serve(ann("A"), issue)
    target = coord("A") if use_coordinate else issue.id
    assert decide(ev("C", 1, [["q", target]], content="look"), view, CTX).action == "store"


def test_event_tagged_by_a_stored_event_is_accepted() -> None:
    # A comment arrived first (e.g. by sync) and names this note; the note is now in the graph.
    note = ev("C", 1, [], content="hello")
    view = FakeView().serve(ann("A"), ev("B", nip34.COMMENT, [["a", coord("A")], ["q", note.id]]))
    verdict = decide(note, view, CTX)
    assert (verdict.action, verdict.identifier) == ("store", None)


def test_addressable_event_tagged_by_coordinate_is_accepted() -> None:
    article = ev("C", 30023, [["d", "post"]], content="about the repo")
    view = FakeView().serve(ann("A"), ev("B", nip34.COMMENT, [["a", coord("A")], ["a", article.coordinate or ""]]))
    assert decide(article, view, CTX).action == "store"


def test_every_reject_message_carries_a_nip01_prefix() -> None:
    view = FakeView()
    samples = [ann("A", clone=False), state("A"), pr("B", [["c", TIP]]), ev("B", 1, []),
               ev("B", nip34.DELETION, []), ev("B", 20000, [])]
    for event in samples:
        verdict = decide(event, view, CTX)
        assert verdict.action == "reject"
        assert verdict.message.split(": ", 1)[0] in ("blocked", "invalid"), verdict.message
