"""Unit tests of the GRASP-06 pure parts: which clone URLs name a contributor repo, which PRs
are GRASP-06 PRs, the /prs/ push rules, and the policy rule holding such PRs."""

from __future__ import annotations

from pathlib import Path

import pytest

from purgatory.prs import parse_repo_key, prs_key, prs_target, prs_url_path
from relay.git.pktline import RefUpdate
from relay.git.prs import ONLY_NOSTR, parse_prs_path, plan_prs_push
from relay.git.request import RepoRef
from relay.nostr.policy import PolicyContext, decide
from storage.nostr import nip34
from tests.test_policy import DOMAIN, NPUB, PK, TIP, FakeView, ann, assert_reject, coord, ev

Z = "0" * 40


def pr(who: str, clone: str, d: str = "repo", owner: str = "A", tip: str = TIP, kind: int = nip34.PR):
    return ev(who, kind, [["a", coord(owner, d)], ["c", tip], ["clone", clone]])


def url(who: str, d: str = "repo", domain: str = DOMAIN) -> str:
    return f"http://{domain}/prs/{NPUB[who]}/{d}.git"


def test_prs_url_path() -> None:
    assert prs_url_path(url("B"), DOMAIN) == (NPUB["B"], "repo")
    assert prs_url_path(f"http://{DOMAIN}/prs/{NPUB['B']}/a%20b.git/", DOMAIN) == (NPUB["B"], "a b")
    for other in (url("B", domain="git.example.org"), f"http://{DOMAIN}/{NPUB['B']}/repo.git",
                  f"http://{DOMAIN}/prs/{NPUB['B']}/repo", f"ws://{DOMAIN}/prs/{NPUB['B']}/repo.git",
                  f"http://{DOMAIN}/prs/{NPUB['B']}/repo.git?x=1", "not a url"):
        assert prs_url_path(other, DOMAIN) is None


def test_prs_target_needs_the_signers_path_and_a_tagged_d() -> None:
    assert prs_target(pr("B", url("B")), DOMAIN) == "repo"
    assert prs_target(pr("B", url("C")), DOMAIN) is None  # someone else's path
    assert prs_target(pr("B", url("B", "other")), DOMAIN) is None  # not the d it tags
    assert prs_target(ev("B", nip34.ISSUE, [["a", coord("A")], ["clone", url("B")]]), DOMAIN) is None
    root = pr("B", url("B"))
    update = ev("B", nip34.PR_UPDATE, [["E", root.id], ["c", TIP], ["clone", url("B")]])
    assert prs_target(update, DOMAIN) is None and prs_target(update, DOMAIN, root) == "repo"


def test_repo_keys() -> None:
    assert parse_repo_key(prs_key(PK["B"], "x/y")) == (True, PK["B"], "x/y")
    assert parse_repo_key(f"{PK['B']}/repo") == (False, PK["B"], "repo")


def test_parse_prs_path() -> None:
    assert parse_prs_path(f"/prs/{NPUB['B']}/r%2e.git/info/refs") == (NPUB["B"], "r%2e", "/info/refs")
    assert parse_prs_path(f"/{NPUB['B']}/r.git/info/refs") is None


REPO = RepoRef(NPUB["B"], PK["B"], "repo", Path("/nonexistent"))


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/tags/v1", "refs/nostr/short", "refs/other/x",
                                 f"refs/nostr/{'A' * 64}"])
def test_plan_refuses_every_other_namespace(ref: str) -> None:
    plan = plan_prs_push(REPO, [RefUpdate(Z, TIP, ref)], {}, {}, {}, DOMAIN, {})
    assert plan.reasons == (ONLY_NOSTR,)


def test_plan_checks_a_known_event_against_the_path() -> None:
    good = pr("B", url("B"))
    ref = RefUpdate(Z, TIP, nip34.PR_REF_PREFIX + good.id)
    plan = plan_prs_push(REPO, [ref], {}, {}, {good.id: good}, DOMAIN, {})
    assert not plan.refused and plan.target == "pending"
    wrong_tip = RefUpdate(Z, "cd" * 20, ref.ref)
    assert "names tip" in (plan_prs_push(REPO, [wrong_tip], {}, {}, {good.id: good}, DOMAIN, {}).first_reason or "")
    by_other = pr("C", url("B"))
    ref = RefUpdate(Z, TIP, nip34.PR_REF_PREFIX + by_other.id)
    assert "not the owner" in (plan_prs_push(REPO, [ref], {}, {}, {by_other.id: by_other}, DOMAIN, {})
                               .first_reason or "")
    other_d = pr("B", url("B", "other"))
    ref = RefUpdate(Z, TIP, nip34.PR_REF_PREFIX + other_d.id)
    assert "does not tag a repository" in (plan_prs_push(REPO, [ref], {}, {}, {other_d.id: other_d}, DOMAIN, {})
                                           .first_reason or "")
    unknown = RefUpdate(Z, TIP, nip34.PR_REF_PREFIX + "e" * 64)
    assert plan_prs_push(REPO, [unknown], {}, {}, {}, DOMAIN, {}).target == "pending"


def test_policy_holds_a_contributor_pr_only_when_on() -> None:
    event = pr("B", url("B"))
    off = decide(event, FakeView(), PolicyContext(DOMAIN))
    assert_reject(off, "blocked", "names no repository served here")
    on = decide(event, FakeView(), PolicyContext(DOMAIN, grasp06=True))
    assert on.action == "purgatory" and on.identifier == "repo" and on.owners == (PK["A"],)
    assert_reject(decide(pr("B", url("C")), FakeView(), PolicyContext(DOMAIN, grasp06=True)), "blocked")
    no_tip = ev("B", nip34.PR, [["a", coord("A")], ["clone", url("B")]])
    assert_reject(decide(no_tip, FakeView(), PolicyContext(DOMAIN, grasp06=True)), "invalid", "c tag")
    # a repo served here: the GRASP-01 verdict stands
    served = decide(event, FakeView().serve(ann("A")), PolicyContext(DOMAIN, grasp06=True))
    assert served.action == "purgatory" and served.owners == (PK["A"],)


def test_repo_store_removes_only_empty_repos(tmp_path: Path) -> None:
    from storage.repos import RepoStore
    from tests.gitutil import make_repo, rev

    store = RepoStore(tmp_path / "prs", pending_dir=tmp_path / "prs-pending")
    empty = store.ensure(PK["B"], "empty")
    held = store.ensure(PK["B"], "held")
    work = make_repo(tmp_path / "work", commits=1)
    store.ensure_pending(PK["B"], "empty")
    store.copy_objects(work / ".git", held, [rev(work)])
    store.set_ref(held, "refs/nostr/" + "a" * 64, rev(work))
    assert store.remove_if_empty(empty) and not empty.exists()
    assert store.pending_exists(PK["B"], "empty")  # its pending area is not the repo's to drop
    assert not store.remove_if_empty(held) and held.exists()
    assert store.remove_empty_repos() == 0 and store.remove_empty_pending() == 1
