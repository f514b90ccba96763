"""The label values metrics may take: bounded sets, so that an attacker choosing event kinds
or announcing clone URLs on random hosts cannot grow the series count, and no label ever
holds an IP address or a pubkey."""

from __future__ import annotations

from typing import Literal

from storage.nostr.nip34 import NIP34_KINDS

# NIP-34 kinds (and the NIP-22 comments / NIP-09 deletions that ride along with them) get
# their own label value; every other kind is counted as "other".
KNOWN_KINDS: frozenset[int] = NIP34_KINDS
OTHER = "other"

# NIP-01 machine-readable prefixes of OK/CLOSED messages.
REASON_PREFIXES: frozenset[str] = frozenset(
    {"duplicate", "pow", "blocked", "rate-limited", "invalid", "restricted", "mute", "error",
     "auth-required", "unsupported"}
)

PurgatoryOutcome = Literal["held", "released", "expired"]
GitService = Literal["upload-pack", "receive-pack"]
GIT_SERVICES: frozenset[str] = frozenset({"upload-pack", "receive-pack"})
PURGATORY_OUTCOMES: frozenset[str] = frozenset({"held", "released", "expired"})
INTEGRITY_KINDS: frozenset[str] = frozenset({"unsigned", "moved", "missing", "head"})
#: which budget a client ran out of, and what the relay did about it (relay/nostr/websocket.py)
BUDGETS: frozenset[str] = frozenset({"outbox", "outbox_total", "query"})
BUDGET_ACTIONS: frozenset[str] = frozenset({"req_closed", "count_closed", "subscription_closed",
                                            "connection_dropped"})

DEFAULT_MAX_DOMAINS = 200
DEFAULT_MAX_PEERS = 50
#: GRASP-02 peer relays (relay/peers/): what became of an event a peer sent, how history came
PEER_EVENT_OUTCOMES: frozenset[str] = frozenset({"accepted", "rejected", "invalid", "deferred"})
PEER_HISTORY_METHODS: frozenset[str] = frozenset({"negentropy", "req"})
PEER_STATES: tuple[str, ...] = ("ok", "backoff", "cooling", "parked")
DISABLED_BODY = b"# metrics disabled (GRASP_METRICS_ENABLED=false)\n"
DISABLED_CONTENT_TYPE = "text/plain; charset=utf-8"

REQ_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def kind_label(kind: int) -> str:
    return str(kind) if kind in KNOWN_KINDS else OTHER


def reason_label(reason: str) -> str:
    """Accept either a bare prefix ("blocked") or a whole OK message ("blocked: no repo")."""
    prefix = reason.split(":", 1)[0].strip().lower()
    return prefix if prefix in REASON_PREFIXES else OTHER
