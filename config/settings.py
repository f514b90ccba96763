"""The one settings model. Every timing and limit of the daemon lives here so that
operators can tune it through `GRASP_*` environment variables or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config import values

StrList = Annotated[list[str], NoDecode]


def _split_list(value: object) -> object:
    """Accept comma- or whitespace-separated strings for list settings, as env vars are flat."""
    if isinstance(value, str):
        return [item for item in value.replace(",", " ").split() if item]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRASP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- service identity -------------------------------------------------------------
    domain: str = Field("127.0.0.1:8080", description="public host[:port] in clone/relays URLs")
    bind: str = Field("127.0.0.1:8080", description="listen address host:port")
    data_dir: Path = Path("./data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # --- NIP-11 -------------------------------------------------------------------------
    relay_name: str = "grasp-relay"
    relay_description: str = "A GRASP relay: git repositories authorised by signed Nostr events"
    owner_npub: str = ""
    relay_contact: str = ""

    # --- relay limits (advertised in NIP-11 `limitation`) -------------------------------
    max_message_bytes: int = Field(256 * 1024, ge=1024)
    max_subscriptions: int = Field(50, ge=1)
    max_filters: int = Field(20, ge=1)
    max_limit: int = Field(5000, ge=1)
    default_limit: int = Field(500, ge=1)
    max_event_tags: int = Field(2500, ge=1)
    max_content_bytes: int = Field(128 * 1024, ge=1)
    max_created_at_future_s: int = Field(900, ge=0)
    max_subid_length: int = Field(256, ge=1)
    ws_compression: bool = Field(
        False, description="permessage-deflate; costs about a third of the CPU of sending events"
    )

    # --- store --------------------------------------------------------------------------
    store_batch_max: int = Field(500, ge=1, description="events per write transaction")
    store_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite synchronous mode; NORMAL survives kill -9, FULL also power loss"
    )
    store_read_threads: int = Field(2, ge=1, description="threads (connections) serving REQ queries")
    store_background_read_threads: int = Field(
        1, ge=1, description="threads (connections) for the purgatory's reads, apart from clients' REQs")
    store_view_cache_entries: int = Field(
        4096, ge=0, description="identifiers whose announcements and states are kept in memory for the "
        "acceptance policy and the purgatory (0: none)")

    # --- curation (GRASP-05 archive and operator lists) ---------------------------------
    archive_whitelist: StrList = Field(
        default_factory=list, description="GRASP-05: archive these repositories although they do not list "
        "us (npub, npub/identifier or identifier entries)")
    archive_all: bool = Field(False, description="GRASP-05: archive every announcement, listing us or not")
    archive_grasp_services: StrList = Field(
        default_factory=list, description="GRASP-05: archive announcements whose clone URLs name one of these "
        "GRASP services (host[:port])")
    archive_read_only: bool = Field(
        True, description="archived repositories (those not listing us) refuse pushes: their data comes only by "
        "sync (only matters while an archive mode is on)")
    pubkey_blacklist: StrList = Field(
        default_factory=list, description="authors whose events are refused, every kind (npub or hex)")
    repository_whitelist: StrList = Field(
        default_factory=list, description="when set, host only these of the repositories that list us "
        "(npub, npub/identifier or identifier entries)")
    repository_blacklist: StrList = Field(
        default_factory=list, description="never host or archive these repositories, nor store events tagging "
        "them; beats every whitelist (npub, npub/identifier or identifier entries)")

    # --- GRASP-06: contributor repos at /prs/<npub>/<identifier>.git --------------------
    grasp06_enabled: bool = Field(
        False, description="serve /prs/<npub>/<identifier>.git: anyone may push a PR's tip there as "
        "refs/nostr/<event-id>, served once the PR event naming it is released")

    # --- who speaks for a repository (NIP-11 `limitation`) -----------------------------
    maintainer_walk_max_rounds: int = Field(
        6, ge=1, le=100, description="levels of maintainer appointment read from a repo's owner "
        "(the walk runs on unauthenticated requests)")
    maintainer_walk_max_keys: int = Field(
        64, ge=1, le=10000, description="distinct keys the maintainer walk considers, the owner included")

    # --- purgatory and sync -------------------------------------------------------------
    purgatory_expiry_s: float = Field(1800, gt=0)
    purgatory_sweep_s: float = Field(5, gt=0, description="how often expiry is checked")
    purgatory_expired_memory_s: float = Field(
        7 * 86400, gt=0, description="how long an expired event's id is remembered (and the "
        "event refused when it comes again)")
    purgatory_intake_concurrency: int = Field(
        8, ge=1, description="events entering the purgatory processed at once"
    )
    sync_enabled: bool = True
    sync_user_delay_s: float = Field(180, ge=0)
    sync_synced_delay_s: float = Field(0.5, ge=0)
    sync_backoff_base_s: float = Field(20, gt=0)
    sync_backoff_max_s: float = Field(120, gt=0)
    sync_max_concurrent: int = Field(32, ge=1, description="identifier sync tasks at once")
    sync_process_concurrency: int = Field(
        2, ge=1, description="releases after fetches processed at once (keeps the event loop responsive)"
    )
    throttle_max_concurrent: int = Field(5, ge=1)
    throttle_max_per_minute: int = Field(30, ge=1)
    throttle_window_s: float = Field(60, gt=0)
    fetch_timeout_s: float = Field(120, gt=0)
    fetch_cooloff_s: float = Field(60, ge=0, description="pause for a domain after a network failure")
    served_data_check_s: float = Field(
        3600, gt=0, description="how often served repos are checked for their state's objects (GRASP-02: "
        "missing git data is pulled from the other clone URLs at least hourly)")
    served_data_check_max_repos: int = Field(
        10_000, ge=1, description="repos one such round looks at; the next round continues where it stopped")
    served_data_max_gaps: int = Field(
        256, ge=1, description="served repos lacking objects remembered (and synced) at once")
    outbound_allow_private: bool = Field(
        False, description="let fetches and peer relays reach loopback/private addresses (dev, tests)"
    )

    # --- GRASP-02: events from the other relays announcements name ---------------------
    peer_sync_enabled: bool = True
    peer_refresh_s: float = Field(60, gt=0, description="how often the set of peer relays is re-planned")
    peer_backoff_s: float = Field(
        30, gt=0, description="first pause before reconnecting to a failed peer; doubles per failure, with jitter")
    peer_backoff_max_s: float = Field(3600, gt=0, description="longest pause between reconnections")
    peer_cooloff_s: float = Field(
        300, ge=0, description="pause after a peer answered rate-limited: (NOTICE, CLOSED or NEG-ERR)")
    peer_park_s: float = Field(
        6 * 3600, ge=0, description="pause after a peer failed DNS, TLS or the websocket handshake, or was "
        "refused by the outbound check")
    peer_full_sync_s: float = Field(
        86400, gt=0, description="how often everything is reconciled with a peer afresh, not only since the "
        "newest event it gave")
    peer_since_overlap_s: int = Field(
        60, ge=0, description="live subscriptions and reconnects ask from the newest stored event minus this")
    peer_filter_values: int = Field(100, ge=1, le=10000, description="values (#d, #a, #e, ids ...) per filter")
    peer_filters_per_req: int = Field(10, ge=1, description="filters per live REQ sent to a peer")
    peer_live_max_reqs: int = Field(20, ge=1, description="live REQs open per peer, below its max_subscriptions")
    peer_req_page_limit: int = Field(
        500, ge=1, description="limit of each REQ page when a peer without NIP-77 is paged by until")
    peer_request_timeout_s: float = Field(30, gt=0, description="a peer's silence while a REQ is answered")
    peer_negentropy_timeout_s: float = Field(
        10, gt=0, description="no answer to NEG-OPEN in this long: the peer is taken not to speak NIP-77")
    peer_replan_delay_s: float = Field(
        1, ge=0, description="wait after a stored announcement or root before re-planning (gathers a burst)")
    peer_max_roots: int = Field(
        10000, ge=0, description="served root events (issues, patches, PRs) whose conversations are asked for")
    peer_retry_max_entries: int = Field(
        1000, ge=0, description="events refused for want of a parent kept for a retry")
    peer_retry_max_bytes: int = Field(4 * 1024**2, ge=0, description="their JSON, in all")
    peer_retry_ttl_s: float = Field(600, gt=0, description="how long such an event waits for its parent")
    peer_metrics_max_peers: int = Field(
        50, ge=0, description="peers with their own metric label; the rest are counted as other")
    sync_bootstrap_relays: StrList = Field(
        default_factory=list, description="relays followed for every repository, besides the announced ones")
    peer_connect_timeout_s: float = Field(10, gt=0)
    max_peer_relays: int = Field(50, ge=0)

    # --- git ----------------------------------------------------------------------------
    max_push_bytes: int = Field(1024**3, ge=1024)
    max_gzip_bytes: int = Field(64 * 1024**2, ge=1024, description="decoded size cap of gzip bodies")
    git_binary: str = "git"
    git_body_idle_timeout_s: float = Field(
        60, gt=0, description="give up on a git request body that sends nothing for this long")
    git_body_deadline_s: float = Field(
        1800, gt=0, description="a git request body must be complete within this long, whatever its pace")
    git_body_min_rate_bytes_s: int = Field(
        16 * 1024, ge=0, description="slowest average pace a git request body may keep after the grace "
        "period (0: no minimum)")
    git_body_min_rate_grace_s: float = Field(
        30, ge=0, description="time a body may take before its average pace is checked")
    integrity_check_on_start: bool = Field(
        True, description="compare every served repo's refs with its signed state once after start")
    integrity_repair_on_start: bool = Field(
        True, description="and align those that differ (off: only report)")

    # --- operations ---------------------------------------------------------------------
    metrics_enabled: bool = True
    shutdown_timeout_s: float = Field(20, ge=0)
    max_connections: int = Field(2000, ge=1)
    max_connections_per_ip: int = Field(100, ge=1)
    events_per_minute_per_conn: int = Field(1200, ge=1)
    events_per_minute_per_ip: int = Field(3000, ge=1)
    reqs_per_minute_per_conn: int = Field(600, ge=1)
    nostr_ref_pushes_per_ip_per_hour: int = Field(60, ge=1)
    nostr_ref_push_max_bytes: int = Field(100 * 1024**2, ge=1024)
    trusted_proxies: StrList = Field(default_factory=list)
    config_file: Path | None = Field(
        None, description="a GRASP_NAME=value file read at start and again on SIGHUP (the reloadable "
        "settings take effect without a restart)")
    access_log: bool = Field(
        False, description="log every HTTP request and websocket upgrade with the client address")

    # --- hostile clients: budgets and bounds
    outbox_max_bytes: int = Field(
        4 * 1024**2, ge=64 * 1024, description="bytes of frames one websocket may have waiting to be "
        "written; a REQ's results are cut there (CLOSED error), a live subscription that overflows is closed")
    outbox_total_max_bytes: int = Field(
        256 * 1024**2, ge=1024**2, description="bytes of frames all websockets together may have waiting")
    outbox_stall_s: float = Field(
        30, gt=0, description="a client whose outbox stays full (not drained to half its budget) this "
        "long is dropped")
    query_budget_s: float = Field(
        0.5, gt=0, description="wall time one REQ or COUNT may hold a store reader; past it the query is "
        "interrupted and answered CLOSED error")

    # --- web view: the work one page may do ----------------------------------------------
    web_repos_per_page: int = Field(50, ge=1, le=1000, description="repositories per landing page")
    web_repos_scan_max: int = Field(
        5000, ge=1, description="served announcements (and states) the landing page reads to order and filter")
    web_log_commits: int = Field(50, ge=1, le=1000, description="commits per log page")
    web_log_max_offset: int = Field(10000, ge=0, description="deepest ?ofs= a log page walks to")
    web_summary_commits: int = Field(10, ge=0, le=100, description="latest commits on a summary page")
    web_tree_max_entries: int = Field(1000, ge=1, description="entries one tree page (or refs page) lists")
    web_blob_max_bytes: int = Field(1024**2, ge=1024, description="largest blob shown inline (larger: raw only)")
    web_highlight_max_bytes: int = Field(
        128 * 1024, ge=0, description="largest blob syntax-highlighted (larger ones are shown plain)")
    web_raw_max_bytes: int = Field(16 * 1024**2, ge=1024, description="largest blob a raw download serves")
    web_readme_max_bytes: int = Field(256 * 1024, ge=1024, description="largest README rendered on a summary")
    web_diff_max_bytes: int = Field(512 * 1024, ge=1024, description="patch text one commit page shows")
    web_diff_max_files: int = Field(300, ge=1, description="files one commit page diffs")
    web_reach_max_commits: int = Field(
        50000, ge=1, description="commits walked from the branch and tag tips to check a commit id is served")
    web_reach_cache_repos: int = Field(
        8, ge=0, description="repos kept open per worker thread, and whose served commit sets stay in memory")
    web_events_max: int = Field(200, ge=1, le=5000, description="issues or PRs one page lists")
    web_cache_max_age_s: int = Field(60, ge=0, description="Cache-Control max-age of pages named by a ref")
    web_render_concurrency: int = Field(4, ge=1, description="pages read from git at once (threads)")

    # --- NIP-77 negentropy (advertised in NIP-11 `limitation`) --------------------------
    negentropy_enabled: bool = Field(True, description="answer NEG-OPEN (NIP-77 set reconciliation)")
    negentropy_max_records: int = Field(
        100_000, ge=1, description="served events one NEG-OPEN filter may match; past it NEG-ERR blocked")
    negentropy_frame_max_bytes: int = Field(
        64 * 1024, ge=4096, le=16 * 1024**2, description="largest negentropy message the relay sends, before "
        "hex (the NEG-MSG frame is about twice this); a longer answer ends early and the client continues")
    negentropy_max_sessions: int = Field(
        8, ge=1, description="NEG-OPEN sessions one connection may have open at once")
    negentropy_total_max_records: int = Field(
        2_000_000, ge=1, description="items all open negentropy sessions together may keep (40 bytes each); "
        "past it a NEG-OPEN gets NEG-ERR blocked")
    negentropy_idle_s: float = Field(
        60, gt=0, description="a negentropy session with no NEG-MSG for this long is closed (NEG-ERR closed)")
    negentropy_query_budget_s: float = Field(
        2, gt=0, description="wall time the read of a NEG-OPEN's items may hold a store reader")

    @field_validator("archive_whitelist", "archive_grasp_services", "pubkey_blacklist", "repository_whitelist",
                     "repository_blacklist", "trusted_proxies", "sync_bootstrap_relays", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @model_validator(mode="before")
    @classmethod
    def _sizes(cls, data: Any) -> Any:
        """Every byte-size setting (named *_bytes or *_bytes_s) takes units: 64MiB, 1GiB."""
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(name, str) and (name.endswith("_bytes") or name.endswith("_bytes_s")):
                    try:
                        data[name] = values.parse_size(value)
                    except ValueError as exc:  # no field location here: name the setting
                        raise ValueError(f"GRASP_{name.upper()}: {exc}") from None
        return data

    @field_validator("config_file", mode="before")
    @classmethod
    def _no_file(cls, value: object) -> object:
        """An empty GRASP_CONFIG_FILE= means none, not the working directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [values.check_network(entry) for entry in value]

    @field_validator("sync_bootstrap_relays")
    @classmethod
    def _relays(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not entry.startswith(("ws://", "wss://")):
                raise ValueError(f"{entry[:100]!r} is not a ws:// or wss:// relay URL")
        return value

    @field_validator("pubkey_blacklist")
    @classmethod
    def _pubkeys(cls, value: list[str]) -> list[str]:
        return [values.check_pubkey(entry) for entry in value]

    @field_validator("archive_whitelist", "repository_whitelist", "repository_blacklist")
    @classmethod
    def _archive(cls, value: list[str]) -> list[str]:
        return [values.check_archive_entry(entry) for entry in value]

    @field_validator("archive_grasp_services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        return [values.check_domain(entry) for entry in value]

    @property
    def archiving(self) -> bool:
        """Is a GRASP-05 archive mode on (repositories that do not list us are accepted)?"""
        return bool(self.archive_all or self.archive_whitelist or self.archive_grasp_services)

    @field_validator("owner_npub")
    @classmethod
    def _owner(cls, value: str) -> str:
        return values.check_pubkey(value) if value.strip() else ""

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        """Rules between settings; the message starts with the setting to change."""
        if self.default_limit > self.max_limit:
            raise ValueError(f"GRASP_DEFAULT_LIMIT: {self.default_limit} is above GRASP_MAX_LIMIT "
                             f"({self.max_limit}), the cap on any filter's limit")
        if self.sync_backoff_base_s > self.sync_backoff_max_s:
            raise ValueError(f"GRASP_SYNC_BACKOFF_BASE_S: {self.sync_backoff_base_s:g} is above "
                             f"GRASP_SYNC_BACKOFF_MAX_S ({self.sync_backoff_max_s:g})")
        if self.peer_backoff_s > self.peer_backoff_max_s:
            raise ValueError(f"GRASP_PEER_BACKOFF_S: {self.peer_backoff_s:g} is above "
                             f"GRASP_PEER_BACKOFF_MAX_S ({self.peer_backoff_max_s:g})")
        if self.negentropy_max_records > self.negentropy_total_max_records:
            raise ValueError(f"GRASP_NEGENTROPY_MAX_RECORDS: {self.negentropy_max_records} is above "
                             f"GRASP_NEGENTROPY_TOTAL_MAX_RECORDS ({self.negentropy_total_max_records})")
        return self

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("store_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        return values.check_bind(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return values.check_domain(value)

    @property
    def bind_host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def bind_port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def db_path(self) -> Path:
        return self.data_dir / "events.sqlite3"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def spool_dir(self) -> Path:
        """Push bodies are received here in full before their repo is locked."""
        return self.data_dir / "spool"

    @property
    def prs_dir(self) -> Path:
        """GRASP-06 contributor repos: only refs/nostr refs whose PR event was released."""
        return self.data_dir / "prs"

    @property
    def prs_pending_dir(self) -> Path:
        """refs/nostr pushes to /prs/ wait here, never served, until a PR event claims them."""
        return self.data_dir / "prs-pending"

    @property
    def prs_empty_repo(self) -> Path:
        """One empty bare repo answering every /prs/ path that holds nothing yet."""
        return self.data_dir / "prs-empty.git"

    @property
    def pending_dir(self) -> Path:
        """refs/nostr pushes wait here, never served, until a PR event claims them."""
        return self.data_dir / "pending"
