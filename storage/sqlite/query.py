"""NIP-01 filters to SQL (parameters only, never values in the text).

One statement per REQ: each filter is an arm with its own ORDER BY/LIMIT, the arms are
UNIONed on `seq` (which deduplicates), sorted newest first (ties by lowest id), and only
then is each row's raw JSON read, so the sort handles small keys, not whole events.

Every arm walks an index whose leading columns are equalities of the filter and whose last
column is created_at, so it stops at its limit (schema.py lists the indexes):

- `ids`: the id index;
- a tag (`#x`): (name, value, created_at), or with `kinds` (name, value, kind, created_at),
  one arm per value and kind;
- `authors`: (pubkey, kind, created_at), one arm per author and kind; without `kinds`, the
  kinds each author has are read first by a few index seeks (`author_kinds`), so a prolific
  author's newest 50 are not found by sorting all their events;
- `kinds`: (kind, created_at); nothing: created_at.

When a filter could be driven from more than one side (a tag and authors, or several tags),
each candidate is probed by counting at most PROBE_ROWS of its index entries, and the
smallest drives: `#t bug` (600k rows) with one author walks that author's events, `#e <id>`
with a prolific author walks the replies. What remains (two large sides with a small
intersection) is bounded by the query budget (storage/sqlite/events.py), not by an index."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from storage.nostr.filters import Filter

# Above this many values an IN list becomes `IN (SELECT value FROM json_each(?))`, one
# parameter, so a filter with thousands of authors cannot exceed SQLite's variable limit.
MAX_INLINE_VALUES = 64
# A filter is split into at most this many index-ordered arms (see _expand).
MAX_EXPANDED_ARMS = 32
# How many index entries a probe counts before calling a side "large".
PROBE_ROWS = 1000
KEYS = "e.seq, e.created_at, e.id"
ORDER = "ORDER BY e.created_at DESC, e.id"

#: Runs one read statement on the store and returns its rows (a reader connection's
#: execute().fetchall()); the planner's probes go through it. None: plan without probing.
Run = Callable[[str, list[object]], Sequence[tuple[object, ...]]]
Drive = Literal["ids", "tag", "authors", "plain"]


@dataclass(slots=True)
class _Sql:
    where: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def add_in(self, column: str, values: frozenset[str] | frozenset[int]) -> None:
        self.where.append(in_clause(column, values, self.params))

    def add(self, clause: str, *params: object) -> None:
        self.where.append(clause)
        self.params.extend(params)


def in_clause(column: str, values: frozenset[str] | frozenset[int], params: list[object]) -> str:
    ordered = sorted(values)  # stable SQL text and parameters for the same filter
    if len(ordered) == 1:
        params.append(ordered[0])
        return f"{column} = ?"
    if len(ordered) > MAX_INLINE_VALUES:
        params.append(json.dumps(ordered))
        return f"{column} IN (SELECT value FROM json_each(?))"
    params.extend(ordered)
    return f"{column} IN ({','.join('?' * len(ordered))})"


@dataclass(frozen=True, slots=True)
class _Plan:
    """One filter, with the side it is walked from. For "tag", `flt.tags[0]` drives."""

    flt: Filter
    drive: Drive


# --- choosing the driving side -------------------------------------------------------------

def _plan(flt: Filter, run: Run | None) -> _Plan:
    if flt.ids is not None:
        return _Plan(flt, "ids")
    candidates: list[int | None] = list(range(len(flt.tags)))
    if flt.authors is not None:
        candidates.append(None)  # None: the authors
    if not candidates:
        return _Plan(flt, "plain")
    if len(candidates) > 1 and run is not None:
        sizes = [_probe(flt, c, run) for c in candidates]
        # ties (both sides large) go to the authors: what one key signs is bounded by the rate
        # limits, while a popular tag is not
        best = min(range(len(candidates)), key=lambda i: (sizes[i], candidates[i] is not None))
        choice = candidates[best]
    else:
        choice = candidates[0]
    if choice is None:
        return _Plan(flt, "authors")
    tags = list(flt.tags)
    tags.insert(0, tags.pop(choice))
    return _Plan(replace(flt, tags=tuple(tags)), "tag")


def _probe(flt: Filter, candidate: int | None, run: Run) -> int:
    """Index entries of one side, counted up to PROBE_ROWS (index-only, so at most that many
    steps): an estimate of how much walking from that side can cost."""
    sql = _Sql()
    if candidate is None:
        assert flt.authors is not None
        sql.add_in("pubkey", flt.authors)
        table = "events"
    else:
        name, values = flt.tags[candidate]
        sql.add("name = ?", name)
        sql.add_in("value", values)
        table = "tags"
    if flt.kinds is not None:
        sql.add_in("kind", flt.kinds)
    sql.params.append(PROBE_ROWS)
    text = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {' AND '.join(sql.where)} LIMIT ?)"
    return int(run(text, sql.params)[0][0])  # type: ignore[call-overload]


def author_kinds(authors: frozenset[str], run: Run, cap: int = MAX_EXPANDED_ARMS) -> list[tuple[str, int]] | None:
    """The (author, kind) pairs present, by seeking from kind to next kind in the
    (pubkey, kind, created_at) index: one seek per kind, not one step per event. None when
    there are more than `cap` pairs (the filter is then walked without splitting)."""
    pairs: list[tuple[str, int]] = []
    for author in sorted(authors):
        rows = run(
            "WITH RECURSIVE k(kind) AS ("
            " SELECT min(kind) FROM events WHERE pubkey = ?"
            " UNION ALL"
            " SELECT (SELECT min(kind) FROM events WHERE pubkey = ? AND kind > k.kind) FROM k"
            " WHERE k.kind IS NOT NULL LIMIT ?)"
            " SELECT kind FROM k WHERE kind IS NOT NULL",
            [author, author, cap + 1],
        )
        pairs += [(author, int(row[0])) for row in rows]  # type: ignore[call-overload]
        if len(pairs) > cap:
            return None
    return pairs


# --- one arm ------------------------------------------------------------------------------

def _kinds_and_times(sql: _Sql, alias: str, flt: Filter) -> None:
    """The filter's kinds, since and until on `alias`: `e` (events) or `t` (tags rows, which
    copy kind and created_at from their event so the tag index answers them alone)."""
    if flt.kinds is not None:
        sql.add_in(f"{alias}.kind", flt.kinds)
    if flt.since is not None:
        sql.add(f"{alias}.created_at >= ?", flt.since)
    if flt.until is not None:
        sql.add(f"{alias}.created_at <= ?", flt.until)


def _tag_drive(sql: _Sql, name: str, values: frozenset[str], flt: Filter) -> None:
    """The conditions of an arm driven by the tag index (`tags t`): the tag, then kinds and
    times on the same rows. The same for a query arm and a count arm."""
    sql.add("t.name = ?", name)
    sql.add_in("t.value", values)
    _kinds_and_times(sql, "t", flt)


def _arm(plan: _Plan, columns: str, limit: int | None) -> tuple[str, list[object]]:
    """SELECT `columns` of the events matching one filter, newest first, at most `limit`."""
    flt = plan.flt
    sql = _Sql()
    tags = list(flt.tags)
    source = "events e"
    order = ORDER
    if plan.drive == "tag":
        name, values = tags.pop(0)
        source = "tags t CROSS JOIN events e ON e.seq = t.event_seq"
        _tag_drive(sql, name, values, flt)
        order = "ORDER BY t.created_at DESC, e.id"
    else:
        _kinds_and_times(sql, "e", flt)
    if flt.ids is not None:
        sql.add_in("e.id", flt.ids)
    if flt.authors is not None:
        sql.add_in("e.pubkey", flt.authors)
    for tag_name, tag_values in tags:
        inner: list[object] = [tag_name]
        clause = in_clause("x.value", tag_values, inner)
        sql.add(
            f"EXISTS (SELECT 1 FROM tags x WHERE x.event_seq = e.seq AND x.name = ? AND {clause})",
            *inner,
        )
    text = f"SELECT {columns} FROM {source}"
    if sql.where:
        text += " WHERE " + " AND ".join(sql.where)
    if limit is not None:
        text += f" {order} LIMIT ?"
        sql.params.append(limit)
    return text, sql.params


def _expand(plan: _Plan, run: Run | None) -> list[_Plan]:
    """Split a filter whose driving index columns have several values into one arm per value
    combination. SQLite cannot merge several index ranges in created_at order, so
    `authors:[a,b,c], kinds:[1,7], limit:500` would sort every matching row; as six arms
    each walks its own (pubkey, kind, created_at) range and stops at the limit."""
    flt = plan.flt
    if plan.drive == "ids":
        return [plan]
    if plan.drive == "tag":
        (name, values), rest = flt.tags[0], flt.tags[1:]
        kinds = sorted(flt.kinds) if flt.kinds is not None else [None]
        if len(values) * len(kinds) <= MAX_EXPANDED_ARMS:
            combos = [(v, k) for v in sorted(values) for k in kinds]
        elif len(values) <= MAX_EXPANDED_ARMS:
            combos = [(v, None) for v in sorted(values)]
        else:
            return [plan]
        parts = [
            _Plan(replace(flt, tags=((name, frozenset([v])), *rest),
                          kinds=frozenset([k]) if k is not None else flt.kinds), "tag")
            for v, k in combos
        ]
        return parts if len(parts) > 1 else [plan]
    if plan.drive == "authors" and flt.kinds is None:
        assert flt.authors is not None
        pairs = author_kinds(flt.authors, run) if run is not None else None
        if pairs is None:
            return [plan]
        # no pairs: these authors have no events, and the filter needs no arm at all
        return [_Plan(replace(flt, authors=frozenset([a]), kinds=frozenset([k])), "authors") for a, k in pairs]
    if flt.kinds is None or len(flt.kinds) * len(flt.authors or (None,)) > MAX_EXPANDED_ARMS:
        return [plan]
    kinds_split = [frozenset([k]) for k in sorted(flt.kinds)]
    if flt.authors is None:
        return [_Plan(replace(flt, kinds=k), plan.drive) for k in kinds_split] if len(kinds_split) > 1 else [plan]
    authors = [frozenset([a]) for a in sorted(flt.authors)]
    parts = [_Plan(replace(flt, authors=a, kinds=k), plan.drive) for a in authors for k in kinds_split]
    return parts if len(parts) > 1 else [plan]


def _filter_keys(parts: list[_Plan], limit: int) -> tuple[str, list[object]]:
    """(seq, created_at, id) of the newest `limit` events matching one filter's arms."""
    if len(parts) == 1:
        return _arm(parts[0], KEYS, limit)
    arms: list[str] = []
    params: list[object] = []
    for part in parts:
        text, arm_params = _arm(part, KEYS, limit)
        arms.append(f"SELECT * FROM ({text})")
        params += arm_params
    params.append(limit)
    return f"SELECT * FROM ({' UNION '.join(arms)}) ORDER BY created_at DESC, id LIMIT ?", params


# --- statements ---------------------------------------------------------------------------

def select_raw(filters: list[Filter], default_limit: int, run: Run | None = None) -> tuple[str, list[object]] | None:
    """SQL returning (raw,) rows for the union of `filters`, newest first; None when nothing
    can match. `run` lets the planner probe the store (see the module docstring)."""
    live = [f for f in filters if not f.is_empty_result]
    if not live:
        return None
    limits = [f.limit if f.limit is not None else default_limit for f in live]
    expanded = [[p for p in _expand(_plan(f, run), run) if not p.flt.is_empty_result] for f in live]
    if not any(expanded):
        return None
    if len(live) == 1 and len(expanded[0]) == 1:
        return _arm(expanded[0][0], "e.raw", limits[0])
    arms: list[str] = []
    params: list[object] = []
    for parts, limit in zip(expanded, limits, strict=True):
        if not parts:
            continue
        text, arm_params = _filter_keys(parts, limit)
        arms.append(f"SELECT * FROM ({text})")
        params += arm_params
    union = " UNION ".join(arms)
    # sort the keys first, then read each row's raw text in that order: the sorter never
    # holds whole events
    text = ("SELECT (SELECT ev.raw FROM events ev WHERE ev.seq = u.seq) FROM "
            f"(SELECT seq, created_at, id FROM ({union}) ORDER BY created_at DESC, id) u")
    return text, params


def select_count(filters: list[Filter], run: Run | None = None) -> tuple[str, list[object]] | None:
    """SQL returning one row: the number of distinct events matching any filter (NIP-45
    counts ignore `limit`). A filter on one tag (with kinds, since, until) is counted from
    the tag index alone; the rest through their driving index, joined to the events."""
    live = [f for f in filters if not _empty_ignoring_limit(f)]
    if not live:
        return None
    arms: list[str] = []
    params: list[object] = []
    for flt in live:
        text, arm_params = _count_arm(_plan(replace(flt, limit=None), run))
        arms.append(text)
        params += arm_params
    if len(arms) == 1:
        return f"SELECT count(*) FROM ({arms[0]})", params
    return f"SELECT count(*) FROM ({' UNION '.join(arms)})", params


def _count_arm(plan: _Plan) -> tuple[str, list[object]]:
    flt = plan.flt
    if plan.drive != "tag" or len(flt.tags) > 1 or flt.authors is not None:
        return _arm(plan, "e.seq", None)
    name, values = flt.tags[0]
    sql = _Sql()
    _tag_drive(sql, name, values, flt)
    # one tags row per (event, name, value): DISTINCT only matters for several values
    distinct = "DISTINCT " if len(values) > 1 else ""
    return f"SELECT {distinct}t.event_seq FROM tags t WHERE {' AND '.join(sql.where)}", sql.params


def _empty_ignoring_limit(flt: Filter) -> bool:
    return replace(flt, limit=None).is_empty_result


def select_keys(filters: list[Filter], cap: int, run: Run | None = None) -> tuple[str, list[object]] | None:
    """SQL returning (created_at, id) rows of the events matching any filter, at most `cap`
    (NIP-77 reads these keys, never the events). A filter's own `limit` still applies
    (its newest that many); without one a filter is read up to `cap`."""
    arms: list[str] = []
    params: list[object] = []
    for flt in filters:
        if flt.is_empty_result:
            continue
        parts = [p for p in _expand(_plan(flt, run), run) if not p.flt.is_empty_result]
        if not parts:
            continue
        text, arm_params = _filter_keys(parts, cap if flt.limit is None else min(flt.limit, cap))
        arms.append(f"SELECT * FROM ({text})")
        params += arm_params
    if not arms:
        return None
    return f"SELECT created_at, id FROM ({' UNION '.join(arms)}) LIMIT ?", [*params, cap]
