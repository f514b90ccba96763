"""The bare repositories, `<repos_dir>/<npub>/<identifier>.git`, read and updated with pygit2.

By job: `paths` (names and where a repo lives, the pending area beside it), `git_config`
(the config every repo carries), `refs` (reading and moving one repo's refs, restoring them,
aligning to a state), `objects` (which objects are here, copying between repos, pack
housekeeping), `pending` (the repos where unsigned PR-ref pushes wait), `store` (`RepoStore`,
the object that binds them to one data directory), `errors`. The names importers use are
re-exported here, so `from storage.repos import RepoStore` stays the one way in."""

from storage.repos.errors import BadRepoPath, RepoError
from storage.repos.git_config import REPO_CONFIG
from storage.repos.paths import check_identifier, owner_pubkey, to_npub, validate_identifier
from storage.repos.refs import BRANCH_AND_TAG_PREFIXES
from storage.repos.store import RepoStore

__all__ = ["BRANCH_AND_TAG_PREFIXES", "REPO_CONFIG", "BadRepoPath", "RepoError", "RepoStore", "check_identifier",
           "owner_pubkey", "to_npub", "validate_identifier"]
