"""The README's worked example, run as written: `deploy/publish_repo.py` (nostr-sdk signs)
publishes an announcement and a state of a repo with a branch, a lightweight tag and an
annotated tag, then pushes; the relay serves exactly those refs, the annotated tag by the
id of its tag object, as `git show-ref --tags` prints it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.daemon import ALICE, Client, npub_of, pubkey_of
from tests.gitutil import GIT_ENV, commit, git, make_repo, remote_refs

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "publish_repo.py"


def publish(daemon, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "NOSTR_SECRET_KEY": ALICE}
    return subprocess.run([sys.executable, str(SCRIPT), "--relay", daemon.ws_url, "--identifier", "example",
                           "--repo", str(work), "--description", "the worked example", *extra],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_publish_script_announces_states_and_pushes_with_annotated_tags(daemon, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", commits=2)
    git("tag", "light", cwd=work)
    git("tag", "-a", "v1.0", "-m", "release", cwd=work)
    done = publish(daemon, work)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = git("show-ref", "--heads", "--tags", cwd=work).stdout.splitlines()
    local = dict(line.split(" ", 1)[::-1] for line in shown)
    url = f"{daemon.http_url}/{npub_of(ALICE)}/example.git"
    served = {n: o for n, o in remote_refs(url).items() if n.startswith(("refs/heads/", "refs/tags/"))
              and not n.endswith("^{}")}
    assert served == local
    assert local["refs/tags/v1.0"] != git("rev-parse", "v1.0^{commit}", cwd=work).stdout.strip()
    client = await Client.connect(daemon.ws_url)
    try:
        (st,) = await client.query({"kinds": [30618], "authors": [pubkey_of(ALICE)]})
        assert ["refs/tags/v1.0", local["refs/tags/v1.0"]] in st["tags"]
        assert ["HEAD", "ref: refs/heads/main"] in st["tags"]
    finally:
        await client.close()
    # after new work, the same command publishes a newer state and pushes it
    tip = commit(work, "more.txt")
    done = publish(daemon, work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert remote_refs(url)["refs/heads/main"] == tip
    assert json.loads(daemon.get("/health")[2])["purgatory"] == {}
