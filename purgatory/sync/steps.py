"""The purgatory sync steps: fetch the git data that waiting events need.

Two independent paths share the same two steps, as in the seed design:

- the main loop runs `sync_identifier` for each due identifier: it tries every untried URL of a
  domain that is not throttled right now, then hands the identifier to the waiting queue of each
  throttled domain that still has untried URLs for it, and returns (done, or back off);
- one loop per domain with waiting identifiers serves them round-robin whenever the domain has
  capacity again.

The loops themselves are in `loops.py`. Both use `next_url` (selection) and a fetch that holds
one throttle slot per fetch session the upstream sees (a refused multi-object fetch is asked
again object by object, each in its own slot); all I/O is behind `SyncContext`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from config.settings import Settings
from purgatory.sync.context import FetchOutcome, SyncContext, SyncStats
from purgatory.sync.throttle import ThrottleManager, domain_of, is_own_origin

log = structlog.get_logger(__name__)

#: the caller's deadline on a fetch is the context's own (the same setting) plus this, so a
#: context that keeps its contract ends the fetch itself, and records how it ended (a timeout
#: counted in the fetch metrics); this deadline only catches one that does not
CONTEXT_DEADLINE_GRACE_S = 1.0

IsThrottled = Callable[[str], bool]


# --- pure selection -------------------------------------------------------------------------


def _candidates(urls: Iterable[str], own_domain: str) -> list[tuple[str, str]]:
    """(url, domain) pairs in input order, without duplicates, unusable URLs or our origin."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for url in urls:
        domain = domain_of(url)
        if url in seen or domain is None or is_own_origin(url, own_domain):
            continue
        seen.add(url)
        out.append((url, domain))
    return out


def select_url(
    urls: Iterable[str],
    domain: str | None,
    tried: set[str],
    is_throttled: IsThrottled,
    own_domain: str,
) -> str | None:
    """`domain=None`: the first untried URL of a domain not throttled now; `domain=X`: the first
    untried URL of X (its own loop only asks when X has capacity)."""
    for url, url_domain in _candidates(urls, own_domain):
        if url in tried:
            continue
        if domain is None and not is_throttled(url_domain):
            return url
        if domain is not None and url_domain == domain:
            return url
    return None


def domains_with_untried(urls: Iterable[str], tried: set[str], own_domain: str) -> dict[str, set[str]]:
    """Domains that still have an untried URL, each with the URLs of that domain already
    tried, so its waiting queue does not repeat them."""
    by_domain: dict[str, list[str]] = {}
    for url, url_domain in _candidates(urls, own_domain):
        by_domain.setdefault(url_domain, []).append(url)
    return {
        d: {u for u in d_urls if u in tried}
        for d, d_urls in by_domain.items()
        if any(u not in tried for u in d_urls)
    }


# --- shared runtime and the two steps ---------------------------------------------------------


@dataclass
class SyncRuntime:
    """What both paths share: the context, the throttles, limits and counters."""

    settings: Settings
    ctx: SyncContext
    throttles: ThrottleManager
    stats: SyncStats = field(default_factory=SyncStats)
    _locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    def is_throttled(self) -> IsThrottled:
        now = self.ctx.now()
        return lambda domain: self.throttles.is_throttled(domain, now)

    async def process(self, identifier: str) -> None:
        """Run process_new_data one at a time per identifier: both paths may finish fetches
        for the same repository at once."""
        lock, users = self._locks.get(identifier, (asyncio.Lock(), 0))
        self._locks[identifier] = (lock, users + 1)
        try:
            async with lock:
                await self.ctx.process_new_data(identifier)
        except Exception:
            log.exception("sync.process_failed", identifier=identifier)
        finally:
            lock, users = self._locks[identifier]
            if users <= 1:
                del self._locks[identifier]
            else:
                self._locks[identifier] = (lock, users - 1)


async def candidate(
    rt: SyncRuntime, identifier: str, domain: str | None, tried: set[str]
) -> tuple[str, frozenset[str]] | None:
    if not await rt.ctx.has_pending(identifier):
        return None
    oids = await rt.ctx.needed_oids(identifier)
    if not oids:
        return None
    urls = await rt.ctx.clone_urls(identifier)
    throttled = rt.is_throttled()
    if domain is None:
        # a domain whose queue holds this identifier serves it from there: the main path
        # fetching it too would spend a second slot of that domain's window on the same data
        held_by_domain = rt.throttles.holds
        url = select_url(urls, None, tried, lambda d: throttled(d) or held_by_domain(d, identifier),
                         rt.settings.domain)
    else:
        url = select_url(urls, domain, tried, throttled, rt.settings.domain)
    return None if url is None else (url, frozenset(oids))


async def next_url(
    rt: SyncRuntime, identifier: str, domain: str | None, tried: set[str]
) -> str | None:
    """The next URL to try, or None: nothing pending, nothing needed, or no untried URL left
    (of a non-throttled domain for `domain=None`, of that domain otherwise)."""
    found = await candidate(rt, identifier, domain, tried)
    return None if found is None else found[0]


def split_after_refusal(oids: frozenset[str], outcome: FetchOutcome) -> list[frozenset[str]]:
    """The one-object fetches to try after `outcome`, in a stable order; empty when none.

    A server that lacks one wanted object refuses the whole fetch ("not our ref"), so when a
    multi-object fetch is refused, each object is asked for alone: data spread over several
    servers is then gathered piece by piece. Each of these is a fetch session the server sees,
    so each takes a throttle slot of its own (`fetch_holding_slot`)."""
    if outcome.kind != "not-our-ref" or len(oids) < 2:
        return []
    return [frozenset({oid}) for oid in sorted(oids)]


async def _fetch_in_slot(
    rt: SyncRuntime, identifier: str, url: str, domain: str, oids: frozenset[str]
) -> FetchOutcome:
    """One fetch session with a slot already taken; the slot is freed however the fetch ends,
    and a network-level failure cools the domain off before anyone may use the slot again."""
    started = rt.ctx.now()
    try:
        try:
            async with asyncio.timeout(rt.settings.fetch_timeout_s + CONTEXT_DEADLINE_GRACE_S):
                outcome = await rt.ctx.fetch(identifier, url, oids)
        except TimeoutError:
            limit = rt.settings.fetch_timeout_s
            outcome = FetchOutcome.failure("timeout", f"no answer in {limit}s")
        except Exception as exc:  # a context that breaks its contract must not kill a loop
            outcome = FetchOutcome.failure("error", repr(exc))
        if outcome.network_failure:
            rt.throttles.cool_off(domain, rt.ctx.now() + rt.settings.fetch_cooloff_s)
    finally:
        rt.throttles.release(domain, rt.ctx.now())
    rt.stats.fetch_outcomes[outcome.kind] += 1  # per-domain metrics: the context records them
    log.debug("sync.fetched", identifier=identifier, url=url, kind=outcome.kind, oids=len(oids),
              seconds=round(rt.ctx.now() - started, 3), detail=outcome.detail)
    return outcome


async def _fetch_each(
    rt: SyncRuntime, identifier: str, url: str, domain: str, parts: list[frozenset[str]],
    holding: bool,
) -> FetchOutcome:
    """The one-object fetches, each in its own slot (`holding`: the first may use the slot the
    caller took). When the domain has no slot left, the rest are kept in its throttle, so
    the URL is not tried yet and the domain resumes them when a slot frees."""
    got: FetchOutcome | None = None
    failure: FetchOutcome | None = None
    for n, part in enumerate(parts):
        if not part & await rt.ctx.needed_oids(identifier):
            continue  # came with an earlier one (a tag brings its commit) or with a push
        if not holding and not rt.throttles.try_acquire(domain, rt.ctx.now()):
            rt.throttles.keep_split(domain, identifier, url, parts[n:])
            rt.stats.splits_cut += 1
            log.debug("sync.split_cut", identifier=identifier, url=url, left=len(parts) - n)
            break
        holding = False
        one = await _fetch_in_slot(rt, identifier, url, domain, part)
        if one.ok:
            got = one
        elif one.network_failure:  # the domain cools off: the rest can wait
            failure = one
            break
    if holding:  # nothing left to ask for: free the caller's slot unused
        rt.throttles.release(domain)
    return failure or got or FetchOutcome.failure("not-our-ref", f"none of the objects at {url}")


async def fetch_holding_slot(
    rt: SyncRuntime, identifier: str, url: str, domain: str, oids: frozenset[str]
) -> FetchOutcome:
    """Fetch with a slot already taken; if the server refuses because it lacks some of the
    objects, ask for them one by one, each in a slot of its own (resuming the ones a full
    domain left over, without asking for everything again). The new data is processed after
    the slots are freed, so slow processing never holds a slot."""
    parts = rt.throttles.take_split(domain, identifier, url)
    if parts is None:
        outcome = await _fetch_in_slot(rt, identifier, url, domain, oids)
        parts = split_after_refusal(oids, outcome)
        if parts:
            outcome = await _fetch_each(rt, identifier, url, domain, parts, holding=False)
    else:
        outcome = await _fetch_each(rt, identifier, url, domain, parts, holding=True)
    if outcome.ok and await rt.ctx.needed_oids(identifier) != oids:
        await rt.process(identifier)  # only when the fetch brought something (as the seed)
    return outcome


async def from_url(rt: SyncRuntime, identifier: str, url: str) -> FetchOutcome | None:
    """Take a slot, fetch what is still missing, release, then process the new data. None when
    nothing was fetched: nothing is needed any more, or the domain became throttled."""
    domain = domain_of(url)
    if domain is None:
        return None
    oids = await rt.ctx.needed_oids(identifier)
    if not oids or not rt.throttles.try_acquire(domain, rt.ctx.now()):
        return None
    return await fetch_holding_slot(rt, identifier, url, domain, frozenset(oids))


async def _finished(rt: SyncRuntime, identifier: str) -> bool:
    if not await rt.ctx.has_pending(identifier):
        return True
    if not await rt.ctx.needed_oids(identifier):
        await rt.process(identifier)
        return True
    return False


async def sync_identifier(rt: SyncRuntime, identifier: str) -> bool:
    """One attempt of the main path; True when nothing is left to fetch for the identifier."""
    tried: set[str] = set()
    skipped: set[str] = set()  # lost a slot race or cut short: not tried, so handed to the domain
    while (url := await next_url(rt, identifier, None, tried | skipped)) is not None:
        outcome = await from_url(rt, identifier, url)
        if outcome is None:
            skipped.add(url)
            continue
        if rt.throttles.has_split(domain_of(url) or "", identifier, url):
            skipped.add(url)  # one-object fetches left over: its domain's queue resumes them
        else:
            tried.add(url)
        if await _finished(rt, identifier):
            return True
    if await _finished(rt, identifier):
        return True
    # Every URL still untried belongs to a domain that was throttled (or lost a slot race)
    # when next_url looked; hand all of them over, even if a slot has freed since: judging
    # "throttled" again now would strand the identifier until its backoff.
    urls = await rt.ctx.clone_urls(identifier)
    handoff = domains_with_untried(urls, tried, rt.settings.domain)
    for domain, tried_here in handoff.items():
        rt.throttles.enqueue_identifier(domain, identifier, tried_here, rt.ctx.now())
        rt.stats.handed_to_domains += 1
    if handoff:
        log.debug("sync.handed_to_domains", identifier=identifier, domains=sorted(handoff))
    return False
