"""NIP-01 filters to SQL (parameters only, never values in the text).

One statement per REQ: each filter is an arm with its own ORDER BY/LIMIT, the arms are
UNIONed on `seq` (which deduplicates), and the union is joined back to `events` for the raw
JSON and sorted newest first, ties by lowest id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from storage.filters import Filter

# Above this many values an IN list becomes `IN (SELECT value FROM json_each(?))`, one
# parameter, so a filter with thousands of authors cannot exceed SQLite's variable limit.
MAX_INLINE_VALUES = 64
# A filter is split into at most this many index-ordered arms (see _expand).
MAX_EXPANDED_ARMS = 32
KEYS = "e.seq, e.created_at, e.id"
ORDER = "ORDER BY e.created_at DESC, e.id"


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


def _arm(flt: Filter, columns: str, limit: int | None) -> tuple[str, list[object]]:
    """SELECT `columns` of the events matching one filter, newest first, at most `limit`."""
    sql = _Sql()
    tags = list(flt.tags)
    source = "events e"
    # Drive a `#x` query from the tag index (walks (name, value, created_at) in order and
    # stops at the limit) unless ids are given, which are better still.
    if tags and flt.ids is None and len(tags[0][1]) == 1:
        name, values = tags.pop(0)
        source = "tags t CROSS JOIN events e ON e.seq = t.event_seq"
        sql.add("t.name = ?", name)
        sql.add_in("t.value", values)
        if flt.since is not None:
            sql.add("t.created_at >= ?", flt.since)
        if flt.until is not None:
            sql.add("t.created_at <= ?", flt.until)
        order = "ORDER BY t.created_at DESC, e.id"
    else:
        order = ORDER
    if flt.ids is not None:
        sql.add_in("e.id", flt.ids)
    if flt.authors is not None:
        sql.add_in("e.pubkey", flt.authors)
    if flt.kinds is not None:
        sql.add_in("e.kind", flt.kinds)
    if flt.since is not None:
        sql.add("e.created_at >= ?", flt.since)
    if flt.until is not None:
        sql.add("e.created_at <= ?", flt.until)
    for name, values in tags:
        inner: list[object] = [name]
        clause = in_clause("x.value", values, inner)
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


def _expand(flt: Filter) -> list[Filter]:
    """Split a filter whose driving index columns have several values into one filter per
    value combination. SQLite cannot merge several index ranges in created_at order, so
    `authors:[a,b,c], kinds:[1,7], limit:500` would sort every matching row; as six arms
    each walks its own (pubkey, kind, created_at) range and stops at the limit."""
    if flt.ids is not None:
        return [flt]
    if flt.tags:
        (name, values), rest = flt.tags[0], flt.tags[1:]
        if 1 < len(values) <= MAX_EXPANDED_ARMS:
            return [replace(flt, tags=((name, frozenset([v])), *rest)) for v in sorted(values)]
        return [flt]
    if flt.kinds is None or len(flt.kinds) * len(flt.authors or (None,)) > MAX_EXPANDED_ARMS:
        return [flt]
    kinds = [frozenset([k]) for k in sorted(flt.kinds)]
    if flt.authors is None:
        return [replace(flt, kinds=k) for k in kinds] if len(kinds) > 1 else [flt]
    authors = [frozenset([a]) for a in sorted(flt.authors)]
    parts = [replace(flt, authors=a, kinds=k) for a in authors for k in kinds]
    return parts if len(parts) > 1 else [flt]


def _filter_keys(flt: Filter, limit: int) -> tuple[str, list[object]]:
    """(seq, created_at, id) of the newest `limit` events matching one filter."""
    parts = _expand(flt)
    if len(parts) == 1:
        return _arm(flt, KEYS, limit)
    arms: list[str] = []
    params: list[object] = []
    for part in parts:
        text, arm_params = _arm(part, KEYS, limit)
        arms.append(f"SELECT * FROM ({text})")
        params += arm_params
    params.append(limit)
    return f"SELECT * FROM ({' UNION '.join(arms)}) ORDER BY created_at DESC, id LIMIT ?", params


def select_raw(filters: list[Filter], default_limit: int) -> tuple[str, list[object]] | None:
    """SQL returning (raw,) rows for the union of `filters`; None when nothing can match."""
    live = [f for f in filters if not f.is_empty_result]
    if not live:
        return None
    limits = [f.limit if f.limit is not None else default_limit for f in live]
    if len(live) == 1 and len(_expand(live[0])) == 1:
        return _arm(live[0], "e.raw", limits[0])
    arms: list[str] = []
    params: list[object] = []
    for flt, limit in zip(live, limits, strict=True):
        text, arm_params = _filter_keys(flt, limit)
        arms.append(f"SELECT * FROM ({text})")
        params += arm_params
    union = " UNION ".join(arms)
    return (
        f"SELECT ev.raw FROM ({union}) u JOIN events ev ON ev.seq = u.seq "
        "ORDER BY u.created_at DESC, u.id",
        params,
    )


def select_count(filters: list[Filter]) -> tuple[str, list[object]] | None:
    """SQL returning one row: the number of distinct events matching any filter (NIP-45
    counts ignore `limit`)."""
    live = [f for f in filters if not _empty_ignoring_limit(f)]
    if not live:
        return None
    arms: list[str] = []
    params: list[object] = []
    for flt in live:
        text, arm_params = _arm(flt, "e.seq", None)
        arms.append(text)
        params += arm_params
    if len(arms) == 1:
        return f"SELECT count(*) FROM ({arms[0]})", params
    return f"SELECT count(*) FROM ({' UNION '.join(arms)})", params


def _empty_ignoring_limit(flt: Filter) -> bool:
    return replace(flt, limit=None).is_empty_result
