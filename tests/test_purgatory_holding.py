"""Intake and expiry (purgatory/holding.py) against fakes: what is held, what is released at
once because its data is already here, duplicates, events that expired earlier; and what
the sweeper removes."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from purgatory import lifecycle
from purgatory.holding import Holding
from purgatory.release import PURGATORY_MESSAGE
from storage.nostr import nip34
from storage.nostr.event import Event
from storage.sqlite.records import HeldEntry
from tests.purgatory_fakes import ALICE, BOB, CAROL, OID, FakeMetrics, FakeRepos, FakeStore, announcement, pk, pr, state

EXPIRY_S = 600.0
MEMORY_S = 3600.0


class Steps:
    """The callables Holding is built with, each recording its calls in `calls`."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.calls: list[tuple[str, object]] = []
        self.satisfied: set[str] = set()  # ids whose data is "here": on_git_data releases them
        self.adopts = False

    async def on_git_data(self, identifier: str) -> set[str]:
        self.calls.append(("on_git_data", identifier))
        ready = [e for e in await self.store.held(identifier) if e.event.id in self.satisfied]
        if ready:
            await self.store.release([e.event.id for e in ready])
        return {e.event.id for e in ready}

    async def release_entries(self, identifier: str, entries: list[HeldEntry], trigger: str) -> None:
        self.calls.append(("release_entries", ([e.event.id for e in entries], trigger)))
        await self.store.release([e.event.id for e in entries])

    async def adopt_served_state(self, event: Event, identifier: str) -> bool:
        self.calls.append(("adopt", event.id))
        return self.adopts

    async def pr_event_arrived(self, event: Event) -> None:
        self.calls.append(("pr_event_arrived", event.id))

    async def pr_event_expired(self, event: Event) -> None:
        self.calls.append(("pr_event_expired", event.id))

    async def expire_placeholders(self) -> None:
        self.calls.append(("expire_placeholders", None))

    async def drop_quarantine(self, identifier: str) -> None:
        self.calls.append(("drop_quarantine", identifier))

    def enqueue(self, identifier: str, delay: float) -> None:
        self.calls.append(("enqueue", (identifier, delay)))

    def named(self, name: str) -> list[object]:
        return [arg for call, arg in self.calls if call == name]


def build(tmp_path: Path, sync: bool = True) -> tuple[Holding, FakeStore, FakeRepos, FakeMetrics, Steps, list[float]]:
    clock = [1000.0]
    store, repos, metrics = FakeStore(clock), FakeRepos(tmp_path), FakeMetrics()
    steps = Steps(store)
    settings = Settings(data_dir=tmp_path, purgatory_expiry_s=EXPIRY_S, purgatory_expired_memory_s=MEMORY_S,
                        sync_user_delay_s=1.0, sync_synced_delay_s=30.0)
    holding = Holding(settings, store, store, repos, metrics, on_git_data=steps.on_git_data,  # type: ignore[arg-type]
                      release_entries=steps.release_entries, adopt_served_state=steps.adopt_served_state,
                      pr_event_arrived=steps.pr_event_arrived, pr_event_expired=steps.pr_event_expired,
                      expire_placeholders=steps.expire_placeholders,
                      drop_quarantine=steps.drop_quarantine, enqueue_sync=steps.enqueue if sync else None,
                      clock=lambda: clock[0])
    return holding, store, repos, metrics, steps, clock


async def test_a_state_without_its_data_is_held_with_a_deadline_and_a_sync_request(tmp_path: Path) -> None:
    holding, store, _repos, metrics, steps, clock = build(tmp_path)
    s = state(ALICE, "r", {"refs/heads/main": OID[1]})

    assert await holding.accept(s, None, "client") == PURGATORY_MESSAGE

    held = store.entries[s.id]
    assert (held.identifier, held.expires_at, held.source) == ("r", clock[0] + EXPIRY_S, "client")
    assert metrics.purgatory == [(nip34.STATE, "held")]
    assert steps.named("on_git_data") == ["r"]  # the data might be here already
    assert steps.named("enqueue") == [("r", 1.0)]  # a client's event: the user delay


async def test_an_event_from_a_peer_waits_the_synced_delay(tmp_path: Path) -> None:
    holding, _store, _repos, _metrics, steps, _clock = build(tmp_path)

    await holding.accept(state(ALICE, "r", {"refs/heads/main": OID[1]}), "r", "wss://peer")

    assert steps.named("enqueue") == [("r", 30.0)]


async def test_an_event_whose_data_is_here_is_released_at_once_and_nothing_is_fetched(tmp_path: Path) -> None:
    holding, store, _repos, metrics, steps, _clock = build(tmp_path)
    s = state(ALICE, "r", {"refs/heads/main": OID[1]})
    steps.satisfied.add(s.id)

    assert await holding.accept(s, None, "client") == ""

    assert s.id in store.served and s.id not in store.entries
    assert metrics.purgatory == [(nip34.STATE, "held")]  # counted released by the release step itself
    assert steps.named("enqueue") == [] and steps.named("adopt") == []


async def test_a_duplicate_keeps_its_first_deadline_and_is_counted_once(tmp_path: Path) -> None:
    holding, store, _repos, metrics, steps, clock = build(tmp_path)
    s = state(ALICE, "r", {"refs/heads/main": OID[1]})
    await holding.accept(s, None, "client")
    first = store.entries[s.id].expires_at
    clock[0] += 100

    assert await holding.accept(s, None, "wss://peer") == PURGATORY_MESSAGE

    assert store.entries[s.id].expires_at == first and store.entries[s.id].source == "client"
    assert metrics.purgatory == [(nip34.STATE, "held")]
    assert len(steps.named("enqueue")) == 2  # each copy may bring a new place to fetch from


async def test_an_event_that_expired_earlier_is_refused_without_any_step(tmp_path: Path) -> None:
    holding, store, _repos, metrics, steps, _clock = build(tmp_path)
    s = state(ALICE, "r", {"refs/heads/main": OID[1]})
    store.expired[s.id] = 0.0

    assert await holding.accept(s, None, "wss://peer") is None

    assert store.entries == {} and metrics.purgatory == [] and steps.calls == []


async def test_an_announcement_gets_its_repo_and_is_released_when_its_maintainers_state_is_served(
        tmp_path: Path) -> None:
    holding, store, repos, _metrics, steps, _clock = build(tmp_path)
    steps.adopts = True
    ann = announcement(BOB, "r", (pk(ALICE),))

    assert await holding.accept(ann, None, "client") == ""

    assert repos.exists(pk(BOB), "r")
    assert steps.named("adopt") == [ann.id]
    assert steps.named("release_entries") == [([ann.id], lifecycle.STATE_ADOPTED)]
    assert ann.id in store.served and steps.named("enqueue") == []


async def test_an_announcement_without_a_served_state_waits(tmp_path: Path) -> None:
    holding, store, repos, _metrics, steps, _clock = build(tmp_path)
    ann = announcement(BOB, "r")

    assert await holding.accept(ann, None, "client") == PURGATORY_MESSAGE

    assert repos.exists(pk(BOB), "r") and ann.id in store.entries
    assert steps.named("release_entries") == [] and steps.named("enqueue") == [("r", 1.0)]


async def test_a_pr_first_lets_its_early_pushed_ref_stop_waiting_then_is_held(tmp_path: Path) -> None:
    holding, store, _repos, _metrics, steps, _clock = build(tmp_path)
    p = pr(BOB, pk(ALICE), "r", OID[2])

    assert await holding.accept(p, "r", "client") == PURGATORY_MESSAGE

    assert [c for c, _ in steps.calls][:2] == ["pr_event_arrived", "on_git_data"]
    assert store.calls == [f"hold {p.id[:8]}"]
    assert store.entries[p.id].identifier == "r"


async def test_without_a_sync_service_nothing_is_enqueued(tmp_path: Path) -> None:
    holding, _store, _repos, _metrics, steps, _clock = build(tmp_path, sync=False)

    assert await holding.accept(state(ALICE, "r", {"refs/heads/main": OID[1]}), None, "client") == PURGATORY_MESSAGE
    assert steps.named("enqueue") == []


async def test_expiry_discards_what_is_due_removes_empty_unserved_repos_and_drops_quarantines(
        tmp_path: Path) -> None:
    holding, store, repos, metrics, steps, clock = build(tmp_path)
    old_ann, old_state = announcement(BOB, "gone"), state(BOB, "gone", {"refs/heads/main": OID[1]})
    waiting = state(ALICE, "kept", {"refs/heads/main": OID[2]})
    for event in (old_ann, old_state):
        await holding.accept(event, None, "client")
    clock[0] += EXPIRY_S / 2
    await holding.accept(waiting, None, "client")
    clock[0] += EXPIRY_S / 2 + 1
    steps.calls.clear()
    metrics.purgatory.clear()

    assert await holding.expire_due() == 2

    assert set(store.entries) == {waiting.id} and {old_ann.id, old_state.id} <= set(store.expired)
    assert sorted(metrics.purgatory) == [(nip34.ANNOUNCEMENT, "expired"), (nip34.STATE, "expired")]
    assert not repos.exists(pk(BOB), "gone")  # the expired announcement's empty repo
    assert steps.calls[0] == ("expire_placeholders", None)  # PR-ref placeholders first
    assert steps.named("drop_quarantine") == ["gone"]  # "kept" still has a held event


async def test_an_expiring_pr_takes_its_early_pushed_ref_with_it(tmp_path: Path) -> None:
    holding, _store, _repos, _metrics, steps, clock = build(tmp_path)
    proposal = pr(CAROL, pk(ALICE), "r", OID[1])
    await holding.accept(proposal, "r", "client")
    clock[0] += EXPIRY_S + 1

    assert await holding.expire_due() == 1

    assert steps.named("pr_event_expired") == [proposal.id]


async def test_expiry_keeps_a_repo_that_is_served_or_has_refs(tmp_path: Path) -> None:
    holding, store, repos, _metrics, _steps, clock = build(tmp_path)
    served_ann = announcement(BOB, "served", t=1)
    store.served[served_ann.id] = served_ann
    await holding.accept(announcement(BOB, "served", t=2), None, "client")  # an update, held
    await holding.accept(announcement(ALICE, "pushed"), None, "client")
    repos.add(pk(ALICE), "pushed", OID[1], refs={"refs/heads/main": OID[1]})
    clock[0] += EXPIRY_S + 1

    assert await holding.expire_due() == 2

    assert repos.exists(pk(BOB), "served") and repos.exists(pk(ALICE), "pushed")
    assert repos.log == []


async def test_expiries_are_forgotten_after_the_memory(tmp_path: Path) -> None:
    holding, store, _repos, _metrics, _steps, clock = build(tmp_path)
    s = state(ALICE, "r", {"refs/heads/main": OID[1]})
    await holding.accept(s, None, "client")
    clock[0] += EXPIRY_S + 1
    await holding.expire_due()
    assert await holding.accept(s, None, "client") is None  # remembered: not held again

    clock[0] += MEMORY_S + 1
    assert await holding.expire_due() == 0

    assert store.expired == {}
    assert await holding.accept(s, None, "client") == PURGATORY_MESSAGE  # forgotten: held afresh


async def test_nothing_due_is_nothing_done(tmp_path: Path) -> None:
    holding, store, _repos, metrics, steps, _clock = build(tmp_path)
    await holding.accept(state(ALICE, "r", {"refs/heads/main": OID[1]}), None, "client")
    steps.calls.clear()

    assert await holding.expire_due() == 0
    assert len(store.entries) == 1 and steps.calls == [("expire_placeholders", None)]
    assert metrics.purgatory == [(nip34.STATE, "held")]


async def test_start_clears_pending_areas_a_crash_left_empty_and_stop_ends_the_sweeper(tmp_path: Path) -> None:
    holding, _store, repos, _metrics, _steps, _clock = build(tmp_path)
    holding.start()
    sweeper = holding._sweeper
    await holding.stop()

    assert repos.log == ["remove_empty_pending"]
    assert sweeper is not None and sweeper.cancelled()
