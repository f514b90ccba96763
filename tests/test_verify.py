"""`grasp-relay verify URL` against daemons started here: every step passes against a
correct one; against one whose GRASP_DOMAIN is not the address it is reached at, the
announcement step fails with the hint naming GRASP_DOMAIN, and the exit code says so."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.daemon import console_script


def verify(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env["GRASP_MAX_LIMIT"] = "nonsense"  # verify reads no settings: a bad local one is no matter
    return subprocess.run([*console_script(), "verify", url, "--timeout", "10"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_verify_passes_against_a_correct_deployment(daemon, tmp_path: Path) -> None:
    done = verify(daemon.http_url, tmp_path)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(checks) == 11 and all(line.startswith("PASS") for line in checks), lines
    for step in ("NIP-11", "websocket", "REQ", "announcement", "state", "git push", "git clone", "HEAD",
                 "refused", "NIP-09"):
        assert any(step in line for line in checks), step
    assert lines[-1].startswith("ALL PASS: 11 checks")


def test_verify_fails_with_the_hint_when_the_domain_is_wrong(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon(domain="git.example.org")
    done = verify(daemon.http_url, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
    assert failed and "announcement" in lines[failed[0]] and "blocked" in lines[failed[0]], lines
    assert f"GRASP_DOMAIN={daemon.domain}" in lines[failed[0] + 1] and "hint" in lines[failed[0] + 1]
    assert any(line.startswith("PASS") and "NIP-09" in line for line in lines)  # it cleans up anyway
    assert "FAILED" in lines[-1]


def test_verify_usage_errors(tmp_path: Path) -> None:
    done = verify("ftp://example.org", tmp_path)
    assert done.returncode == 2 and "not a relay URL" in done.stderr
