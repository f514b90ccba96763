"""Unit tests of the curation lists and GRASP-05 archive modes in the acceptance rules
(pure: a dict-backed view), and of what NIP-11 says about them."""

from __future__ import annotations

import pytest

from config.settings import Settings
from relay.nostr import nip11
from relay.nostr.policy import PolicyContext, RepoList, decide
from storage.nostr import nip34
from tests.test_policy import DOMAIN, NPUB, PK, FakeView, ann, assert_reject, coord, ev, state


def repos(*entries: str) -> RepoList:
    return RepoList.parse(list(entries))


def test_list_entries_name_an_author_a_repo_or_an_identifier() -> None:
    listed = repos(NPUB["A"], f"{NPUB['B']}/one", "shared", "npub1junk", f"{NPUB['C']}/")
    assert listed.matches(PK["A"], "anything")
    assert listed.matches(PK["B"], "one") and not listed.matches(PK["B"], "two")
    assert listed.matches(PK["D"], "shared") and not listed.matches(PK["D"], "one")
    assert not listed.matches(PK["C"], "") and not RepoList()


def test_repository_whitelist_hosts_only_what_it_names() -> None:
    ctx = PolicyContext(DOMAIN, repository_whitelist=repos(f"{NPUB['A']}/repo"))
    assert decide(ann("A"), FakeView(), ctx).action == "purgatory"
    assert_reject(decide(ann("B"), FakeView(), ctx), "blocked", "hosts only the repositories")
    assert_reject(decide(ann("A", "other"), FakeView(), ctx), "blocked", "hosts only")
    # an announcement not listing us still says what is missing, not the whitelist
    assert_reject(decide(ann("A", "elsewhere", clone=False), FakeView(), ctx), "blocked", "clone tag")


def test_repository_whitelist_keeps_the_maintainer_exception_of_a_listed_repo() -> None:
    ctx = PolicyContext(DOMAIN, repository_whitelist=repos(f"{NPUB['A']}/repo"))
    owner = ann("A", maint=("B",))
    assert decide(ann("B", maint=("A",)), FakeView().serve(owner), ctx).action == "store"


@pytest.mark.parametrize("entry", [NPUB["A"], f"{NPUB['A']}/repo", "repo"])
def test_repository_blacklist_beats_every_whitelist(entry: str) -> None:
    ctx = PolicyContext(DOMAIN, repository_whitelist=repos(entry), repository_blacklist=repos(entry),
                        archive=repos(entry), archive_all=True)
    assert_reject(decide(ann("A"), FakeView(), ctx), "blocked", "does not accept repository", "/repo")
    assert_reject(decide(ann("A", clone=False, relay=False), FakeView(), ctx), "blocked", "does not accept")


def test_repository_blacklist_refuses_events_tagging_the_repo_and_its_states() -> None:
    ctx = PolicyContext(DOMAIN, repository_blacklist=repos(f"{NPUB['A']}/repo"))
    view = FakeView().serve(ann("A"), ann("B", "other"))
    issue = ev("C", nip34.ISSUE, [["a", coord("A")], ["p", PK["A"]]])
    assert_reject(decide(issue, view, ctx), "blocked", "does not accept repository")
    assert_reject(decide(state("A"), view, ctx), "blocked", "does not accept repository")
    # other repos are unaffected
    assert decide(ev("C", nip34.ISSUE, [["a", coord("B", "other")]]), view, ctx).action == "store"
    assert decide(state("B", "other"), view, ctx).action == "purgatory"


def test_author_blacklist_is_checked_before_the_repository_lists() -> None:
    ctx = PolicyContext(DOMAIN, blacklist=frozenset({PK["A"]}), repository_whitelist=repos(NPUB["A"]))
    assert_reject(decide(ann("A"), FakeView(), ctx), "blocked", "pubkey is not allowed")


def test_archive_all_accepts_announcements_elsewhere() -> None:
    elsewhere = ann("A", clone=False, relay=False)
    assert_reject(decide(elsewhere, FakeView(), PolicyContext(DOMAIN)), "blocked")
    assert decide(elsewhere, FakeView(), PolicyContext(DOMAIN, archive_all=True)).action == "purgatory"


def test_archive_grasp_services_matches_clone_hosts() -> None:
    ctx = PolicyContext(DOMAIN, archive_services=("github.com",))
    assert decide(ann("A", clone=False, relay=False), FakeView(), ctx).action == "purgatory"
    other = PolicyContext(DOMAIN, archive_services=("git.example.org",))
    assert_reject(decide(ann("A", clone=False, relay=False), FakeView(), other), "blocked", "clone tag")


def test_states_for_an_archived_repo_count() -> None:
    ctx = PolicyContext(DOMAIN, archive_all=True)
    view = FakeView().serve(ann("A", clone=False, relay=False))
    assert decide(state("A"), view, ctx).action == "purgatory"
    assert_reject(decide(state("A"), view, PolicyContext(DOMAIN)), "invalid")


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, domain=DOMAIN, **values)  # type: ignore[call-arg]


def test_nip11_advertises_exactly_what_is_on() -> None:
    plain = nip11.relay_information(settings())
    assert plain["supported_grasps"] == ["GRASP-01", "GRASP-02"] and "curation" not in plain
    assert "archived" not in plain["repo_acceptance_criteria"] and "/prs/" not in plain["repo_acceptance_criteria"]
    prs = nip11.relay_information(settings(grasp06_enabled=True))
    assert prs["supported_grasps"] == ["GRASP-01", "GRASP-02", "GRASP-06"] and "curation" not in prs
    assert f"http(s)://{DOMAIN}/prs/<npub>/<identifier>.git" in prs["repo_acceptance_criteria"]
    for on in ({"archive_all": True}, {"archive_whitelist": "repo"}, {"archive_grasp_services": "github.com"}):
        doc = nip11.relay_information(settings(**on))
        assert doc["supported_grasps"] == ["GRASP-01", "GRASP-02", "GRASP-05"]
        assert "archived" in doc["curation"] and "read-only" in doc["curation"]
        assert "archived when" in doc["repo_acceptance_criteria"]
    writable = nip11.relay_information(settings(archive_all=True, archive_read_only=False))
    assert "also accept pushes" in writable["curation"]
    for name, word in (("repository_whitelist", "hosted"), ("repository_blacklist", "refused"),
                       ("pubkey_blacklist", "blocked")):
        doc = nip11.relay_information(settings(**{name: NPUB["A"]}))
        assert doc["supported_grasps"] == ["GRASP-01", "GRASP-02"] and word in doc["curation"]
        assert "archived" not in doc["curation"]


@pytest.mark.parametrize("name", ["repository_whitelist", "repository_blacklist"])
def test_list_settings_refuse_bad_entries(name: str) -> None:
    with pytest.raises(ValueError, match="npub"):
        settings(**{name: "npub1bad/x"})
    assert getattr(settings(**{name: f"{NPUB['A']}, linux"}), name) == [NPUB["A"], "linux"]


def test_archive_services_are_bare_hosts() -> None:
    with pytest.raises(ValueError, match="host"):
        settings(archive_grasp_services="https://github.com/")
    assert settings(archive_grasp_services="GitHub.com relay.ngit.dev:443").archive_grasp_services == [
        "github.com", "relay.ngit.dev:443"]


def test_push_rules_blacklist_and_read_only_archive() -> None:
    from relay.nostr.policy.pushes import READ_ONLY_ARCHIVE, push_refusal

    hosted, mirror = ann("A"), ann("A", clone=False, relay=False)
    archiving = PolicyContext(DOMAIN, archive_all=True, archive_read_only=True)
    assert push_refusal(PK["A"], "repo", mirror, archiving) == READ_ONLY_ARCHIVE
    assert push_refusal(PK["A"], "repo", hosted, archiving) is None  # lists us: hosted, not archived
    assert push_refusal(PK["A"], "repo", mirror, PolicyContext(DOMAIN, archive_all=True)) is None
    blocked = PolicyContext(DOMAIN, repository_blacklist=repos("repo"))
    assert "does not accept repository" in (push_refusal(PK["A"], "repo", hosted, blocked) or "")
    assert push_refusal(PK["A"], "other", None, blocked) is None


def test_read_only_applies_only_while_archiving() -> None:
    assert not PolicyContext.from_settings(settings()).archive_read_only
    assert PolicyContext.from_settings(settings(archive_whitelist="repo")).archive_read_only
    assert not PolicyContext.from_settings(settings(archive_all=True, archive_read_only=False)).archive_read_only
