"""The command line's own conventions (help asked for goes to stdout, --version) and NIP-11
leaving out optional fields the operator did not set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from config import Settings
from relay import __version__
from relay.nostr.nip11 import relay_information
from tests.daemon import ALICE, console_script, npub_of, pubkey_of


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    return subprocess.run([*console_script(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=False)


def test_help_is_output_on_stdout(tmp_path: Path) -> None:
    for args in (["--help"], ["-h"], ["help"], ["serve", "--help"], ["check-config", "--help"]):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)
        assert "usage: grasp-relay" in done.stdout and "backup DEST" in done.stdout
    for args in (["integrity-check", "--help"], ["backup", "--help"]):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.startswith("usage: grasp-relay"), args


def test_version(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        done = run(flag, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout == f"grasp-relay {__version__}\n"


def test_unknown_command_is_a_usage_error_on_stderr(tmp_path: Path) -> None:
    done = run("serv", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == "" and "unknown command 'serv'" in done.stderr


def test_nip11_leaves_out_unset_optional_fields() -> None:
    bare = relay_information(Settings(_env_file=None))  # type: ignore[call-arg]
    assert "pubkey" not in bare and "contact" not in bare
    assert bare["name"] and bare["limitation"]["max_limit"] == 5000
    named = relay_information(Settings(_env_file=None, owner_npub=npub_of(ALICE),  # type: ignore[call-arg]
                                       relay_contact="mailto:ops@example.org"))
    assert named["pubkey"] == pubkey_of(ALICE) and named["contact"] == "mailto:ops@example.org"
