"""Loading the settings: the environment, `.env` and GRASP_CONFIG_FILE in their order, and
pydantic's report on a bad value turned into the one line an operator reads in a journal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from config import files
from config.settings import Settings


class SettingsError(Exception):
    """A one-line, operator-facing description of a bad setting."""


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from the environment, `.env` and GRASP_CONFIG_FILE (the environment
    wins, then the config file, then `.env`), turning pydantic's multi-line report into one
    line naming the setting, because operators read this in a journal or `docker logs`.
    `environ` is only consulted to find GRASP_CONFIG_FILE (default: os.environ)."""
    from pydantic import ValidationError

    env_files: list[Path] = []
    for path, must_exist in ((files.ENV_FILE, False), (files.config_file_from(environ or os.environ), True)):
        if path is None:
            continue
        found = files.problem(path, must_exist)
        if found is not None:
            name = files.CONFIG_FILE_VAR if must_exist else str(path)
            raise SettingsError(f"invalid setting {name}: {found.message}")
        env_files.append(path)
    try:
        return Settings(_env_file=tuple(env_files) or None, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        line = f"invalid setting {problems[0][1]}"
        others = sorted({name for name, _ in problems[1:] if name and name != problems[0][0]})
        if others:
            line += f" (also invalid: {', '.join(others)})"
        raise SettingsError(line) from None
    except Exception as exc:  # pydantic-settings' own parse errors: still one line
        raise SettingsError(f"invalid settings: {' '.join(str(exc).split())}") from None


def _describe(error: Any) -> tuple[str, str]:
    """(setting name, "GRASP_NAME: what is wrong") for one pydantic error."""
    msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    loc = error.get("loc") or ()
    if not loc:  # a rule between settings: its message names the setting first
        return msg.split(":", 1)[0], msg
    name = "GRASP_" + str(loc[0]).upper()
    shown = error.get("input")
    secret = any(word in name.lower() for word in ("secret", "password", "token", "nsec"))
    if isinstance(shown, str) and not secret and error.get("type") != "value_error" and len(shown) <= 200:
        msg = f"{shown!r}: {msg[:1].lower()}{msg[1:]}"
    return name, f"{name}: {msg}"
