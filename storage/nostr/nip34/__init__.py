"""NIP-34 facts as pure functions: kinds, coordinates, tag readers, the maintainer model
(ngit v3: role tags, reciprocal confirmation, a bounded walk) and "does this URL point at us".

No I/O here, so the acceptance policy, the push authoriser and the purgatory can share one
reading of the spec and it is unit-tested in isolation.

The package, by job: `kinds` (event kinds and the sets of them), `refs` (object ids, ref
namespaces, a state's refs), `keys` (npub and hex pubkeys), `coordinates` (identifiers and
`kind:pubkey:d`), `tags` (the tag readers), `maintainership` (role tags and the maintainer
walk), `urls` (clone and relay URLs naming this service). Every public name is re-exported
here: the house reads NIP-34 as one namespace (`from storage.nostr import nip34`, then
`nip34.ANNOUNCEMENT`, `nip34.walk_maintainers(...)`), and the submodules import each other
by full name, never through this file."""

from storage.nostr.nip34.coordinates import MAX_IDENTIFIER_BYTES, identifier_problem, parse_coordinate, repo_coordinate
from storage.nostr.nip34.keys import hex_to_npub, npub_to_hex, pubkey_from_operator_value
from storage.nostr.nip34.kinds import (
                                       ANNOUNCEMENT,
                                       COMMENT,
                                       DELETION,
                                       GIT_DATA_KINDS,
                                       GRASP_LIST,
                                       ISSUE,
                                       NIP34_KINDS,
                                       PATCH,
                                       PR,
                                       PR_UPDATE,
                                       STATE,
                                       STATUS_APPLIED,
                                       STATUS_CLOSED,
                                       STATUS_DRAFT,
                                       STATUS_KINDS,
                                       STATUS_OPEN,
)
from storage.nostr.nip34.maintainership import (
                                       DEFAULT_WALK_KEYS,
                                       DEFAULT_WALK_ROUNDS,
                                       DEFER,
                                       LEAD,
                                       MAINTAINER,
                                       MODERATOR,
                                       ROLE_TAGS,
                                       Appointments,
                                       Maintainers,
                                       RoleEntry,
                                       Standing,
                                       WalkLimits,
                                       appointments,
                                       maintainer_set,
                                       owners_authorising,
                                       role_entry,
                                       standing,
                                       walk_maintainers,
)
from storage.nostr.nip34.refs import BRANCH_AND_TAG, PR_REF_PREFIX, ZERO_OID, is_oid, state_refs
from storage.nostr.nip34.tags import (
                                       clone_urls,
                                       maintainers,
                                       pr_repo_coordinates,
                                       pr_root,
                                       pr_tip,
                                       relay_urls,
                                       state_identifier,
)
from storage.nostr.nip34.urls import announcement_lists_us, is_our_clone_url, is_our_relay_url, service_urls_match

__all__ = [
    # kinds
    "ANNOUNCEMENT", "COMMENT", "DELETION", "GIT_DATA_KINDS", "GRASP_LIST", "ISSUE", "NIP34_KINDS", "PATCH", "PR",
    "PR_UPDATE", "STATE", "STATUS_APPLIED", "STATUS_CLOSED", "STATUS_DRAFT", "STATUS_KINDS", "STATUS_OPEN",
    # refs
    "BRANCH_AND_TAG", "PR_REF_PREFIX", "ZERO_OID", "is_oid", "state_refs",
    # keys
    "hex_to_npub", "npub_to_hex", "pubkey_from_operator_value",
    # coordinates
    "MAX_IDENTIFIER_BYTES", "identifier_problem", "parse_coordinate", "repo_coordinate",
    # tags
    "clone_urls", "maintainers", "pr_repo_coordinates", "pr_root", "pr_tip", "relay_urls", "state_identifier",
    # maintainership
    "DEFAULT_WALK_KEYS", "DEFAULT_WALK_ROUNDS", "DEFER", "LEAD", "MAINTAINER", "MODERATOR", "ROLE_TAGS",
    "Appointments", "Maintainers", "RoleEntry", "Standing", "WalkLimits", "appointments", "maintainer_set",
    "owners_authorising", "role_entry", "standing", "walk_maintainers",
    # urls
    "announcement_lists_us", "is_our_clone_url", "is_our_relay_url", "service_urls_match",
]
