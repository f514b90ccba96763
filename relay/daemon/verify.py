"""`grasp-relay verify URL`: check a deployment end to end from the outside, the way its
users reach it: through the public URL, its TLS proxy and its websockets.

Each step is one checklist line, PASS or FAIL, and a failure carries a hint at the usual
cause (a GRASP_DOMAIN that is not the public name, a proxy that does not forward websocket
upgrades, a proxy body size limit, timeouts). The client side is nostr-sdk (throw-away
keys, signing, publishing, REQ) and the real `git` CLI. What it creates (an event, an
announcement, a state, a repo with one commit) is deleted again with NIP-09 at the end.

Nothing here reads the relay's settings or data directory: it runs from any machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EXIT_FAILED = 1
EXIT_USAGE = 2
WS_TIMEOUT_S = 15.0
GIT_TIMEOUT_S = 300.0
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "grasp-relay verify",
            "GIT_AUTHOR_EMAIL": "verify@grasp-relay.invalid", "GIT_COMMITTER_NAME": "grasp-relay verify",
            "GIT_COMMITTER_EMAIL": "verify@grasp-relay.invalid", "GIT_CONFIG_NOSYSTEM": "1"}
_HELP = """Check a running grasp-relay from the outside, as its users reach it, and print one
PASS/FAIL line per step: NIP-11 (fields, content type, CORS), a websocket publish and REQ with a
throw-away key, a repository announcement naming the URL's host, a state, a real git push, a
git clone back with its HEAD, a push the relay must refuse with its reason, and the NIP-09
deletion of everything it created. Each FAIL says what usually causes it.

URL is the public address: https://git.example.org (or wss://..., or http://host:port for a
relay without TLS). Needs git on PATH. exit codes: 0 every step passed; 1 a step failed;
2 usage error."""


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="grasp-relay verify", description=_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("url", metavar="URL", help="the relay's public URL, e.g. https://git.example.org")
    out.add_argument("--timeout", type=float, default=WS_TIMEOUT_S, metavar="S",
                     help=f"seconds to wait for each relay answer (default {WS_TIMEOUT_S:g})")
    return out


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The relay's addresses as a client derives them from the one public URL."""

    http: str  # http(s)://host[:port]
    ws: str  # ws(s)://host[:port]
    domain: str  # host[:port], as announcements name it


def endpoints(url: str) -> Endpoints:
    parts = urlsplit(url.strip())
    secure = {"https": True, "wss": True, "http": False, "ws": False}.get(parts.scheme)
    if secure is None or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r} is not a relay URL (https://host[:port], wss://..., http://host:port)")
    return Endpoints(f"{'https' if secure else 'http'}://{parts.netloc}",
                     f"{'wss' if secure else 'ws'}://{parts.netloc}", parts.netloc.lower())


@dataclass(slots=True)
class Step:
    name: str
    ok: bool
    detail: str = ""
    hint: str = ""


@dataclass(slots=True)
class Run:
    """The checklist as it is filled in; printed as it goes, so a hang shows where."""

    steps: list[Step] = field(default_factory=list)
    write: Callable[[str], Any] = sys.stdout.write

    def record(self, name: str, ok: bool, detail: str = "", hint: str = "") -> bool:
        step = Step(name, ok, detail, hint)
        self.steps.append(step)
        line = f"{'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else "")
        self.write(line + "\n")
        if not ok and hint:
            self.write(f"      hint: {hint}\n")
        sys.stdout.flush()
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)


# --- hints ------------------------------------------------------------------------------------
HINT_DOMAIN = ("the relay's GRASP_DOMAIN is not {domain}: set GRASP_DOMAIN={domain} (host[:port] exactly as "
               "clients reach it) and restart; announcements name the relay by that address")
HINT_WS = ("the websocket upgrade did not get through: the proxy in front must forward `Upgrade: websocket` "
           "and `Connection: upgrade` on / (deploy/Caddyfile, deploy/nginx.conf)")
HINT_HTTP = "nothing answered at {url}: is the relay (or its proxy) running and reachable on this port?"
HINT_BODY = ("the push body was cut: a proxy body size limit (nginx client_max_body_size 0; Caddy has none by "
             "default) or GRASP_MAX_PUSH_BYTES")
HINT_NO_REPO = ("the repository URL does not exist: the relay did not take the announcement for this address "
                "(is GRASP_DOMAIN the host[:port] of the URL?), or a proxy routes /<npub>/... elsewhere")
HINT_TIMEOUT = ("no answer in time: raise the proxy's read/write timeouts for git (deploy/nginx.conf, "
                "deploy/Caddyfile) and check the relay's load")


def _git(*args: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _git_hint(stderr: str) -> str:
    text = stderr.lower()
    if "413" in text or "too large" in text or "exceeds the limit" in text:
        return HINT_BODY
    if "timed out" in text or "timeout" in text or "504" in text or "502" in text:
        return HINT_TIMEOUT
    if "404" in text or "not found" in text:
        return HINT_NO_REPO
    return "see git's message above; the relay's log has the same request"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def check_nip11(run: Run, ends: Endpoints, timeout: float) -> None:
    request = urllib.request.Request(ends.http + "/", headers={"Accept": "application/nostr+json",
                                                                "Origin": "https://example.org"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, headers, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, err.headers, err.read()
    except (OSError, ValueError) as exc:
        run.record("NIP-11 document", False, str(exc), HINT_HTTP.format(url=ends.http + "/"))
        return
    ctype = headers.get("Content-Type", "")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    if not ctype.startswith("application/nostr+json"):
        problems.append(f"content type {ctype or 'missing'}")
    if headers.get("Access-Control-Allow-Origin") != "*":
        problems.append("no Access-Control-Allow-Origin: *")
    if not isinstance(doc, dict):
        problems.append("body is not a JSON object")
    else:
        if not doc.get("name"):
            problems.append("no name")
        for nip in (1, 11, 34):
            if nip not in (doc.get("supported_nips") or []):
                problems.append(f"NIP-{nip} not in supported_nips")
        if "GRASP-01" not in (doc.get("supported_grasps") or []):
            problems.append("GRASP-01 not in supported_grasps")
    detail = "; ".join(problems) if problems else f"{doc.get('name')} {doc.get('version', '')}".strip()
    run.record("NIP-11 document (fields, content type, CORS)", not problems, detail,
               "a proxy that rewrites headers or serves another site at /; the relay answers NIP-11 itself")


class Nostr:
    """The websocket side through nostr-sdk, with bounded waits."""

    def __init__(self, ends: Endpoints, timeout: float) -> None:
        from nostr_sdk import Client, Keys

        self.keys = Keys.generate()
        self.client = Client()
        self.ends = ends
        self.timeout = timeout

    async def connect(self) -> str | None:
        from nostr_sdk import RelayUrl

        await self.client.add_relay(RelayUrl.parse(self.ends.ws))
        out = await self.client.try_connect(timedelta(seconds=self.timeout))
        if out.success:
            return None
        return "; ".join(out.failed.values()) or "not connected"

    async def publish(self, kind: int, tags: list[list[str]], content: str = "") -> tuple[str, str | None]:
        """(event id, None) when the relay answered OK true, else (id, its reason)."""
        from nostr_sdk import EventBuilder, Kind, Tag

        event = EventBuilder(Kind(kind), content).tags([Tag.parse(t) for t in tags]).finalize(self.keys)
        out = await asyncio.wait_for(self.client.send_event(event), self.timeout + 5)
        if out.success:
            return out.id.to_hex(), None
        return out.id.to_hex(), "; ".join(out.failed.values()) or "no answer"

    async def fetch_ids(self, ids: list[str]) -> set[str]:
        from nostr_sdk import EventId, Filter, ReqTarget

        flt = Filter().ids([EventId.parse(i) for i in ids])
        events = await self.client.fetch_events(ReqTarget.auto([flt]), timeout=timedelta(seconds=self.timeout))
        return {e.id().to_hex() for e in events}

    @property
    def npub(self) -> str:
        return str(self.keys.public_key().to_bech32())

    @property
    def pubkey(self) -> str:
        return str(self.keys.public_key().to_hex())

    async def close(self) -> None:
        await self.client.disconnect()


async def check_relay(run: Run, ends: Endpoints, timeout: float, work: Path) -> None:
    nostr = Nostr(ends, timeout)
    problem = await nostr.connect()
    if not run.record("websocket connection", problem is None, problem or ends.ws, HINT_WS):
        return
    created: list[str] = []
    try:
        await _nostr_steps(run, nostr, ends, work, created)
    finally:
        if created:
            event_id, refusal = await nostr.publish(5, [["e", i] for i in created] + [
                ["a", f"30617:{nostr.pubkey}:{work.name}"], ["a", f"30618:{nostr.pubkey}:{work.name}"],
                ["k", "30617"], ["k", "30618"], ["k", "10317"]], "grasp-relay verify: cleaning up")
            left = await nostr.fetch_ids(created) if refusal is None else set(created)
            run.record("NIP-09 deletion of what verify created", refusal is None and not left,
                       refusal or (f"{len(left)} events still served" if left else f"deletion {event_id[:12]}"),
                       "the relay must accept kind 5 deletions of the author's own events")
        await nostr.close()


async def _nostr_steps(run: Run, nostr: Nostr, ends: Endpoints, work: Path, created: list[str]) -> None:
    identifier = work.name
    event_id, refusal = await nostr.publish(10317, [["g", ends.ws]])
    if not run.record("publish an event (kind 10317)", refusal is None, refusal or event_id[:12],
                      HINT_WS if refusal and "timeout" in refusal else "the relay refused it; see the reason"):
        return
    created.append(event_id)
    found = await nostr.fetch_ids([event_id])
    if not run.record("REQ returns it", event_id in found, "" if event_id in found else "not returned",
                      "a proxy that buffers websocket frames, or a relay that does not store"):
        return
    clone = f"{ends.http}/{nostr.npub}/{identifier}.git"
    ann_id, refusal = await nostr.publish(30617, [
        ["d", identifier], ["name", identifier], ["description", "grasp-relay verify (deleted again)"],
        ["clone", clone], ["relays", ends.ws]])
    if refusal is None:
        created.append(ann_id)
    hint = HINT_DOMAIN.format(domain=ends.domain) if refusal and "blocked" in refusal else "see the reason"
    if not run.record(f"announcement naming {ends.domain}", refusal is None, refusal or ann_id[:12], hint):
        return
    tip = _git("rev-parse", "HEAD", cwd=work).stdout.strip()
    st_id, refusal = await nostr.publish(30618, [["d", identifier], ["refs/heads/main", tip],
                                                 ["HEAD", "ref: refs/heads/main"]])
    if refusal is None:
        created.append(st_id)
    if not run.record("state (kind 30618)", refusal is None, refusal or st_id[:12], "see the reason"):
        return
    git_steps(run, clone, work, tip)


def git_steps(run: Run, clone: str, work: Path, tip: str) -> None:
    try:
        pushed = _git("push", "--quiet", clone, "main", cwd=work)
    except subprocess.TimeoutExpired:
        run.record("git push", False, "timed out", HINT_TIMEOUT)
        return
    if not run.record("git push", pushed.returncode == 0, _last_line(pushed.stderr) or clone,
                      _git_hint(pushed.stderr)):
        return
    back = work.parent / "clone"
    cloned = _git("clone", "--quiet", clone, str(back))
    got = _git("rev-parse", "HEAD", cwd=back).stdout.strip() if cloned.returncode == 0 else ""
    if not run.record("git clone back", got == tip, got[:12] if got == tip else _last_line(cloned.stderr),
                      _git_hint(cloned.stderr)):
        return
    symref = _git("ls-remote", "--symref", clone, "HEAD").stdout
    head_ok = "ref: refs/heads/main\tHEAD" in symref
    run.record("HEAD follows the state", head_ok, "refs/heads/main" if head_ok else _last_line(symref),
               "the state's HEAD was not applied: the release after the push failed (see the relay's log)")
    (work / "unsigned.txt").write_text("not in any signed state\n")
    _git("add", "unsigned.txt", cwd=work)
    _git("commit", "-q", "-m", "unsigned", cwd=work)
    refused = _git("push", clone, "main", cwd=work)
    reason = next((line.strip() for line in refused.stderr.splitlines() if "rejected" in line), "")
    run.record("an unsigned push is refused, with its reason", refused.returncode != 0 and "state" in reason,
               reason or _last_line(refused.stderr) or "the push was accepted",
               "git must show the relay's report-status line; a proxy that rewrites the response hides it")


def make_work(root: Path) -> Path:
    identifier = f"grasp-verify-{int(time.time())}-{os.getpid()}"
    work = root / identifier
    _git("init", "-q", "-b", "main", str(work))
    (work / "README").write_text("Created by grasp-relay verify; deleted again at its end.\n")
    _git("add", "README", cwd=work)
    _git("commit", "-q", "-m", "grasp-relay verify", cwd=work)
    return work


def run(url: str, timeout: float = WS_TIMEOUT_S, write: Callable[[str], Any] = sys.stdout.write) -> int:
    try:
        ends = endpoints(url)
    except ValueError as exc:
        sys.stderr.write(f"grasp-relay: verify: {exc}\n")
        return EXIT_USAGE
    if shutil.which("git") is None:
        sys.stderr.write("grasp-relay: verify: git is not on PATH\n")
        return EXIT_USAGE
    checklist = Run(write=write)
    check_nip11(checklist, ends, timeout)
    with tempfile.TemporaryDirectory(prefix="grasp-verify-") as tmp:
        work = make_work(Path(tmp))
        try:
            asyncio.run(check_relay(checklist, ends, timeout, work))
        except Exception as exc:  # a client library failure is a failed step, not a traceback
            checklist.record("relay steps", False, f"{type(exc).__name__}: {exc}", HINT_WS)
    failed = sum(not step.ok for step in checklist.steps)
    write(f"{'ALL PASS' if not failed else f'{failed} FAILED'}: {len(checklist.steps)} checks against {url}\n")
    return 0 if not failed else EXIT_FAILED
