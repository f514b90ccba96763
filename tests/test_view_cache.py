"""The id-indexed cache behind the store view: reads are forgotten by the ids they hold."""

from __future__ import annotations

from storage.sqlite.view_cache import IdIndexedCache


def test_forget_by_id_drops_every_read_holding_it() -> None:
    cache: IdIndexedCache[str, str] = IdIndexedCache(10)
    cache.put("a", ("x", "y"), ["x", "y"])
    cache.put("b", ("y",), ["y"])
    cache.put("c", ("z",), ["z"])
    cache.forget_ids(["y"])
    assert cache.get("a") is None and cache.get("b") is None and cache.get("c") == ("z",)
    cache.forget_ids(["y", "unknown"])  # nothing left to forget: no error
    assert len(cache) == 1


def test_empty_read_is_cached_and_forgotten_by_key() -> None:
    cache: IdIndexedCache[str, str] = IdIndexedCache(10)
    cache.put("a", (), [])
    assert cache.get("a") == ()
    cache.forget("a")
    assert cache.get("a") is None


def test_bounded_oldest_first_and_replacing_a_key_reindexes() -> None:
    cache: IdIndexedCache[int, str] = IdIndexedCache(2)
    cache.put(1, ("p",), ["p"])
    cache.put(2, ("q",), ["q"])
    cache.put(3, ("r",), ["r"])
    assert cache.get(1) is None and len(cache) == 2
    cache.put(2, ("s",), ["s"])  # the old ids of key 2 no longer point at it
    cache.forget_ids(["q"])
    assert cache.get(2) == ("s",)
    cache.forget_ids(["s"])
    assert cache.get(2) is None and cache.get(3) == ("r",)


def test_zero_entries_caches_nothing() -> None:
    cache: IdIndexedCache[str, str] = IdIndexedCache(0)
    cache.put("a", ("x",), ["x"])
    assert cache.get("a") is None and len(cache) == 0
