"""`grasp-relay` (serve in the foreground), `grasp-relay check-config` and
`grasp-relay integrity-check [--repair] [--identifier ID]`.

A bad setting stops the start with one line naming it and exit code 2, so a typo in an
env file is found by the operator, not by a client."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import structlog
import uvicorn
import uvloop

from config import Settings, SettingsError, load_settings
from config.checks import SettingWarning, startup_warnings
from relay import __version__
from relay.daemon import logs, sdnotify

if TYPE_CHECKING:
    from purgatory.integrity.sweep import RepoReport, Summary
    from storage.repos import RepoStore
    from storage.sqlite.view import StoreView

EXIT_BAD_CONFIG = 2
EXIT_DIFFERENCES = 1
_SECRET_WORDS = ("secret", "password", "token", "nsec")
_USAGE = """usage: grasp-relay [serve | check-config | integrity-check [--repair] [--identifier ID]
                   | backup DEST | verify URL | --version | --help]

  serve            run the relay in the foreground (the default)
  check-config     print the effective settings and exit (warnings go to stderr)
  integrity-check  compare every served repo's branches, tags and HEAD with its signed state
                   (grasp-relay integrity-check --help says more)
  backup DEST      write a consistent snapshot of the running relay's data into the new
                   directory DEST, itself a data directory (grasp-relay backup --help)
  verify URL       check a running deployment from the outside (NIP-11, websocket, announce,
                   push, clone, a refused push, deletion): one PASS/FAIL line per step
  --version        print the version

settings come from GRASP_* env vars, .env and the file GRASP_CONFIG_FILE names (re-read on
SIGHUP); a bad one exits 2 naming it
"""
_INTEGRITY_HELP = """Compare the branches, tags and HEAD of every served repo (a repo whose announcement is
released) with the newest served state event of the owner's maintainers, and print one line
per difference: a ref the state does not list (unsigned), a ref elsewhere than the state
says, a ref of the state that is absent, a HEAD that differs. refs/nostr/* (pull requests)
are not checked. A repo exactly at a newer held state of the same maintainers is a release
the purgatory has yet to make and is left alone (logged, not printed); so is a repo exactly
at a newer served state whose author is no longer a confirmed maintainer (kept: a membership
change never rolls history back; logged as integrity_kept).

--repair aligns each repo with its state (deleting unsigned refs) where the state's objects
are here, and reports the refs it cannot put back. Repairs take the repo's lock, which only
orders them against pushes inside the same process: while the daemon runs, prefer its own
pass on start (GRASP_INTEGRITY_CHECK_ON_START), or repair when no pushes are under way.

exit codes: 0 no differences (with --repair: none left, every one repaired); 1 differences
found (with --repair: some could not be repaired, or a repo could not be checked);
2 usage error, bad setting or no event store in GRASP_DATA_DIR."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command in ("-h", "--help", "help") or (command in ("serve", "check-config")
                                                and any(a in ("-h", "--help") for a in args[1:])):
        sys.stdout.write(_USAGE)  # asked for, so it is output, not an error
        return 0
    if command in ("-V", "--version", "version"):
        sys.stdout.write(f"grasp-relay {__version__}\n")
        return 0
    if command == "verify":  # from any machine: needs no settings, reads no data
        from relay.daemon import verify

        try:
            checked = verify.parser().parse_args(args[1:])
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_BAD_CONFIG
        return verify.run(checked.url, checked.timeout)
    options: argparse.Namespace | None = None
    if command in ("integrity-check", "backup"):
        try:  # before the settings, so that --help and usage errors need none
            options = _command_parser(command).parse_args(args[1:])
        except SystemExit as exc:  # argparse: --help exits 0, a usage error 2
            return exc.code if isinstance(exc.code, int) else EXIT_BAD_CONFIG
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"grasp-relay: {exc}\n")
        return EXIT_BAD_CONFIG
    if command == "check-config":
        for warning in startup_warnings(settings, os.environ):
            sys.stderr.write(f"grasp-relay: warning: {warning.message}\n")
        return check_config(settings)
    if command == "backup" and options is not None:
        from relay.daemon import backup

        logs.configure(settings.log_level, settings.log_format, settings.access_log)
        return backup.run(settings, options.dest)
    if options is not None:
        logs.configure(settings.log_level, settings.log_format, settings.access_log)
        return integrity_check(settings, repair=options.repair, identifier=options.identifier)
    if command != "serve":
        sys.stderr.write(f"grasp-relay: unknown command {command!r} (use serve, check-config, integrity-check, "
                         f"backup or verify; --help lists them)\n")
        return EXIT_BAD_CONFIG
    logs.configure(settings.log_level, settings.log_format, settings.access_log)
    for warning in startup_warnings(settings, os.environ):
        _log_warning(warning)
    return serve(settings)


def _log_warning(warning: SettingWarning) -> None:
    structlog.get_logger(__name__).warning(warning.event, setting=warning.setting, message=warning.message)


def check_config(settings: Settings) -> int:
    """Print the effective settings (secrets masked), one per line, as env assignments."""
    for name, value in sorted(settings.model_dump().items()):
        if any(word in name for word in _SECRET_WORDS) and value:
            value = "********"
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if value is None:  # unset (GRASP_CONFIG_FILE): empty, so the output reads back as unset
            value = ""
        sys.stdout.write(f"GRASP_{name.upper()}={value}\n")
    return 0


def _command_parser(command: str) -> argparse.ArgumentParser:
    if command == "backup":
        from relay.daemon import backup

        return backup.parser()
    return _integrity_parser()


def _integrity_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grasp-relay integrity-check", description=_INTEGRITY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repair", action="store_true",
                        help="align the repos that differ with their signed state")
    parser.add_argument("--identifier", metavar="ID",
                        help="check only the repos of this identifier (d tag), of every owner")
    return parser


def integrity_check(settings: Settings, repair: bool, identifier: str | None) -> int:
    """`grasp-relay integrity-check`: the report goes to stdout, one line per difference;
    logs go to stderr. Reads the event store through a read-only connection (a running
    daemon's WAL writes do not block it, nor it them) with no cache, so every read is fresh."""
    from storage.nostr import nip34
    from storage.repos import RepoStore
    from storage.sqlite.view import StoreView

    if identifier is not None and nip34.identifier_problem(identifier) is not None:
        sys.stderr.write(f"grasp-relay: --identifier: {nip34.identifier_problem(identifier)}\n")
        return EXIT_BAD_CONFIG
    if not settings.db_path.is_file():
        sys.stderr.write(f"grasp-relay: no event store at {settings.db_path} (is GRASP_DATA_DIR right?)\n")
        return EXIT_BAD_CONFIG
    try:
        view = StoreView(settings.db_path, cache_entries=0)
    except Exception as exc:  # sqlite3 errors: unreadable file, not a database
        sys.stderr.write(f"grasp-relay: cannot read the event store {settings.db_path}: {exc}\n")
        return EXIT_BAD_CONFIG
    try:
        repos = RepoStore(settings.repos_dir, settings.git_binary)
        summary = asyncio.run(_integrity_run(view, repos, repair, identifier, settings))
    finally:
        view.close()
    structlog.get_logger(__name__).info(
        "integrity_check_done", repos=summary.repos, differences=summary.differences,
        repaired=summary.repaired, unresolved_repos=summary.unresolved_repos, repair=repair)
    return EXIT_DIFFERENCES if summary.unresolved_repos else 0


async def _integrity_run(view: "StoreView", repos: "RepoStore", repair: bool, identifier: str | None,
                         settings: Settings) -> "Summary":
    from purgatory.integrity.sweep import IntegrityPass
    from storage.nostr.nip34 import WalkLimits

    return await IntegrityPass(view, repos, repair=repair, on_report=_write_report,
                               limits=WalkLimits.of(settings)).run(identifier)


def _write_report(report: "RepoReport") -> None:
    """One line per difference: repo, what is wrong, what --repair does or did."""
    name = report.repo.name
    if report.pending_state_id is not None:
        structlog.get_logger(__name__).info("integrity_release_pending", repo=name,
                                            state=report.pending_state_id, authoritative=report.state_id)
    if report.kept_state_id is not None:
        structlog.get_logger(__name__).info("integrity_kept", repo=name, state=report.kept_state_id,
                                            authoritative=report.state_id)
    if report.error is not None:
        sys.stdout.write(f"{name}: could not be checked or repaired: {report.error}\n")
    for diff in report.differences:
        problem = diff.problem(report.state_id)
        outcome = report.outcome(diff)
        if outcome == "repaired":
            tail = f"repaired: {diff.done}"
        elif outcome == "not_repairable":
            tail = f"NOT repaired: object {diff.expected} is not in this repo"
        elif report.error is not None:
            tail = "NOT repaired"
        else:
            tail = f"--repair would {diff.action}"
        sys.stdout.write(f"{name}: {problem}; {tail}\n")
    sys.stdout.flush()


def serve(settings: Settings) -> int:
    from relay.app import Relay

    relay = Relay(settings)
    config = uvicorn.Config(
        relay,
        host=settings.bind_host,
        port=settings.bind_port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes * 4,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=30,
        ws_ping_timeout=60,
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        # X-Forwarded-For is honoured by relay/ratelimit.py for GRASP_TRUSTED_PROXIES only;
        # uvicorn's own default would believe it from any local peer
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),  # uvicorn takes whole seconds
    )
    server = NotifyingServer(config)
    try:
        uvloop.run(_serve(server, relay.reload))
    except KeyboardInterrupt:
        pass
    if not server.started:
        structlog.get_logger(__name__).error("start_failed", bind=settings.bind)
        return 1
    return 0


class NotifyingServer(uvicorn.Server):
    """Tells systemd the moment a stop begins, before the drain, as Type=notify expects."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        sdnotify.stopping()
        super().handle_exit(sig, frame)


async def _serve(server: uvicorn.Server, reload: Callable[[], None]) -> None:
    """Run uvicorn (it owns SIGTERM/SIGINT: stop accepting, drain requests, close websockets,
    then our lifespan shutdown flushes the store), reload on SIGHUP, and tell systemd
    (Type=notify) once the socket is listening."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    # uvicorn re-raises the stop signal once it has shut down; after a clean drain the
    # process should exit 0, not die of the signal, so the handler it restores is a no-op
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        sdnotify.ready()
    await task


if __name__ == "__main__":
    sys.exit(main())
