"""Warnings about a configuration that loads but will not do what the operator meant: names
no setting reads (a typo keeps the default without a word), a git that cannot run (every
push and clone would fail), and a public port that differs from the listening port with no
proxy to explain it (announcements naming the port clients really use are refused).

Warnings, not errors: each has legitimate cases (a port mapping, git installed later), so
the start goes on, but `check-config` and the start print the same lines."""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from config import files, values
from config.settings import Settings

#: GRASP_* names read by the deployment files rather than by the relay (deploy/Caddyfile);
#: compose hands the same file to Caddy and the relay, so they are not typos.
FOREIGN_NAMES: frozenset[str] = frozenset({"GRASP_UPSTREAM"})
GIT_CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SettingWarning:
    """One line for the operator: `event` is the log event name, `setting` what to look at."""

    event: str
    setting: str
    message: str


def known_names() -> frozenset[str]:
    return frozenset(f"GRASP_{name.upper()}" for name in Settings.model_fields)


def unknown_names(sources: Mapping[str, Iterable[str]]) -> list[SettingWarning]:
    """Names under no setting, per source ("environment", ".env", a config file path):
    GRASP_* names in the environment, every name in a file (a file holds only settings)."""
    known = known_names()
    out: list[SettingWarning] = []
    seen: set[tuple[str, str]] = set()
    for source, names in sources.items():
        for raw in names:
            name = raw.upper()
            if name in known or name in FOREIGN_NAMES or (source, name) in seen:
                continue
            seen.add((source, name))
            if not name.startswith("GRASP_"):
                if source == "environment":
                    continue
                message = f"{raw} in {source} is not a setting (settings are named GRASP_*)"
            else:
                message = f"{raw} in {source} is not a setting; it is ignored"
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
            if close:
                message += f" (did you mean {close[0]}?)"
            out.append(SettingWarning("unknown_setting", raw, message))
    return out


def git_warning(git_binary: str) -> SettingWarning | None:
    """Run `git --version` once: a missing or broken git fails every push and clone."""
    try:
        done = subprocess.run([git_binary, "--version"], capture_output=True, timeout=GIT_CHECK_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return SettingWarning("git_unusable", "GRASP_GIT_BINARY",
                              f"{git_binary!r} cannot be run ({exc}); pushes and clones will fail")
    if done.returncode != 0 or not done.stdout.startswith(b"git version"):
        tail = done.stderr.decode(errors="replace").strip()[-200:]
        return SettingWarning("git_unusable", "GRASP_GIT_BINARY",
                              f"{git_binary!r} --version exited {done.returncode} ({tail or 'no output'}); "
                              f"pushes and clones will fail")
    return None


def port_warning(settings: Settings) -> SettingWarning | None:
    """GRASP_DOMAIN's port (explicit, or 80/443 when it names none) against GRASP_BIND's.
    With GRASP_TRUSTED_PROXIES set a proxy is in front and may well change the port."""
    if settings.trusted_proxies:
        return None
    host, port = values.domain_host_port(settings.domain)
    bind_port = settings.bind_port
    if port == bind_port:
        return None
    if port is None:
        public = "the default ports (443 for https/wss, 80 for http/ws)"
        direct = f"http://{host}:{bind_port}/..."
    else:
        public = f"port {port}"
        direct = f"http(s)://{host}:{bind_port}/..."
    return SettingWarning(
        "port_mismatch", "GRASP_DOMAIN",
        f"GRASP_DOMAIN={settings.domain} means clients use {public}, but GRASP_BIND listens on port "
        f"{bind_port} and GRASP_TRUSTED_PROXIES is empty: announcements whose clone or relays URLs name "
        f"port {bind_port} ({direct}) are refused. If clients connect to port {bind_port} directly set "
        f"GRASP_DOMAIN={host}:{bind_port}; if a proxy or port mapping forwards to it, set "
        f"GRASP_TRUSTED_PROXIES to the proxy's address")


def startup_warnings(settings: Settings, environ: Mapping[str, str]) -> list[SettingWarning]:
    """Everything to warn about before serving, in a stable order."""
    sources: dict[str, list[str]] = {
        "environment": [name for name in environ if name.upper().startswith("GRASP_")],
    }
    if files.ENV_FILE.is_file():
        sources[".env"] = files.names_in(files.ENV_FILE)
    if settings.config_file is not None:
        sources[str(settings.config_file)] = files.names_in(Path(settings.config_file))
    out = unknown_names(sources)
    git = git_warning(settings.git_binary)
    if git is not None:
        out.append(git)
    port = port_warning(settings)
    if port is not None:
        out.append(port)
    return out
