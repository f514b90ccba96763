"""The integrity pass with real parts: the daemon, the git CLI over HTTP, signed events, the
SQLite store; repos tampered behind the relay's back with `git update-ref`, then checked by
`grasp-relay integrity-check` (a subprocess with the daemon's environment) and by the
daemon's own pass on start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.daemon import ALICE, Client, Daemon, console_script, metric, npub_of, wait_for
from tests.gitutil import git, make_repo, push, rev
from tests.test_git_flows import announce_and_state, repo_url


def cli(daemon: Daemon, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`grasp-relay integrity-check ...` with the same GRASP_* environment as the daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env.update(GRASP_BIND=daemon.domain, GRASP_DOMAIN=daemon.domain, GRASP_DATA_DIR=str(daemon.data_dir),
               GRASP_LOG_FORMAT="json", **daemon.env, **extra_env)
    return subprocess.run([*console_script(), "integrity-check", *args], env=env, cwd=daemon.data_dir.parent,
                          capture_output=True, text=True, timeout=60)


def bare(daemon: Daemon, identifier: str) -> Path:
    return daemon.data_dir / "repos" / npub_of(ALICE) / f"{identifier}.git"


def refs_of(path: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path).stdout
    return {name: oid for oid, name in (line.split() for line in out.splitlines())}


def head_of(path: Path) -> str:
    return git("symbolic-ref", "HEAD", cwd=path).stdout.strip()


async def publish_repo(daemon: Daemon, work: Path, identifier: str, refs: dict[str, str], *push_refs: str) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        await announce_and_state(client, daemon, ALICE, identifier, refs)
        result = push(work, repo_url(daemon, ALICE, identifier), *push_refs)
        assert result.returncode == 0, result.stderr
    finally:
        await client.close()


def tamper(path: Path, older: str, tip: str) -> None:
    """Move main back, add an unsigned branch, point HEAD at it, delete the signed tag."""
    git("update-ref", "refs/heads/main", older, cwd=path)
    git("update-ref", "refs/heads/rogue", tip, cwd=path)
    git("symbolic-ref", "HEAD", "refs/heads/rogue", cwd=path)
    git("update-ref", "-d", "refs/tags/v1", cwd=path)


async def test_cli_reports_repairs_and_is_idempotent(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    work = make_repo(tmp_path / "work", commits=2)
    tip, older = rev(work), rev(work, "HEAD~1")
    git("tag", "v1", older, cwd=work)
    signed = {"refs/heads/main": tip, "refs/tags/v1": older}
    await publish_repo(daemon, work, "proj", signed, "main", "v1")
    await publish_repo(daemon, work, "other", {"refs/heads/main": tip}, "main")
    path, other = bare(daemon, "proj"), bare(daemon, "other")
    assert refs_of(path) == signed
    clean = cli(daemon)
    assert clean.returncode == 0 and clean.stdout == "", clean.stdout + clean.stderr

    tamper(path, older, tip)
    git("update-ref", "refs/heads/stray", tip, cwd=other)
    # checked while the daemon runs (its SQLite file open in WAL mode): reported, unchanged
    found = cli(daemon)
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    name = f"{npub_of(ALICE)}/proj.git"
    assert len(lines) == 5, lines
    assert any(line.startswith(f"{name}: refs/heads/main is at {older}") and f"reset refs/heads/main to {tip}" in line
               for line in lines), lines
    assert any(f"{name}: refs/heads/rogue at {tip} is unsigned" in line and "delete refs/heads/rogue" in line
               for line in lines), lines
    assert any("refs/tags/v1 is absent" in line and f"create refs/tags/v1 at {older}" in line for line in lines)
    assert any("HEAD is refs/heads/rogue" in line and "point HEAD at refs/heads/main" in line for line in lines)
    assert any(line.startswith(f"{npub_of(ALICE)}/other.git: refs/heads/stray") for line in lines)
    assert refs_of(path)["refs/heads/main"] == older and head_of(path) == "refs/heads/rogue"

    daemon.stop()
    only = cli(daemon, "--identifier", "other", "--repair")
    assert only.returncode == 0 and only.stdout.splitlines() == [
        f"{npub_of(ALICE)}/other.git: refs/heads/stray at {tip} is unsigned (signed state "
        f"{only.stdout.split('signed state ')[1].split(' ')[0]} does not list it); repaired: deleted"]
    assert refs_of(other) == {"refs/heads/main": tip}
    assert refs_of(path)["refs/heads/main"] == older  # --identifier limited the pass

    repaired = cli(daemon, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert len(repaired.stdout.splitlines()) == 4
    assert all("; repaired: " in line for line in repaired.stdout.splitlines()), repaired.stdout
    assert refs_of(path) == signed and head_of(path) == "refs/heads/main"
    again = cli(daemon, "--repair")
    assert again.returncode == 0 and again.stdout == "", again.stdout
    assert cli(daemon).returncode == 0

    # the relay serves the healed repo
    daemon.start()
    clone = tmp_path / "clone"
    git("clone", "-q", repo_url(daemon, ALICE, "proj"), str(clone))
    assert rev(clone) == tip


async def test_cli_cannot_invent_missing_objects(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    work = make_repo(tmp_path / "work", commits=2)
    tip, older = rev(work), rev(work, "HEAD~1")
    await publish_repo(daemon, work, "lost", {"refs/heads/main": tip}, "main")
    daemon.stop()
    path = bare(daemon, "lost")
    # main moved back and the signed commit pruned away: the state's data is gone
    git("update-ref", "refs/heads/main", older, cwd=path)
    git("update-ref", "refs/heads/rogue", older, cwd=path)
    git("gc", "-q", "--prune=now", cwd=path)
    assert git("cat-file", "-e", tip, cwd=path, check=False).returncode != 0
    result = cli(daemon, "--repair")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(f"refs/heads/main is at {older}" in line and f"NOT repaired: object {tip}" in line for line in lines)
    assert any("refs/heads/rogue" in line and "repaired: deleted" in line for line in lines)
    assert refs_of(path) == {"refs/heads/main": older}


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env["GRASP_DATA_DIR"] = str(tmp_path / "nothing-here")

    def run(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*console_script(), *args], env={**env, **more}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)

    assert run("integrity-check", "--bogus").returncode == 2
    assert run("integrity-check", "--identifier", "a/b").returncode == 2
    missing = run("integrity-check")
    assert missing.returncode == 2 and "no event store" in missing.stderr
    bad = run("integrity-check", GRASP_MAX_LIMIT="zero")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "GRASP_MAX_LIMIT" in bad.stderr
    helped = run("integrity-check", "--help")
    assert helped.returncode == 0 and "exit codes" in helped.stdout
    assert "integrity-check" in run("--help").stdout  # help asked for is output


async def test_daemon_heals_a_repo_tampered_while_it_was_stopped(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    work = make_repo(tmp_path / "work", commits=2)
    tip, older = rev(work), rev(work, "HEAD~1")
    git("tag", "v1", older, cwd=work)
    signed = {"refs/heads/main": tip, "refs/tags/v1": older}
    await publish_repo(daemon, work, "proj", signed, "main", "v1")
    daemon.stop()
    path = bare(daemon, "proj")
    tamper(path, older, tip)

    daemon.start()
    await wait_for(lambda: refs_of(path) == signed and head_of(path) == "refs/heads/main", "the repo to heal")
    await wait_for(lambda: daemon.log_events("integrity_pass_done"), "the pass to finish")
    differences = daemon.log_events("integrity_difference")
    assert {(d["ref"], d["kind"], d["outcome"]) for d in differences} == {
        ("refs/heads/main", "moved", "repaired"), ("refs/heads/rogue", "unsigned", "repaired"),
        ("refs/tags/v1", "missing", "repaired"), ("HEAD", "head", "repaired")}
    assert all(d["level"] == "error" and d["repo"] == f"{npub_of(ALICE)}/proj.git" for d in differences)
    main = next(d for d in differences if d["ref"] == "refs/heads/main")
    assert main["expected"] == tip and main["found"] == older
    body = daemon.get("/metrics")[2].decode()
    assert metric(body, "grasp_integrity_repairs_total", kind="moved") == 1
    assert metric(body, "grasp_integrity_repairs_total", kind="unsigned") == 1
    clone = tmp_path / "clone"
    git("clone", "-q", repo_url(daemon, ALICE, "proj"), str(clone))
    assert rev(clone) == tip


async def test_daemon_only_reports_when_repair_on_start_is_off(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(integrity_repair_on_start="false")
    work = make_repo(tmp_path / "work", commits=2)
    tip, older = rev(work), rev(work, "HEAD~1")
    git("tag", "v1", older, cwd=work)
    await publish_repo(daemon, work, "proj", {"refs/heads/main": tip, "refs/tags/v1": older}, "main", "v1")
    await wait_for(lambda: daemon.log_events("integrity_pass_done"), "the first pass")
    assert daemon.log_events("integrity_difference") == []
    daemon.stop()
    path = bare(daemon, "proj")
    tamper(path, older, tip)
    before = refs_of(path)

    daemon.start()
    await wait_for(lambda: len(daemon.log_events("integrity_pass_done")) == 2, "the pass after the restart")
    done = daemon.log_events("integrity_pass_done")[-1]
    assert done["differences"] == 4 and done["repaired"] == 0 and done["repair"] is False
    outcomes = {(d["ref"], d["outcome"]) for d in daemon.log_events("integrity_difference")}
    assert outcomes == {("refs/heads/main", "reported"), ("refs/heads/rogue", "reported"),
                        ("refs/tags/v1", "reported"), ("HEAD", "reported")}
    assert refs_of(path) == before and head_of(path) == "refs/heads/rogue"
    assert metric(daemon.get("/metrics")[2].decode(), "grasp_integrity_repairs_total", kind="moved") == 0
