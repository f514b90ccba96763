"""The one settings model. Every timing and limit of the daemon lives here so that
operators can tune it through `GRASP_*` environment variables or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    archive_whitelist: StrList = Field(default_factory=list)
    pubkey_blacklist: StrList = Field(default_factory=list)

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
    outbound_allow_private: bool = Field(
        False, description="let fetches and peer relays reach loopback/private addresses (dev, tests)"
    )

    # --- GRASP-02: events from the other relays announcements name ---------------------
    peer_sync_enabled: bool = True
    peer_refresh_s: float = Field(60, gt=0, description="how often the set of peer relays is re-planned")
    peer_backoff_s: float = Field(30, gt=0, description="pause before reconnecting to a failed peer")
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

    @field_validator("archive_whitelist", "pubkey_blacklist", "trusted_proxies", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

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
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or "/" in value or " " in value:
            raise ValueError("must be a bare host[:port], e.g. git.example.org")
        return value

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
    def pending_dir(self) -> Path:
        """refs/nostr pushes wait here, never served, until a PR event claims them."""
        return self.data_dir / "pending"


class SettingsError(Exception):
    """A one-line, operator-facing description of a bad setting."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's multi-line report into one line naming the
    setting, because operators read this in a journal or `docker logs`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "GRASP_" + "_".join(str(p) for p in first["loc"][:1]).upper()
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None
