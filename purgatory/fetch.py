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
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pygit2
import structlog

from purgatory.context import FetchKind, FetchOutcome
from purgatory.quarantine import init_quarantine
from storage.nip34 import is_oid

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
    """Open the bare quarantine repo, creating it on first use."""
    if not (dest / "HEAD").is_file():
        init_quarantine(dest)
    return pygit2.Repository(str(dest))


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


def _transfer(url: str, dest: Path, oids: frozenset[str], callbacks: _Callbacks) -> str:
    """Fetch by id, or every advertised ref when the server cannot serve ids. Returns the mode."""
    repo = open_quarantine(dest)
    remote = repo.remotes.create_anonymous(url)
    try:
        remote.fetch(_oid_refspecs(oids), callbacks=callbacks, prune=pygit2.enums.FetchPrune.NO_PRUNE)
        return "oid"
    except pygit2.GitError as exc:
        if _NO_OID_FETCH not in str(exc):
            raise
    remote.fetch(_fallback_refspecs(url), callbacks=callbacks, prune=pygit2.enums.FetchPrune.NO_PRUNE)
    return "refs"


def _release(exc: BaseException) -> str:
    """Text of `exc`, dropping its traceback. pygit2 keeps a callback's exception on the callbacks
    object and its traceback holds the `Remote.fetch` frame: that cycle would keep the Remote, and
    so its HTTP connection, open until the next gc run; a server we gave up on must see us leave."""
    exc.__traceback__ = None
    exc.__context__ = None
    return str(exc)


def _fetch_blocking(url: str, dest: Path, oids: frozenset[str], deadline: float, stop: threading.Event) -> FetchOutcome:
    """The worker-thread part: transfer, then verify what arrived."""
    callbacks = _Callbacks(deadline, stop)
    try:
        mode = _transfer(url, dest, oids, callbacks)
    except FetchAborted as exc:
        return FetchOutcome.failure("timeout", _release(exc))
    except (pygit2.GitError, OSError, ValueError) as exc:
        message = _release(exc)
        # Another fetch may have brought the objects anyway (e.g. a ref lock race): trust the odb.
        if not quarantine_has(dest, oids):
            return FetchOutcome.success(f"objects present despite: {message}")
        return FetchOutcome.failure(classify(message), message)
    bad = _bad_oids(pygit2.Repository(str(dest)), oids)
    if bad:
        detail = ", ".join(f"{oid} {why}" for oid, why in sorted(bad.items()))
        return FetchOutcome.failure("not-our-ref", f"after {mode} fetch: {detail}")
    return FetchOutcome.success(mode)


async def fetch_oids(url: str, dest: Path, oids: frozenset[str] | set[str], timeout_s: float) -> FetchOutcome:
    """Fetch `oids` from `url` into the quarantine repo `dest`, within `timeout_s`. Never raises
    for network or protocol trouble: the outcome says what happened."""
    wanted = frozenset(oids)
    started = time.monotonic()
    if not wanted:
        return FetchOutcome.success("nothing wanted")
    invalid = sorted(oid for oid in wanted if not is_oid(oid))
    if invalid:
        # Never hand a non-id to libgit2 as a refspec: it would be read as a ref name.
        return FetchOutcome.failure("error", f"not object ids: {', '.join(invalid)[:200]}")
    _apply_socket_timeouts(timeout_s)
    stop = threading.Event()
    deadline = started + timeout_s
    try:
        outcome = await asyncio.wait_for(asyncio.to_thread(_fetch_blocking, url, dest, wanted, deadline, stop), timeout_s)
    except TimeoutError:
        outcome = FetchOutcome.failure("timeout", f"no answer within {timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise"; unknown faults become "error"
        outcome = FetchOutcome.failure("error", f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()  # a worker still blocked in a read stops at its next callback
    log.info("fetch", url=url, oids=len(wanted), kind=outcome.kind, seconds=round(time.monotonic() - started, 3),
             detail=outcome.detail if not outcome.ok else None)
    return outcome
