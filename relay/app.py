"""The one ASGI application: Nostr websocket on `/`, NIP-11, pages, health, metrics and git
smart HTTP, all on one port. `Relay` only routes requests and runs the lifecycle (startup,
shutdown, reload); the parts it routes to are built by relay/compose.py."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import structlog

from config import Settings, SettingsError, load_settings
from config import files as config_files
from config.checks import unknown_names
from relay import ratelimit
from relay.compose import Components, open_components
from relay.daemon import logs, sdnotify
from relay.daemon.reload import Live
from relay.daemon.reload import plan as reload_plan
from relay.git.prs import parse_prs_path
from relay.git.smart_http import parse_git_path
from relay.http import header, respond
from relay.nostr import nip11
from relay.nostr.websocket import Connection
from relay.web import pages
from relay.web.routes import STYLESHEET

if TYPE_CHECKING:
    from relay.web.handlers import WebView

log = structlog.get_logger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Relay:
    """The ASGI app of one daemon. Built unstarted (uvicorn takes it before the event loop
    runs); the lifespan startup opens the store and builds the parts, and uvicorn serves no
    request before that completes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live = Live(settings)  # here, not in the parts: a SIGHUP may come during startup
        self.started_at = time.time()
        self.connections: set[Connection] = set()
        self._components: Components | None = None
        self._web: WebView | None = None

    @property
    def components(self) -> Components:
        """The started daemon's parts; asking before startup completed is a bug."""
        if self._components is None:
            raise RuntimeError("the relay has not started")
        return self._components

    @property
    def web(self) -> WebView:
        """The HTML pages, built on the started daemon's store and repos."""
        if self._web is None:
            # imported on the first page asked for: the template, Markdown and highlighting
            # stack is not loaded by a daemon nobody browses
            from relay.web.handlers import WebView

            self._web = WebView(self.settings, self.components.store, self.components.repos)
        return self._web

    async def startup(self) -> None:
        self._components = await open_components(self.settings, self.live)
        await self._components.start()

    async def shutdown(self) -> None:
        if self._components is not None:
            await self._components.close()
            await asyncio.to_thread(checkpoint_wal, self.settings.db_path)
        log.info("relay_stopped")

    def reload(self) -> None:
        """SIGHUP: read the environment, `.env` and GRASP_CONFIG_FILE again and apply the
        settings of `relay.daemon.reload.RELOADABLE` that changed; the log line lists what was
        applied and what needs a restart. A bad setting keeps the running configuration
        and says why in the log."""
        sdnotify.reloading()
        try:
            fresh = load_settings()
        except SettingsError as exc:
            log.error("reload_failed", error=str(exc), kept="the running settings")
            sdnotify.ready()
            return
        change = reload_plan(self.settings, fresh)
        self.live.apply(fresh, change.applied)
        logs.configure(self.settings.log_level, self.settings.log_format, self.settings.access_log)
        sources = _file_sources(fresh)
        for warning in unknown_names(sources):
            log.warning(warning.event, setting=warning.setting, message=warning.message)
        in_env = {name.upper() for name in os.environ}
        shadowed = sorted({n.upper() for n in sources.get(str(fresh.config_file), []) if n.upper() in in_env})
        # info when everything changed is in effect; warning when some of it waits for a restart
        say = log.warning if change.restart_needed else log.info
        say("reloaded", config_file=str(fresh.config_file) if fresh.config_file else None,
            **change.log_fields(), overridden_by_environment=shadowed, log_level=self.settings.log_level,
            archive_whitelist=len(self.settings.archive_whitelist),
            pubkey_blacklist=len(self.settings.pubkey_blacklist))
        sdnotify.ready()

    # --- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket"):
            # every log line of this request (a push, its releases; a connection, its events)
            # carries one id; uvicorn runs each request in its own task, so ids never mix
            structlog.contextvars.bind_contextvars(request_id=uuid.uuid4().hex[:12])
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("startup_failed", error=str(exc))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if scope["path"] != "/":
            await send({"type": "websocket.close", "code": 4404, "reason": "the Nostr relay is at /"})
            return
        ip = self.client_ip(scope)
        connection_limits = self.live.connection_limits
        refusal = connection_limits.open(ip)
        if refusal is not None:
            log.info("connection_refused", ip=ip, reason=refusal)
            await _deny_websocket(scope, send, 429, refusal)
            return
        try:
            await send({"type": "websocket.accept"})
            await self._serve_websocket(send, receive, ip)
        finally:
            connection_limits.close(ip)

    async def _serve_websocket(self, send: Send, receive: Receive, ip: str) -> None:
        parts = self.components
        conn = Connection(parts.connection_parts, send, ip)
        self.connections.add(conn)
        parts.metrics.connection_opened()
        log.info("connection_open", conn=conn.id, ip=conn.ip)
        try:
            await conn.run(receive)
        finally:
            self.connections.discard(conn)
            parts.metrics.connection_closed()
            log.info("connection_close", conn=conn.id)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS":
            await respond(send, 204, b"")
            return
        if method not in ("GET", "HEAD", "POST"):
            await respond(send, 405, b"method not allowed\n")
            return
        head = method == "HEAD"
        if path == "/" and method != "POST":
            if b"application/nostr+json" in header(scope, b"accept"):
                body = json.dumps(nip11.relay_information(self.settings)).encode()
                await respond(send, 200, body, "application/nostr+json", head=head)
            else:
                await self.web.serve(scope, send, head)
            return
        if path == "/health":
            await respond(send, 200, json.dumps(await self.health()).encode(), "application/json", head=head)
            return
        if path == "/metrics" and self.settings.metrics_enabled:
            metrics = self.components.metrics
            metrics.set_purgatory_pending(sum((await self.components.store.held_counts()).values()))
            body, content_type = metrics.render()
            await respond(send, 200, body, content_type, head=head)
            return
        prs_path = parse_prs_path((scope.get("raw_path") or path.encode()).decode("latin-1"))
        if prs_path is not None and self.components.prs_git is not None:  # GRASP-06, when on
            ratelimit.current_client.set(self.client_ip(scope))
            await self.components.prs_git.handle(scope, receive, send, *prs_path)
            return
        git_path = parse_git_path((scope.get("raw_path") or path.encode()).decode("latin-1"))
        if git_path is not None:
            npub, identifier, rest = git_path
            if rest not in ("", "/"):
                ratelimit.current_client.set(self.client_ip(scope))
                await self.components.git.handle(scope, receive, send, npub, identifier, rest)
            elif method == "POST":
                await respond(send, 405, b"method not allowed\n")
            else:
                await self.web.serve(scope, send, head)  # the repository page at its clone URL
            return
        if path.startswith("/npub1") or path == STYLESHEET:
            if method == "POST":
                await respond(send, 405, b"method not allowed\n")
            else:
                await self.web.serve(scope, send, head)
            return
        await respond(send, 404, pages.not_found(self.settings), "text/html; charset=utf-8", head=head)

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else ""
        forwarded = header(scope, b"x-forwarded-for").decode("latin-1")
        return ratelimit.client_address(peer, forwarded, self.live.trusted_proxies)

    async def health(self) -> dict[str, Any]:
        from relay import __version__

        try:
            counts = await self.components.store.held_counts()
            store_ok = True
        except Exception:
            counts, store_ok = {}, False
        return {
            "status": "ok" if store_ok else "degraded",
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "store_ok": store_ok,
            "connections": len(self.connections),
            "purgatory": {str(kind): n for kind, n in counts.items()},
        }


def _file_sources(settings: Settings) -> dict[str, list[str]]:
    """The names each settings file assigns, to warn about unknown ones on a reload."""
    sources: dict[str, list[str]] = {}
    if config_files.ENV_FILE.is_file():
        sources[".env"] = config_files.names_in(config_files.ENV_FILE)
    if settings.config_file is not None:
        sources[str(settings.config_file)] = config_files.names_in(Path(settings.config_file))
    return sources


def checkpoint_wal(db_path: Path) -> None:
    """After the store closed: copy the WAL into the database file and truncate it, so
    that after a clean stop `events.sqlite3` alone holds every commit (a copy of it is a
    backup) and the next start replays nothing. The store closes its writer before its
    read-only connections, so SQLite's own checkpoint-on-last-close does not happen; a
    fresh connection, the only one left, does it. A reader elsewhere (a `grasp-relay
    backup` or `integrity-check` running) can keep part of the WAL: logged, not fatal."""
    if not db_path.is_file():
        return
    wal = db_path.with_name(db_path.name + "-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            busy, _log, _moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.error("wal_checkpoint_failed", path=str(db_path), error=str(exc))
        return
    if busy:
        log.warning("wal_checkpoint_partial", path=str(db_path), wal_bytes=wal_bytes,
                    reason="another process is reading the store")
    else:
        log.info("wal_checkpointed", path=str(db_path), wal_bytes=wal_bytes)


async def _deny_websocket(scope: Scope, send: Send, status: int, message: str) -> None:
    """Refuse an upgrade with a real HTTP status where the server supports it (uvicorn does),
    so clients and proxies see 429 and Retry-After rather than a bare close."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"10")]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": message.encode() + b"\n"})
    else:
        await send({"type": "websocket.close", "code": 1013, "reason": message[:120]})
