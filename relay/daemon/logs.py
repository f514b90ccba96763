"""structlog set-up: JSON lines in production (Docker, systemd), readable console output in
development. Everything goes to stderr so the service manager collects it.

One stream: the standard library's loggers (uvicorn's, asyncio's, warnings, uncaught
exceptions in threads and at the top level) are rendered by the same structlog processors,
so with `json` every line the process writes is one JSON object that a log shipper can parse.

Client addresses are personal data: they appear (the `ip` field of our events, uvicorn's
access lines and websocket upgrade lines) only when the operator turns on
GRASP_ACCESS_LOG; otherwise they are removed from every line, whoever logged it."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: event fields that hold a client's address
ADDRESS_FIELDS = ("ip", "client", "client_addr", "peer_ip")
#: uvicorn logs each websocket upgrade on "uvicorn.error" as '%s - "WebSocket %s" <status>',
#: the client address first: it is an access line whatever the logger's name
_WS_ACCESS_PREFIX = '%s - "WebSocket %s"'


class _AccessFilter(logging.Filter):
    """Drops uvicorn's per-request lines (they carry the client address) unless enabled."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" or str(record.msg).startswith(_WS_ACCESS_PREFIX):
            return self.enabled
        return True


#: uvicorn's reports of a client's own protocol errors, which it has already answered with a
#: close frame (1007): logged at error level with a traceback, they would let any client write
#: tracebacks into the log at will. Kept as one info line each.
_CLIENT_FAULTS = {"Invalid UTF-8 sequence received from client.": "websocket_invalid_utf8"}


class _ClientFaultFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        event = _CLIENT_FAULTS.get(str(record.msg)) if record.name.startswith("uvicorn") else None
        if event is not None:
            record.msg, record.args, record.exc_info, record.exc_text = event, (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def _uvicorn_fields(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn's access and upgrade lines as fields rather than one formatted string."""
    record = event.get("_record")
    args = event.pop("positional_args", None)  # ProcessorFormatter(pass_foreign_args=True)
    if record is None or not isinstance(args, tuple):
        return event
    if record.name == "uvicorn.access" and len(args) == 5:
        client, method, path, version, status = args
        event.update(event="http_request", client=client, method=method, path=path,
                     http_version=version, status=status)
    elif str(record.msg).startswith(_WS_ACCESS_PREFIX) and len(args) >= 2:
        outcome = args[2] if len(args) > 2 else str(record.msg).rsplit(" ", 1)[-1].strip("[]")
        event.update(event="websocket_upgrade", client=args[0], path=args[1], status=outcome)
    return event


def _without_addresses(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in ADDRESS_FIELDS:
        event.pop(key, None)
    return event


def configure(level: str, fmt: str, access_log: bool = False) -> None:
    """(Re)configure logging; called at start and on every reload (the level may change)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    privacy: list[structlog.types.Processor] = [] if access_log else [_without_addresses]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, *privacy, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        pass_foreign_args=True,
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _uvicorn_fields, *privacy],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_AccessFilter(access_log))
    handler.addFilter(_ClientFaultFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # uvicorn gives its loggers no handlers when log_config is None; make sure they reach
    # ours (and only ours) whatever a library did before
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    logging.captureWarnings(True)  # warnings.warn() goes through logging, hence JSON too
    _install_excepthooks()


def _install_excepthooks() -> None:
    """Uncaught exceptions (main thread and others) become one error event with the
    traceback as a field, not a bare traceback between JSON lines."""
    log = structlog.get_logger("relay.uncaught")

    def main_hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.error("uncaught_exception", exc_info=(kind, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        log.error("uncaught_exception", thread=getattr(args.thread, "name", None),
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
