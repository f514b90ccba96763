"""GRASP acceptance: which events we store, hold in purgatory, or refuse.

Each rule is a small pure function `(event, view, ctx) -> Verdict | None`; None passes the
event on to the next rule, and `decide` runs them in order (`rules.RULES`). The rules read the world through
`ReadView` only, so they are unit-tested against a dict and the store stays unaware of them.

Choices the protocol leaves open (see grasp-protocol.md, "Which events are accepted"):

- The pubkey blacklist applies to every kind, before anything else. The repository
  blacklist comes next and beats every whitelist: an announcement it names, and every event
  tagging such a repository, is refused; a state counts for no blacklisted repo. The
  repository whitelist, when set, narrows which announcements listing us are hosted; the
  GRASP-05 archive modes (whitelist, all, listed GRASP services) admit announcements that do
  not list us. Entries are `npub`, `npub/identifier` or `identifier` (`lists`).
- Who maintains a repo is `nip34.walk_maintainers` (the ngit v3 model: role tags,
  reciprocal confirmation, stepping down, a bounded walk), judged at `ctx.clock()`, with
  `ctx.walk` as bounds. Nothing here computes maintainers on its own.
- Announcements: accepted when they list us in both `clone` and `relays`, when the archive
  whitelist names them, or (the maintainer exception) when the walk of another announcement
  of the same identifier that is hosted here (lists us, or is whitelisted) names the author
  as confirmed, invited or stepped down, reading the incoming announcement as the author's:
  it is the one that confirms an invitation or records a departure, so it must get in. A
  mirror (an exception announcement) vouches for nobody else. Accepted ones go to the
  purgatory, except an update of an announcement we already serve (its repo is live:
  metadata changes must not make it vanish) and a maintainer-exception announcement hanging
  off a served one (clients need it to resolve the maintainer chain now, and its git data
  is the served repo's).
- States count for every owner whose confirmed set holds the author, the author's own repo
  included, and go to the purgatory (the caller may release them at once when the git data
  is already here). A state that counts for no repo is refused `invalid:` with what is
  missing: the author is only invited (their own announcement must name a maintainer back),
  or stepped down, or not named at all. The author's own repo alone does not count when it
  is only a mirror (their announcement does not list us): otherwise a key that stepped down,
  or was never confirmed, could still publish states here through the chain it hangs off.
- PRs (1618) and PR updates (1619) must name a *served* repository and carry a `c` tip; they
  go to the purgatory. A PR update finds its repository through its root PR (`E`), falling
  back to its own `a` tags.
- GRASP-06 (when on): a PR or PR update those rules refuse is still held when it points at
  its signer's contributor repo here (`contributors`): a `clone` URL
  `/prs/<signer npub>/<identifier>.git` whose identifier is the `d` of a repository it tags.
- Deletions (kind 5) are stored when they name at least one known event or address of their
  own author: deleting is harmless, but storing deletions of nothing would let anyone
  park arbitrary kind-5 events here. A deleted announcement is no longer served, so it
  anchors nothing from then on; what was stored about it earlier stays.
- Ephemeral events are refused: this relay serves a repository graph at rest, not a
  general-purpose fan-out.
- Everything else is stored when it tags, or is tagged by, a *served* event of the repo
  graph. Only served events anchor: an event that tags only held ones (an announcement, a
  state or a PR still waiting for git data) is refused `blocked:` with that reason, not held
  with them. We chose refusing over holding: held events would still take disk for the whole
  purgatory expiry (the junk-announcement attack: announce, never push, publish 128 KB notes
  tagging it), clients learn the reason at once and may send again after the push, and peer
  relays are asked for events tagging a repo only once its announcement is served (see
  `relay/peers/sync.py`). So an announcement that expires in the purgatory leaves nothing
  behind: nothing could rest on it.

The package, by job: `verdict` (what a rule returns, what it may ask the store), `context`
(the settings the rules read), one module per family of rules (`access`: blacklist and
ephemeral; `standalone`: GRASP lists and deletions; `repositories`: announcements and
states; `contributors`: GRASP-06 PRs; `graph`: PRs and everything anchored to the served graph) and `rules` (their order
and `decide`). The names importers use are re-exported here, so `from relay.nostr import
policy` then `policy.decide(...)` reads as before."""

from relay.nostr.policy.access import blacklist_rule, ephemeral_rule, repository_blacklist_rule
from relay.nostr.policy.context import PolicyContext, parse_archive_whitelist
from relay.nostr.policy.graph import WAITING_ANCHOR, graph_rule, pull_request_rule
from relay.nostr.policy.lists import RepoList
from relay.nostr.policy.repositories import announcement_rule, state_rule
from relay.nostr.policy.rules import RULES, Rule, decide
from relay.nostr.policy.standalone import deletion_rule, grasp_list_rule
from relay.nostr.policy.verdict import PURGATORY_MESSAGE, Action, ReadView, Verdict, accept, reject

__all__ = ["PURGATORY_MESSAGE", "RULES", "WAITING_ANCHOR", "Action", "PolicyContext", "ReadView", "RepoList",
           "Rule", "Verdict", "accept", "announcement_rule", "blacklist_rule", "decide", "deletion_rule",
           "ephemeral_rule", "grasp_list_rule", "graph_rule", "parse_archive_whitelist", "pull_request_rule",
           "reject", "repository_blacklist_rule", "state_rule"]
