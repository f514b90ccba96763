"""Settings fail loudly and alike in `check-config` and at the start: a table of bad values,
each run through the real console script both ways (one stderr line naming the setting,
exit 2, no traceback); sizes with units; the start-time warnings (unknown names, a git that
cannot run, a public port that differs from the listening one)."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import values
from tests.daemon import ALICE, console_script, free_port, npub_of

GOOD_NPUB = npub_of(ALICE)
OFF_CURVE_HEX = "f" * 64  # the right shape, but no point on the curve


def _env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    port = free_port()
    env.update(GRASP_BIND=f"127.0.0.1:{port}", GRASP_DOMAIN=f"127.0.0.1:{port}",
               GRASP_DATA_DIR=str(tmp_path / "data"), GRASP_LOG_FORMAT="json", GRASP_SYNC_ENABLED="false")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*console_script(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=30)


# (the setting the one line must name, the environment that is wrong)
BAD: list[tuple[str, dict[str, str]]] = [
    ("GRASP_TRUSTED_PROXIES", {"GRASP_TRUSTED_PROXIES": "10.0.0.300"}),
    ("GRASP_TRUSTED_PROXIES", {"GRASP_TRUSTED_PROXIES": "127.0.0.1, proxy.local"}),
    ("GRASP_BIND", {"GRASP_BIND": "nonsense"}),
    ("GRASP_BIND", {"GRASP_BIND": "10.0.0.300:8080"}),
    ("GRASP_BIND", {"GRASP_BIND": "127.0.0.1:70000"}),
    ("GRASP_DOMAIN", {"GRASP_DOMAIN": "https://git.example.org"}),
    ("GRASP_DOMAIN", {"GRASP_DOMAIN": "git.example.org:99999"}),
    ("GRASP_DOMAIN", {"GRASP_DOMAIN": "git_example!org"}),
    ("GRASP_OWNER_NPUB", {"GRASP_OWNER_NPUB": "npub1notreally"}),
    ("GRASP_OWNER_NPUB", {"GRASP_OWNER_NPUB": OFF_CURVE_HEX}),
    ("GRASP_PUBKEY_BLACKLIST", {"GRASP_PUBKEY_BLACKLIST": f"{GOOD_NPUB},alice"}),
    ("GRASP_ARCHIVE_WHITELIST", {"GRASP_ARCHIVE_WHITELIST": "npub1nope/repo"}),
    ("GRASP_ARCHIVE_WHITELIST", {"GRASP_ARCHIVE_WHITELIST": f"{GOOD_NPUB}/"}),
    ("GRASP_MAX_PUSH_BYTES", {"GRASP_MAX_PUSH_BYTES": "12 parsecs"}),
    ("GRASP_MAX_PUSH_BYTES", {"GRASP_MAX_PUSH_BYTES": "1.5"}),
    ("GRASP_MAX_GZIP_BYTES", {"GRASP_MAX_GZIP_BYTES": "10"}),
    ("GRASP_MAX_MESSAGE_BYTES", {"GRASP_MAX_MESSAGE_BYTES": "0.5KiB"}),
    ("GRASP_NOSTR_REF_PUSH_MAX_BYTES", {"GRASP_NOSTR_REF_PUSH_MAX_BYTES": "lots"}),
    ("GRASP_GIT_BODY_MIN_RATE_BYTES_S", {"GRASP_GIT_BODY_MIN_RATE_BYTES_S": "-1"}),
    ("GRASP_DEFAULT_LIMIT", {"GRASP_DEFAULT_LIMIT": "6000"}),
    ("GRASP_DEFAULT_LIMIT", {"GRASP_MAX_LIMIT": "100"}),
    ("GRASP_SYNC_BACKOFF_BASE_S", {"GRASP_SYNC_BACKOFF_BASE_S": "500"}),
    ("GRASP_MAX_LIMIT", {"GRASP_MAX_LIMIT": "many"}),
    ("GRASP_MAX_CONNECTIONS", {"GRASP_MAX_CONNECTIONS": "0"}),
    ("GRASP_LOG_LEVEL", {"GRASP_LOG_LEVEL": "verbose"}),
    ("GRASP_LOG_FORMAT", {"GRASP_LOG_FORMAT": "xml"}),
    ("GRASP_STORE_SYNCHRONOUS", {"GRASP_STORE_SYNCHRONOUS": "OFF"}),
    ("GRASP_SYNC_ENABLED", {"GRASP_SYNC_ENABLED": "maybe"}),
    ("GRASP_PURGATORY_EXPIRY_S", {"GRASP_PURGATORY_EXPIRY_S": "-5"}),
    ("GRASP_CONFIG_FILE", {"GRASP_CONFIG_FILE": "/nonexistent/grasp-relay.env"}),
    ("GRASP_CONFIG_FILE", {"GRASP_CONFIG_FILE": "{bad_line}"}),
    ("GRASP_MAX_LIMIT", {"GRASP_CONFIG_FILE": "{bad_value}"}),
]


def _materialise(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """Config-file rows name files written here."""
    bad_line = tmp_path / "bad-line.env"
    bad_line.write_text("GRASP_LOG_LEVEL=info\nthis is not an assignment\n")
    bad_value = tmp_path / "bad-value.env"
    bad_value.write_text("# a config file whose value is wrong\nGRASP_MAX_LIMIT=x\n")
    return {k: v.format(bad_line=bad_line, bad_value=bad_value) for k, v in env.items()}


def _one_line_naming(done: subprocess.CompletedProcess[str], setting: str) -> str | None:
    """Why `done` is not the promised failure, or None."""
    lines = done.stderr.strip().splitlines()
    if done.returncode != 2:
        return f"exit {done.returncode}, stderr {done.stderr[-300:]!r}"
    if len(lines) != 1 or "Traceback" in done.stderr + done.stdout:
        return f"not one line: {done.stderr[-500:]!r}"
    if setting not in lines[0]:
        return f"does not name {setting}: {lines[0]!r}"
    return None


def test_every_bad_value_is_one_line_and_exit_2_in_check_config_and_at_start(tmp_path: Path) -> None:
    jobs = []
    for setting, extra in BAD:
        env = _env(tmp_path, _materialise(tmp_path, extra))
        for args in (["check-config"], []):
            jobs.append((setting, extra, args, env))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: _run(job[2], job[3], tmp_path), jobs))
    failures = []
    for (setting, extra, args, _), done in zip(jobs, results, strict=True):
        why = _one_line_naming(done, setting)
        if why is not None:
            failures.append(f"{' '.join(args) or 'serve'} {extra}: {why}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("written, expected", [
    ("64MiB", 64 * 1024**2), ("1 GiB", 1024**3), ("1GB", 10**9), ("100 MiB", 100 * 1024**2),
    ("512k", 512 * 1024), ("65536", 65536), ("1.5GiB", 3 * 1024**3 // 2), (4096, 4096),
])
def test_sizes_take_units(written: object, expected: int) -> None:
    assert values.parse_size(written) == expected


def test_sizes_with_units_reach_the_effective_settings(tmp_path: Path) -> None:
    env = _env(tmp_path, {"GRASP_MAX_PUSH_BYTES": "2 GiB", "GRASP_MAX_GZIP_BYTES": "32MiB",
                          "GRASP_NOSTR_REF_PUSH_MAX_BYTES": "10MB", "GRASP_MAX_MESSAGE_BYTES": "512KiB",
                          "GRASP_GIT_BODY_MIN_RATE_BYTES_S": "8KiB"})
    done = _run(["check-config"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    for line in ("GRASP_MAX_PUSH_BYTES=2147483648", "GRASP_MAX_GZIP_BYTES=33554432",
                 "GRASP_NOSTR_REF_PUSH_MAX_BYTES=10000000", "GRASP_MAX_MESSAGE_BYTES=524288",
                 "GRASP_GIT_BODY_MIN_RATE_BYTES_S=8192"):
        assert line in done.stdout.splitlines()


def test_warnings_at_start_and_in_check_config(tmp_path: Path) -> None:
    """A misspelt name (environment and config file), a git that cannot run and a domain port
    that differs from the bind port: one warning each, the same in check-config (stderr,
    exit 0) and in the daemon's log (JSON lines), and the daemon serves anyway."""
    conf = tmp_path / "relay.env"
    conf.write_text("GRASP_LOG_LEVEL=info\nGRASP_PUBKEY_BLACKLST=x\n")
    port = free_port()
    env = _env(tmp_path, {"GRASP_MAX_PUSH_BYTE": "5", "GRASP_GIT_BINARY": str(tmp_path / "no-git"),
                          "GRASP_BIND": f"127.0.0.1:{port}", "GRASP_DOMAIN": "git.example.org",
                          "GRASP_CONFIG_FILE": str(conf)})
    done = _run(["check-config"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 4, warnings
    assert any("GRASP_MAX_PUSH_BYTE in environment" in w and "GRASP_MAX_PUSH_BYTES?" in w for w in warnings)
    assert any("GRASP_PUBKEY_BLACKLST" in w and str(conf) in w and "GRASP_PUBKEY_BLACKLIST?" in w
               for w in warnings)
    assert any("no-git" in w and "pushes and clones will fail" in w for w in warnings)
    assert any(f"port {port}" in w and "are refused" in w for w in warnings)

    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(console_script(), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        import time
        import urllib.request

        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    events = [line["event"] for line in lines if line.get("level") == "warning"]
    assert sorted(events) == ["git_unusable", "port_mismatch", "unknown_setting", "unknown_setting"], events


def test_no_warnings_for_a_plain_configuration(tmp_path: Path) -> None:
    done = _run(["check-config"], _env(tmp_path, {}), tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_proxy_explains_a_port_difference(tmp_path: Path) -> None:
    env = _env(tmp_path, {"GRASP_DOMAIN": "git.example.org", "GRASP_TRUSTED_PROXIES": "127.0.0.1"})
    done = _run(["check-config"], env, tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
