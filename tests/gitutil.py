"""The real git CLI for tests: make working repos with commits, push, clone, read refs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def make_repo(path: Path, commits: int = 2, branch: str = "main") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", branch, str(path))
    for i in range(commits):
        (path / f"file{i}.txt").write_text(f"content {i} of {path.name}\n")
        git("add", ".", cwd=path)
        git("commit", "-q", "-m", f"commit {i}", cwd=path)
    return path


def commit(path: Path, name: str, text: str | None = None) -> str:
    (path / name).write_text(text or f"{name}\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", f"add {name}", cwd=path)
    return rev(path, "HEAD")


def rev(path: Path, ref: str = "HEAD") -> str:
    return git("rev-parse", ref, cwd=path).stdout.strip()


def push(path: Path, url: str, *refspecs: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return git("push", "--porcelain", url, *refspecs, cwd=path, check=check)


def remote_refs(url: str) -> dict[str, str]:
    out = git("ls-remote", url).stdout
    refs = {}
    for line in out.splitlines():
        oid, name = line.split("\t")
        refs[name] = oid
    return refs


def remote_head(url: str) -> str | None:
    out = git("ls-remote", "--symref", url, "HEAD").stdout
    for line in out.splitlines():
        if line.startswith("ref: "):
            return line.split()[1]
    return None
