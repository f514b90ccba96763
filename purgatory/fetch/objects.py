"""Fetch wanted objects by id from another clone URL into a quarantine repository.

The sync service needs exactly the objects named by waiting events, not "whatever the remote's
branches are", so we ask for OIDs directly (GRASP servers allow sha1-in-want). Objects land in a
bare quarantine repo that is never served; the purgatory copies them into served repos only once
their event is released.

libgit2 facts this module is built on (pygit2 1.21 / libgit2 1.9, checked by tests/test_fetch.py):

- A refspec may be a raw OID (`<oid>` or `+<oid>:refs/...`). libgit2 refuses it *client side*,
  with "cannot fetch a specific object from the remote repository", when the server does not
  advertise allow-tip-sha1-in-want / allow-reachable-sha1-in-want; then we fall back to fetching
  every advertised ref (still one URL, just more data).
- A want the server does not have makes upload-pack hang up; libgit2 reports only "could not read
  from remote repository" (the server's "not our ref" line is not surfaced), so that text is
  classified as `not-our-ref`.
- libgit2 has no per-call timeout. `pygit2.settings.server_connect_timeout` / `server_timeout`
  (milliseconds, process-wide) bound each connect and each socket read; a deadline checked in the
  progress callbacks bounds a server that keeps dripping data; `asyncio.wait_for` bounds the
  caller even while the worker thread is still blocked in a read (it ends within one more idle
  timeout).
- libgit2 follows HTTP redirects and resolves the clone URL's host itself, so it is pointed
  at a per-fetch forwarder on 127.0.0.1 (and given no proxy) that dials only the addresses
  the outbound check approved, does TLS for https, and refuses redirects
  (`purgatory/fetch/pinning/` says why it is built that way: libgit2's proxy support bypasses
  plain http and can hang on https). The quarantine's `http.followRedirects=false` adds
  libgit2's own refusal of off-host redirects.
- Only http and https clone URLs are fetched: libgit2 would read local paths, `file://`,
  `ssh://` and scp-like URLs as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pygit2
import structlog

from purgatory.fetch.outbound import GIT_SCHEMES, check_clone_url, scheme_refusal
from purgatory.fetch.pinning import Forwarder, Target
from purgatory.quarantine import init_quarantine
from purgatory.sync.context import FetchKind, FetchOutcome
from storage.nostr.nip34 import is_oid

log = structlog.get_logger(__name__)

# Object types a waiting event can point at (ref tips and annotated tags; trees for completeness).
_ACCEPTED_TYPES = frozenset({pygit2.enums.ObjectType.COMMIT, pygit2.enums.ObjectType.TAG, pygit2.enums.ObjectType.TREE})


_NO_OID_FETCH = "cannot fetch a specific object"

# Ordered: the first matching marker decides the kind. Texts come from libgit2 1.9's messages.
_CLASSIFIERS: tuple[tuple[FetchKind, tuple[str, ...]], ...] = (
    ("timeout", ("timed out", "timeout")),
    ("dns", ("failed to resolve address", "name or service not known", "temporary failure in name resolution",
             "nodename nor servname")),
    ("refused", ("connection refused",)),
    ("tls", ("ssl", "tls", "certificate")),
    ("http", ("unexpected http status code", "http status")),
    ("not-our-ref", ("not our ref", "not found", "could not read from remote repository", _NO_OID_FETCH)),
)


class FetchAborted(Exception):
    """Raised from a libgit2 callback to stop a fetch that passed its deadline or was cancelled."""


class _Callbacks(pygit2.RemoteCallbacks):
    """Gives libgit2 a way to be stopped: every progress callback checks the deadline/stop flag."""

    def __init__(self, deadline: float, stop: threading.Event) -> None:
        super().__init__()
        self._deadline = deadline
        self._stop = stop

    def _check(self) -> None:
        if self._stop.is_set():
            raise FetchAborted("fetch cancelled: timed out")
        if time.monotonic() >= self._deadline:
            raise FetchAborted("fetch deadline passed: timed out")

    def sideband_progress(self, string: str) -> None:
        self._check()

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        self._check()

    def update_tips(self, refname: str, old: pygit2.Oid, new: pygit2.Oid) -> None:
        self._check()


def classify(message: str) -> FetchKind:
    """Map a libgit2 error text to the small closed set of outcome kinds."""
    text = message.lower()
    for kind, markers in _CLASSIFIERS:
        if any(marker in text for marker in markers):
            return kind
    return "error"


def _apply_socket_timeouts(timeout_s: float) -> None:
    """Bound every connect and socket read libgit2 does (process-wide, so set it every call)."""
    ms = max(1, int(timeout_s * 1000))
    if pygit2.settings.server_connect_timeout != ms:
        pygit2.settings.server_connect_timeout = ms
    if pygit2.settings.server_timeout != ms:
        pygit2.settings.server_timeout = ms


def open_quarantine(dest: Path) -> pygit2.Repository:
    """Open the bare quarantine repo, creating it on first use, with redirects refused."""
    if not (dest / "HEAD").is_file():
        init_quarantine(dest)
    repo = pygit2.Repository(str(dest))
    _refuse_redirects(repo)
    return repo


def _refuse_redirects(repo: pygit2.Repository) -> None:
    """`http.followRedirects=false`: libgit2 then refuses redirects to another host name (it
    still follows same-host ones, which the pinning forwarder refuses). Written only when the
    value read (local config over global) differs, so a fetch does not rewrite the file."""
    try:
        current = repo.config[_FOLLOW_REDIRECTS]
    except KeyError:
        current = None
    if current != "false":
        repo.config[_FOLLOW_REDIRECTS] = "false"


_FOLLOW_REDIRECTS = "http.followRedirects"


def _bad_oids(repo: pygit2.Repository, oids: Iterable[str]) -> dict[str, str]:
    """Wanted ids that are absent or of a type no event can reference, with the reason."""
    bad: dict[str, str] = {}
    for oid in oids:
        try:
            obj_type, _size = repo.odb.read_header(oid)
        except (KeyError, ValueError, pygit2.GitError):
            bad[oid] = "missing"
            continue
        if obj_type not in _ACCEPTED_TYPES:
            bad[oid] = f"type {pygit2.enums.ObjectType(obj_type).name.lower()}"
    return bad


def quarantine_has(dest: Path, oids: Iterable[str]) -> set[str]:
    """The ids among `oids` that `dest` does not hold yet (all of them if it does not exist)."""
    wanted = set(oids)
    if not (dest / "HEAD").is_file():
        return wanted
    return set(_bad_oids(pygit2.Repository(str(dest)), wanted))


def _oid_refspecs(oids: Iterable[str]) -> list[str]:
    # Named refs anchor the objects and give later fetches "haves" to negotiate with.
    return [f"+{oid}:refs/quarantine/{oid}" for oid in sorted(oids)]


def _fallback_refspecs(url: str) -> list[str]:
    # One namespace per URL, so fetches from two URLs never fight over the same ref locks.
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    return [f"+refs/*:refs/upstream/{tag}/*"]


def _transfer(url: str, route: Forwarder, dest: Path, oids: frozenset[str], callbacks: _Callbacks) -> str:
    """Fetch by id, or every advertised ref when the server cannot serve ids, from the
    forwarder standing in for `url`'s server. Returns the mode. `proxy=None` is libgit2's
    GIT_PROXY_NONE: no http_proxy variable or git config sends the bytes elsewhere."""
    repo = open_quarantine(dest)
    remote = repo.remotes.create_anonymous(route.url)
    try:
        remote.fetch(_oid_refspecs(oids), callbacks=callbacks, prune=pygit2.enums.FetchPrune.NO_PRUNE, proxy=None)
        return "oid"
    except pygit2.GitError as exc:
        if _NO_OID_FETCH not in str(exc):
            raise
    remote.fetch(_fallback_refspecs(url), callbacks=callbacks, prune=pygit2.enums.FetchPrune.NO_PRUNE, proxy=None)
    return "refs"


def _release(exc: BaseException) -> str:
    """Text of `exc`, dropping its traceback. pygit2 keeps a callback's exception on the callbacks
    object and its traceback holds the `Remote.fetch` frame: that cycle would keep the Remote, and
    so its HTTP connection, open until the next gc run; a server we gave up on must see us leave."""
    exc.__traceback__ = None
    exc.__context__ = None
    return str(exc)


def _failure(message: str, route: Forwarder) -> FetchOutcome:
    """libgit2's error, read together with what the forwarder saw: when the checked addresses
    could not be reached, that (refused, timed out) is the real cause, libgit2 only saw a 502."""
    dial_error = route.dial_error
    if dial_error is not None:
        return FetchOutcome.failure(classify(dial_error), f"{message} ({dial_error})")
    notes = route.notes
    return FetchOutcome.failure(classify(message), f"{message} ({'; '.join(notes)})" if notes else message)


def _fetch_blocking(url: str, route: Forwarder, dest: Path, oids: frozenset[str], deadline: float,
                    stop: threading.Event) -> FetchOutcome:
    """The worker-thread part: transfer, then verify what arrived."""
    callbacks = _Callbacks(deadline, stop)
    try:
        mode = _transfer(url, route, dest, oids, callbacks)
    except FetchAborted as exc:
        return FetchOutcome.failure("timeout", _release(exc))
    except (pygit2.GitError, OSError, ValueError) as exc:
        message = _release(exc)
        # Another fetch may have brought the objects anyway (e.g. a ref lock race): trust the odb.
        if not quarantine_has(dest, oids):
            return FetchOutcome.success(f"objects present despite: {message}")
        return _failure(message, route)
    bad = _bad_oids(pygit2.Repository(str(dest)), oids)
    if bad:
        detail = ", ".join(f"{oid} {why}" for oid, why in sorted(bad.items()))
        return FetchOutcome.failure("not-our-ref", f"after {mode} fetch: {detail}")
    return FetchOutcome.success(mode)


async def _target(url: str, addresses: Sequence[str] | None) -> Target | FetchOutcome:
    """Where the fetch may connect, or why it cannot be made. The scheme rule is checked here
    too, so no caller can hand libgit2 a local path or an ssh URL."""
    refusal = scheme_refusal(url, GIT_SCHEMES)
    if refusal is not None:
        return FetchOutcome.failure("error", f"blocked: {refusal}")
    if addresses is None:
        check = await check_clone_url(url, allow_private=True)
        if check.refusal is not None:
            return FetchOutcome.failure("error", f"blocked: {check.refusal}")
        addresses = check.addresses
    if not addresses:
        host = urlsplit(url).hostname
        return FetchOutcome.failure("dns", f"no checked address to connect to (cannot resolve {host})")
    try:
        return Target.from_url(url, addresses)
    except ValueError as exc:
        return FetchOutcome.failure("error", f"blocked: {exc}")


async def fetch_oids(url: str, dest: Path, oids: frozenset[str] | set[str], timeout_s: float,
                     addresses: Sequence[str] | None = None) -> FetchOutcome:
    """Fetch `oids` from `url` into the quarantine repo `dest`, within `timeout_s`, connecting
    only to `addresses` (those `outbound.check_clone_url` approved; empty fails as "dns").
    `addresses=None` resolves the name here without the public-address policy, for tests and
    benchmarks. Never raises for network or protocol trouble: the outcome says what happened."""
    wanted = frozenset(oids)
    started = time.monotonic()
    if not wanted:
        return FetchOutcome.success("nothing wanted")
    invalid = sorted(oid for oid in wanted if not is_oid(oid))
    if invalid:
        # Never hand a non-id to libgit2 as a refspec: it would be read as a ref name.
        return FetchOutcome.failure("error", f"not object ids: {', '.join(invalid)[:200]}")
    target = await _target(url, addresses)
    if isinstance(target, FetchOutcome):
        outcome = target
    else:
        outcome = await _pinned_fetch(url, target, dest, wanted, timeout_s, started)
    log.info("fetch", url=url, oids=len(wanted), kind=outcome.kind, seconds=round(time.monotonic() - started, 3),
             detail=outcome.detail if not outcome.ok else None)
    return outcome


async def _pinned_fetch(url: str, target: Target, dest: Path, wanted: frozenset[str], timeout_s: float,
                        started: float) -> FetchOutcome:
    """The libgit2 fetch in a worker thread, its bytes through a forwarder pinned to `target`;
    the forwarder is cut when the fetch ends or is abandoned, which also wakes a worker that
    is blocked reading."""
    _apply_socket_timeouts(timeout_s)
    stop = threading.Event()
    deadline = started + timeout_s
    try:
        route = Forwarder(target, deadline=deadline + 1.0, idle_timeout_s=timeout_s + 1.0).start()
    except OSError as exc:
        return FetchOutcome.failure("error", f"cannot start the fetch forwarder: {exc}")
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_fetch_blocking, url, route, dest, wanted, deadline, stop), timeout_s)
    except TimeoutError:
        return FetchOutcome.failure("timeout", f"no answer within {timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise"; unknown faults become "error"
        return FetchOutcome.failure("error", f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()  # a worker still blocked in a read stops at its next callback
        route.close()
