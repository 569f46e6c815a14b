"""The one settings object, read from the environment once at start-up.

Variable names are the ones the previous services' users already set (PORT, DATABASE_URL, BUFFER_SIZE, ...).
Nothing else in the code base reads os.environ: components receive the values they need as arguments.
"""
from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from croniter import croniter

from .errors import ConfigError

__all__ = ["Settings", "SecretStr"]

LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"}


class SecretStr:
    """Holds a secret so that printing, logging or repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Env:
    """Typed reads of one environment mapping, each failure naming its variable.

    Its methods `str`, `int`, `float` and `list` shadow the builtins inside the class body, so annotations
    after their definitions name the builtins explicitly (`builtins.str`, ...)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(name, "is required but not set")
        return default

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def int(self, name: builtins.str, default: builtins.int, minimum: builtins.int = 0,
            maximum: builtins.int | None = None) -> builtins.int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ConfigError(name, f"must be {bound}, got {value}")
        return value

    def float(self, name: builtins.str, default: builtins.float, minimum: builtins.float = 0.0) -> builtins.float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {value}")
        return value

    def secret(self, name: builtins.str, min_length: builtins.int = 0, required: bool = False) -> SecretStr | None:
        value = self.env.get(name, "").strip()
        if not value:
            if required:
                raise ConfigError(name, "is required but not set")
            return None
        if len(value) < min_length:
            raise ConfigError(name, f"must be at least {min_length} characters long")
        return SecretStr(value)

    def url(self, name: builtins.str, default: builtins.str, schemes: tuple[builtins.str, ...]) -> builtins.str:
        value = self.str(name, default)
        parsed = urlparse(value)
        if parsed.scheme not in schemes:
            raise ConfigError(name, f"must be a URL with scheme {' or '.join(schemes)}, got scheme {parsed.scheme!r}")
        return value

    def list(self, name: builtins.str, default: builtins.str = "") -> tuple[builtins.str, ...]:
        raw = self.env.get(name, default)
        return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    # Shared with the previous systems' users.
    port: int = 8787
    kafka_bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    database_url: SecretStr = field(default_factory=lambda: SecretStr(DEFAULT_DATABASE_URL))
    redis_url: str = "redis://127.0.0.1:6379/0"
    ingest_app_token: SecretStr = field(default_factory=lambda: SecretStr(""))
    cron_secret: SecretStr = field(default_factory=lambda: SecretStr(""))
    stripe_webhook_secret: SecretStr | None = None
    buffer_size: int = 100
    cron_schedule: str = "*/5 * * * *"
    lighthouse_api_key: SecretStr | None = None
    lighthouse_private_key: SecretStr | None = None
    file_buffer_dir: Path = Path("data/spool")
    log_level: str = "INFO"
    # ingestflow's own.
    host: str = "127.0.0.1"
    worker_port: int = 6066
    worker_id: str = "ingestflow"
    table_dir: Path = Path("data/tables")
    archive_url: str = "local://data/archive"
    lighthouse_node_url: str = "https://node.lighthouse.storage"
    lighthouse_gateway_url: str = "https://gateway.lighthouse.storage"
    max_body_bytes: int = 1_048_576
    max_batch_items: int = 500
    rate_limit_events_per_min: int = 60
    rate_limit_crawl_per_min: int = 30
    trusted_proxies: tuple[str, ...] = ()
    spool_max_bytes: int = 1_073_741_824
    kafka_send_timeout_s: float = 5.0
    dedup_retention_days: int = 7
    archive_max_age_s: float = 3600.0
    archive_concurrency: int = 8
    trending_half_life_hours: float = 24.0
    leaderboard_size: int = 100
    metrics_port: int = 0
    audit_retention_days: int = 90
    transfer_log_retention_days: int = 365
    redis_retention_days: int = 35
    # Archive (issue 5): old master keys that still decrypt archived batches after a key rotation.
    archive_old_keys: tuple[SecretStr, ...] = ()
    # Analytics (issue 4).
    event_weights: tuple[tuple[str, float], ...] = (
        ("VIEW", 1.0), ("COPY", 3.0), ("SAVE", 2.0), ("FORK", 4.0), ("VOTE", 2.0))
    leaderboard_refresh_s: float = 30.0

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.event_weights)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = _Env(os.environ if env is None else env)
        schedule = e.str("CRON_SCHEDULE", "*/5 * * * *")
        if not croniter.is_valid(schedule):
            raise ConfigError("CRON_SCHEDULE", f"is not a valid cron expression: {schedule!r}")
        level = e.str("LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(sorted(LOG_LEVELS))}, got {level!r}")
        brokers = e.list("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", f"entries must be host:port, got {broker!r}")
        if not brokers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", "is empty")
        database_url = e.url("DATABASE_URL", DEFAULT_DATABASE_URL, ("postgres", "postgresql"))
        archive_url = e.str("ARCHIVE_URL", "")
        lighthouse_api_key = e.secret("LIGHTHOUSE_API_KEY")
        if not archive_url:
            archive_url = "lighthouse://" if lighthouse_api_key else "local://data/archive"
        if urlparse(archive_url).scheme not in ("local", "ipfs", "lighthouse", "http", "https"):
            raise ConfigError("ARCHIVE_URL", "must start with local://, ipfs://, or lighthouse://")
        return cls(
            port=e.int("PORT", 8787, 0, 65535),
            kafka_bootstrap_servers=brokers,
            database_url=SecretStr(database_url),
            redis_url=e.url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")),
            ingest_app_token=e.secret("INGEST_APP_TOKEN", min_length=16, required=True) or SecretStr(""),
            cron_secret=e.secret("CRON_SECRET", min_length=16, required=True) or SecretStr(""),
            stripe_webhook_secret=e.secret("STRIPE_WEBHOOK_SECRET"),
            buffer_size=e.int("BUFFER_SIZE", 100, 1, 100_000),
            cron_schedule=schedule,
            lighthouse_api_key=lighthouse_api_key,
            lighthouse_private_key=e.secret("LIGHTHOUSE_PRIVATE_KEY", min_length=16),
            file_buffer_dir=Path(e.str("FILE_BUFFER_DIR", "data/spool")),
            log_level="WARNING" if level == "WARN" else level,
            host=e.str("HOST", "127.0.0.1"),
            worker_port=e.int("WORKER_PORT", 6066, 0, 65535),
            worker_id=e.str("WORKER_APP_ID", "ingestflow"),
            table_dir=Path(e.str("TABLE_DIR", "data/tables")),
            archive_url=archive_url,
            lighthouse_node_url=e.url("LIGHTHOUSE_NODE_URL", "https://node.lighthouse.storage", ("http", "https")),
            lighthouse_gateway_url=e.url(
                "LIGHTHOUSE_GATEWAY_URL", "https://gateway.lighthouse.storage", ("http", "https")),
            max_body_bytes=e.int("MAX_BODY_BYTES", 1_048_576, 1024),
            max_batch_items=e.int("MAX_BATCH_ITEMS", 500, 1, 100_000),
            rate_limit_events_per_min=e.int("RATE_LIMIT_EVENTS_PER_MIN", 60, 1),
            rate_limit_crawl_per_min=e.int("RATE_LIMIT_CRAWL_PER_MIN", 30, 1),
            trusted_proxies=e.list("TRUSTED_PROXIES"),
            spool_max_bytes=e.int("SPOOL_MAX_BYTES", 1_073_741_824, 1024),
            kafka_send_timeout_s=e.float("KAFKA_SEND_TIMEOUT_S", 5.0, 0.1),
            dedup_retention_days=e.int("DEDUP_RETENTION_DAYS", 7, 1, 365),
            archive_max_age_s=e.float("ARCHIVE_MAX_AGE_S", 3600.0, 1.0),
            archive_concurrency=e.int("ARCHIVE_CONCURRENCY", 8, 1, 256),
            trending_half_life_hours=e.float("TRENDING_HALF_LIFE_HOURS", 24.0, 0.01),
            leaderboard_size=e.int("LEADERBOARD_SIZE", 100, 1, 10_000),
            metrics_port=e.int("METRICS_PORT", 0, 0, 65535),
            audit_retention_days=e.int("AUDIT_RETENTION_DAYS", 90, 1),
            transfer_log_retention_days=e.int("TRANSFER_LOG_RETENTION_DAYS", 365, 1),
            redis_retention_days=e.int("REDIS_RETENTION_DAYS", 35, 1),
            archive_old_keys=tuple(SecretStr(k) for k in e.list("ARCHIVE_OLD_KEYS")),
            event_weights=_weights(e.str("EVENT_WEIGHTS", "VIEW=1,COPY=3,SAVE=2,FORK=4,VOTE=2")),
            leaderboard_refresh_s=e.float("LEADERBOARD_REFRESH_S", 30.0, 0.5),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(self.kafka_bootstrap_servers)


def _weights(raw: str) -> tuple[tuple[str, float], ...]:
    """EVENT_WEIGHTS `TYPE=weight,...`: every event type gets a weight (default 0 when not listed)."""
    kinds = ("VIEW", "COPY", "SAVE", "FORK", "VOTE")
    found: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip().upper()
        if not sep or name not in kinds:
            raise ConfigError("EVENT_WEIGHTS", f"entries must be TYPE=number with TYPE one of {', '.join(kinds)}, "
                                               f"got {part.strip()!r}")
        try:
            found[name] = float(value)
        except ValueError:
            raise ConfigError("EVENT_WEIGHTS", f"weight of {name} must be a number, got {value!r}") from None
        if found[name] < 0:
            raise ConfigError("EVENT_WEIGHTS", f"weight of {name} must not be negative")
    return tuple((kind, found.get(kind, 0.0)) for kind in kinds)


DEFAULT_DATABASE_URL = "postgresql://ingestflow:ingestflow@127.0.0.1:5432/ingestflow"
