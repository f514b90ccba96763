"""NIP-77 in the relay without sockets: the session's parsing of NEG-* frames (hostile ones
included), the per-connection sessions and their limits, and the store read that feeds them
(served events only, never held ones; capped; the filter's own limit)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from relay.nostr.negentropy import NegentropyBudget, NegLimits, NegSessions
from relay.nostr.nip11 import relay_information
from relay.nostr.protocol import Limits, NegClose, NegMsg, NegOpen, Reply, Session
from storage.nostr.event import Event
from storage.nostr.filters import Filter
from storage.nostr.negentropy import Initiator, Items
from storage.sqlite.events import EventStore

EMPTY_V1 = "6100000200"  # the whole universe as an empty IdList: what an empty initiator sends


def frame(request: object) -> list[object]:
    assert isinstance(request, Reply), request
    return json.loads(request.text)


def test_session_parses_neg_frames() -> None:
    session = Session()
    opened = session.receive(json.dumps(["NEG-OPEN", "s", {"kinds": [1], "limit": 10**9}, EMPTY_V1]))
    assert isinstance(opened, NegOpen) and opened.message == bytes.fromhex(EMPTY_V1)
    assert opened.filter == Filter.from_dict({"kinds": [1], "limit": 5000})  # max_limit applies
    assert session.receive(json.dumps(["NEG-MSG", "s", "61AB"])) == NegMsg("s", b"\x61\xab")
    assert session.receive(json.dumps(["NEG-CLOSE", "s"])) == NegClose("s")


@pytest.mark.parametrize("message, kind, reason", [
    (["NEG-OPEN", "s", {"kinds": [1]}, "6"], "NEG-ERR", "invalid: the negentropy message must be a hex"),
    (["NEG-OPEN", "s", {"kinds": [1]}, "61 0"], "NEG-ERR", "invalid: the negentropy message is not hex"),
    (["NEG-OPEN", "s", {"kinds": [1]}, "zz"], "NEG-ERR", "invalid: the negentropy message is not hex"),
    (["NEG-OPEN", "s", {"kinds": [1]}, 61], "NEG-ERR", "invalid: the negentropy message must be a hex"),
    (["NEG-OPEN", "s", {"kinds": [1]}, ""], "NEG-ERR", "invalid: the negentropy message is empty"),
    (["NEG-OPEN", "s", {"kinds": "x"}, EMPTY_V1], "NEG-ERR", "invalid:"),
    (["NEG-OPEN", "s", {"nope": 1}, EMPTY_V1], "NEG-ERR", "invalid:"),
    (["NEG-OPEN", "s", [], EMPTY_V1], "NEG-ERR", "invalid:"),
    (["NEG-OPEN", "s", {}], "NOTICE", "invalid: NEG-OPEN takes"),
    (["NEG-OPEN", "s", {}, EMPTY_V1, "extra"], "NOTICE", "invalid: NEG-OPEN takes"),
    (["NEG-OPEN", "", {}, EMPTY_V1], "NOTICE", "invalid: subscription id"),
    (["NEG-OPEN", "x" * 300, {}, EMPTY_V1], "NOTICE", "invalid: subscription id"),
    (["NEG-MSG", 5, "61"], "NOTICE", "invalid: NEG-MSG takes"),
    (["NEG-MSG", "s"], "NOTICE", "invalid: NEG-MSG takes"),
    (["NEG-CLOSE"], "NOTICE", "invalid: NEG-CLOSE takes"),
])
def test_malformed_neg_frames_get_an_answer(message: list[object], kind: str, reason: str) -> None:
    got = frame(Session().receive(json.dumps(message)))
    assert got[0] == kind and got[-1].startswith(reason), got


def test_another_protocol_version_gets_the_version_byte_alone() -> None:
    assert frame(Session().receive(json.dumps(["NEG-OPEN", "s", {}, "62aabb"]))) == ["NEG-MSG", "s", "61"]


def test_disabled_negentropy_is_an_unsupported_message() -> None:
    session = Session(limits=Limits(negentropy_enabled=False))
    assert frame(session.receive(json.dumps(["NEG-OPEN", "s", {}, EMPTY_V1])))[1].startswith(
        "invalid: unsupported message type")
    doc = relay_information(Settings(negentropy_enabled=False))
    assert 77 not in doc["supported_nips"] and "negentropy_max_records" not in doc["limitation"]
    doc = relay_information(Settings())
    assert 77 in doc["supported_nips"] and doc["limitation"]["negentropy_frame_max_bytes"] == 64 * 1024


def items(count: int, start: int = 0) -> Items:
    return Items.from_pairs((1000 + i, hashlib.sha256(b"%d" % i).digest()) for i in range(start, start + count))


def sessions(budget: NegentropyBudget | None = None, **changes: object) -> NegSessions:
    base = dict(max_sessions=2, max_records=100, total_max_records=150, frame_max_bytes=4096, idle_s=60.0,
                query_budget_s=1.0)
    base.update(changes)
    return NegSessions(NegLimits(**base), budget or NegentropyBudget())  # type: ignore[arg-type]


def test_sessions_reconcile_and_release_their_items() -> None:
    budget = NegentropyBudget()
    table = sessions(budget)
    client = Initiator(items(30, start=5), 4096)
    reply = json.loads(table.start("a", items(40), client.initiate(), now=0.0))
    assert reply[:2] == ["NEG-MSG", "a"] and budget.used == 40
    step = client.reconcile(bytes.fromhex(reply[2]))
    assert step.message is None and len(step.need) == 10 and len(step.have) == 0  # 0-4 and 35-39
    table.close("a")
    assert budget.used == 0 and not table.open


def test_session_limits() -> None:
    budget = NegentropyBudget()
    table = sessions(budget)
    first = Initiator(items(0), 4096).initiate()
    assert json.loads(table.start("a", None, first, 0.0))[2].startswith("blocked: too many records")
    assert json.loads(table.start("a", items(100), first, 0.0))[0] == "NEG-MSG"
    assert json.loads(table.start("b", items(60), first, 0.0))[2].startswith("blocked: the relay is reconciling")
    assert json.loads(table.start("b", items(50), first, 0.0))[0] == "NEG-MSG"
    refusal = table.refusal("c")
    assert refusal is not None and json.loads(refusal)[2].startswith("blocked: too many negentropy sessions")
    assert table.refusal("a") is None  # the same id replaces: the old session is closed first
    assert budget.used == 50 and set(table.open) == {"b"}
    # another connection's table shares the budget
    other = sessions(budget)
    assert json.loads(other.start("x", items(101), first, 0.0))[2].startswith("blocked: the relay is reconciling")
    table.close_all()
    assert budget.used == 0


def test_bad_messages_close_the_session_and_unknown_ids_are_closed() -> None:
    budget = NegentropyBudget()
    table = sessions(budget)
    assert json.loads(table.start("a", items(10), bytes.fromhex("61ff"), 0.0))[2].startswith("invalid: ")
    assert budget.used == 0 and not table.open
    assert json.loads(table.message("a", bytes.fromhex(EMPTY_V1), 0.0)) == [
        "NEG-ERR", "a", "closed: no negentropy session is open with this id"]


def test_idle_sessions_expire() -> None:
    budget = NegentropyBudget()
    table = sessions(budget, idle_s=10.0)
    first = bytes.fromhex(EMPTY_V1)
    table.start("a", items(5), first, now=0.0)
    table.start("b", items(5), first, now=5.0)
    assert table.next_expiry() == 10.0 and table.expire(9.9) == []
    table.message("a", first, now=8.0)  # activity keeps a session
    assert table.next_expiry() == 15.0
    assert [json.loads(f)[1:] for f in table.expire(15.0)] == [["b", "closed: no NEG-MSG for 10 seconds"]]
    assert set(table.open) == {"a"} and budget.used == 5


def test_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="GRASP_NEGENTROPY_MAX_RECORDS"):
        load_settings({}, negentropy_max_records=10, negentropy_total_max_records=5)
    with pytest.raises(SettingsError, match="GRASP_NEGENTROPY_FRAME_MAX_BYTES"):
        load_settings({}, negentropy_frame_max_bytes="1KiB")
    assert load_settings({}, negentropy_frame_max_bytes="128KiB").negentropy_frame_max_bytes == 128 * 1024


def fake(i: int, kind: int = 1621, created_at: int | None = None) -> Event:
    event_id = hashlib.sha256(f"neg{i}".encode()).hexdigest()
    return Event(event_id, "ab" * 32, created_at or 1000 + i, kind, (), "", "0" * 128)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    s = await EventStore.open(tmp_path / "events.sqlite3", Settings(data_dir=tmp_path))
    yield s
    await s.close()


async def test_store_items_are_served_events_only(store: EventStore) -> None:
    served = [fake(i, created_at=500 + i // 2) for i in range(20)]  # pairs share a timestamp
    for event in served:
        assert (await store.save(event)).status == "saved"
    assert await store.hold(fake(99), "repo", 10**12, "client")
    got = await store.negentropy_items([Filter.from_dict({"kinds": [1621]})], 100)
    assert got is not None
    assert got.ids == Items.from_pairs((e.created_at, e.id) for e in served).ids  # sorted, no held one
    assert await store.negentropy_items([Filter.from_dict({"kinds": [1621]})], 19) is None
    newest = await store.negentropy_items([Filter.from_dict({"kinds": [1621], "limit": 4})], 100)
    assert newest is not None and sorted(newest.timestamps) == [508, 508, 509, 509]
    for nothing in ({"kinds": [1]}, {"ids": []}, {"kinds": [1621], "limit": 0}):
        found = await store.negentropy_items([Filter.from_dict(nothing)], 100)
        assert found is not None and len(found) == 0
