"""The event kinds NIP-34 (and the NIP-09 deletions and NIP-22 comments that ride along)
assigns, and the sets of them the relay treats alike: what the purgatory may hold, what
metrics count under their own label."""

DELETION = 5
PATCH = 1617
PR = 1618
PR_UPDATE = 1619
ISSUE = 1621
COMMENT = 1111
STATUS_OPEN = 1630
STATUS_APPLIED = 1631
STATUS_CLOSED = 1632
STATUS_DRAFT = 1633
STATUS_KINDS = frozenset({STATUS_OPEN, STATUS_APPLIED, STATUS_CLOSED, STATUS_DRAFT})
GRASP_LIST = 10317
ANNOUNCEMENT = 30617
STATE = 30618

#: Kinds the purgatory may hold: they promise git data that may not be here yet.
GIT_DATA_KINDS = frozenset({ANNOUNCEMENT, STATE, PR, PR_UPDATE})
#: The kinds metrics count under their own label (NIP-34, with the NIP-22 comments and
#: NIP-09 deletions that ride along); every other kind is "other", so labels stay bounded.
NIP34_KINDS = frozenset({ANNOUNCEMENT, STATE, PATCH, PR, PR_UPDATE, ISSUE, *STATUS_KINDS, GRASP_LIST,
                         COMMENT, DELETION})
