"""Settings files: `.env` in the working directory and the file GRASP_CONFIG_FILE names,
both in the `GRASP_NAME=value` format (comments with `#`, optional `export `, optional
quotes), which is also what systemd's EnvironmentFile and compose's env_file read.

The daemon reads GRASP_CONFIG_FILE itself, at start and again on SIGHUP, because a service
manager's environment is fixed for the life of the process: a reload can only change what
the process reads on its own. Lines are checked here before python-dotenv parses them, since
dotenv skips a line it cannot parse with a warning and the setting silently keeps its
default."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = Path(".env")
CONFIG_FILE_VAR = "GRASP_CONFIG_FILE"
_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Why a settings file cannot be used, as one line."""

    message: str


def assigned_names(text: str) -> list[str]:
    """The names a file assigns, in order (blank lines and comments skipped)."""
    names: list[str] = []
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            names.append(match.group(1))
    return names


def problem(path: Path, must_exist: bool) -> FileProblem | None:
    """None when `path` is absent (and allowed to be) or every line is blank, a comment or
    an assignment; otherwise what is wrong, naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return FileProblem(f"{path} does not exist") if must_exist else None
    except (OSError, UnicodeDecodeError) as exc:
        return FileProblem(f"cannot read {path}: {exc}")
    in_quote: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_quote is not None:  # a quoted value spanning lines, as dotenv allows
            if line.endswith(in_quote):
                in_quote = None
            continue
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            return FileProblem(f"line {number} of {path} is not NAME=value: {line[:60]!r}")
        value = line[match.end():].strip()
        if value[:1] in ("'", '"') and (len(value) == 1 or not value.endswith(value[0])):
            in_quote = value[0]
    return None


def names_in(path: Path) -> list[str]:
    try:
        return assigned_names(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return []


def config_file_from(environ: Mapping[str, str], env_file: Path = ENV_FILE) -> Path | None:
    """GRASP_CONFIG_FILE from the environment (any case, as pydantic-settings matches
    names), else from `.env`; None when unset or empty."""
    for key, value in environ.items():
        if key.upper() == CONFIG_FILE_VAR:
            return Path(value) if value.strip() else None
    if env_file.is_file():
        from dotenv import dotenv_values

        named = dotenv_values(env_file).get(CONFIG_FILE_VAR)
        if named and named.strip():
            return Path(named.strip())
    return None
