"""The hourly served-data check over real bare repos (pygit2, the git CLI) with a small
in-memory stand-in for the store's read view: which repos it records as lacking objects,
which it leaves alone, how a round bounded to N repos resumes, and how a repo is completed
from objects that arrived in the quarantine, and only towards the served state it follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config import Settings
from purgatory.integrity.served_data import ServedDataCheck
from purgatory.locate import Locator
from purgatory.quarantine import Quarantines, init_quarantine
from purgatory.sync.served_gaps import ServedGaps
from relay.metrics import Metrics
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.repos import RepoStore
from tests.daemon import ALICE, announcement, metric, pubkey_of, state
from tests.gitutil import commit, git, make_repo, rev
from tests.test_served_data_daemon import lose_objects

OWNER = pubkey_of(ALICE)


class View:
    """Served announcements and states, as StoreView answers for them."""

    def __init__(self) -> None:
        self.anns: list[Event] = []
        self.states: list[Event] = []

    def served_announcement(self, pubkey: str, identifier: str) -> Event | None:
        return next((a for a in self.anns if a.pubkey == pubkey and a.d_tag == identifier), None)

    announcement = served_announcement

    def announcements_for(self, identifier: str) -> list[Event]:
        return [a for a in self.anns if a.d_tag == identifier]

    def states_for(self, identifier: str) -> list[Event]:
        return [s for s in self.states if s.d_tag == identifier]

    def is_served(self, event_id: str) -> bool:
        return True


class Setup:
    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.settings = Settings(data_dir=tmp / "data", **settings)
        self.repos = RepoStore(self.settings.repos_dir, "git")
        self.view = View()
        self.quarantines = Quarantines(tmp / "data" / "quarantine")
        self.locator = Locator(self.repos, self.view, None, self.quarantines.path,  # type: ignore[arg-type]
                               nip34.WalkLimits())
        self.gaps = ServedGaps(10, 100)
        self.queued: list[str] = []
        self.metrics = Metrics(process_metrics=False)
        self.check = ServedDataCheck(self.settings, self.view, self.repos, self.locator, self.gaps,
                                     lambda ident, _delay: self.queued.append(ident), self.metrics)
        self.work = make_repo(tmp / "work", commits=2)

    def serve(self, identifier: str, refs: dict[str, str], push: bool = True) -> Path:
        """A served repo at a signed state (pushed, so it holds the objects)."""
        self.view.anns.append(announcement(ALICE, self.settings.domain, identifier))
        self.view.states.append(state(ALICE, identifier, refs))
        path = self.repos.ensure(OWNER, identifier)
        if push:
            git("push", "-q", str(path), *[f"{oid}:{name}" for name, oid in refs.items()], cwd=self.work)
            git("symbolic-ref", "HEAD", "refs/heads/main", cwd=path)
        return path

    def metric(self, name: str) -> float:
        return metric(self.metrics.render()[0].decode(), name)


async def test_a_round_records_lost_objects_and_leaves_other_repos_alone(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    tip = rev(s.work)
    lost = s.serve("lost", {"refs/heads/main": tip})
    fine = s.serve("fine", {"refs/heads/main": tip})
    diverged = s.serve("diverged", {"refs/heads/main": rev(s.work, "HEAD~1")})
    git("push", "-q", "-f", str(diverged), f"{tip}:refs/heads/main", cwd=s.work)  # not where its state says
    lose_objects(lost)
    lose_objects(diverged)
    round_ = await s.check.run_round()
    assert round_.checked == 3 and round_.missing == 1
    assert s.queued == ["lost"]
    assert [g.path for g in s.gaps.of("lost", 0)] == [lost] and s.gaps.needed("lost", 0) == {tip}
    assert not s.gaps.has("diverged", 0) and not s.gaps.has("fine", 0)  # the integrity pass's / clean
    assert s.metric("grasp_served_data_repos_checked_total") == 3
    assert s.metric("grasp_served_data_repos_missing") == 1
    assert RepoStore.refs(fine) == {"refs/heads/main": tip}


async def test_completed_from_the_quarantine_once_the_objects_are_there(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    tip = rev(s.work)
    git("tag", "-a", "v1", "-m", "v1", "HEAD~1", cwd=s.work)
    tag = rev(s.work, "refs/tags/v1")
    refs = {"refs/heads/main": tip, "refs/tags/v1": tag}
    lost = s.serve("lost", refs)
    lose_objects(lost)
    await s.check.run_round()
    assert s.gaps.needed("lost", 0) == {tip, tag}
    await s.check.complete("lost")  # nothing here yet: the gap waits for the fetch
    assert s.gaps.has("lost", 0) and RepoStore.missing(lost, refs.values()) == {tip, tag}
    # the sync fetched them into the quarantine
    quarantine = s.quarantines.path("lost")
    init_quarantine(quarantine)
    git("fetch", "-q", str(s.work), "main", "refs/tags/v1:refs/tags/v1", cwd=quarantine)
    await s.check.complete("lost")
    assert not s.gaps.has("lost", 0)
    assert RepoStore.missing(lost, refs.values()) == set()
    assert RepoStore.refs(lost) == refs and RepoStore.head(lost) == "refs/heads/main"
    assert git("fsck", "--no-dangling", cwd=lost).returncode == 0
    assert s.metric("grasp_served_data_objects_recovered_total") == 2
    assert s.metric("grasp_served_data_repos_missing") == 0


async def test_an_empty_repo_gets_its_state_and_a_moved_one_is_not_written(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    tip = rev(s.work)
    empty = s.serve("empty", {"refs/heads/main": tip}, push=False)  # adopted while the data was nowhere
    moved = s.serve("moved", {"refs/heads/main": tip})
    lose_objects(moved)
    await s.check.run_round()
    assert s.gaps.has("empty", 0) and s.gaps.has("moved", 0)
    # the objects arrive in each quarantine; meanwhile someone moved "moved" elsewhere
    for identifier in ("empty", "moved"):
        init_quarantine(s.quarantines.path(identifier))
        git("fetch", "-q", str(s.work), "main", cwd=s.quarantines.path(identifier))
    other = commit(s.work, "rogue.txt")
    git("fetch", "-q", str(s.work), other, cwd=moved)  # receive-pack refuses a repo with lost objects
    git("update-ref", "refs/heads/main", other, cwd=moved)
    await s.check.complete("empty")
    await s.check.complete("moved")
    assert RepoStore.refs(empty) == {"refs/heads/main": tip} and RepoStore.head(empty) == "refs/heads/main"
    assert RepoStore.refs(moved) == {"refs/heads/main": other}  # left to the integrity pass
    assert not s.gaps.has("moved", 0)
    assert s.metric("grasp_served_data_objects_recovered_total") == 1


async def test_bounded_rounds_resume_where_they_stopped(tmp_path: Path) -> None:
    s = Setup(tmp_path, served_data_check_max_repos=2)
    tip = rev(s.work)
    for name in ("r1", "r2", "r3"):
        s.serve(name, {"refs/heads/main": tip})
    lose_objects(s.repos.path(OWNER, "r3"))
    first = await s.check.run_round()
    assert (first.checked, first.missing, first.left_for_later) == (2, 0, 1)
    second = await s.check.run_round()
    assert (second.checked, second.missing) == (2, 1)  # r3, then r1 again
    assert s.queued == ["r3"]
