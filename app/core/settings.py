"""The one settings object, read from the environment (and a `.env` file under it) once at start-up.

Variable names are the ones the previous services' users already set (PORT, DATABASE_URL, BUFFER_SIZE, ...).
Nothing else in the code base reads os.environ: components receive the values they need as arguments.
"""
from __future__ import annotations

import builtins
import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from croniter import croniter

from ingestflow.schemas.events import EVENT_TYPES

from .errors import ConfigError

__all__ = ["Settings", "SecretStr", "KafkaConnection", "read_env_file", "EXAMPLE_SECRETS"]

LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"}
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The secrets published in .env.example (and the role password of its DATABASE_URL): anyone can read them, so
# anything they protect or encrypt is open to all. Refused unless ALLOW_EXAMPLE_SECRETS is set (development).
EXAMPLE_SECRETS = frozenset({
    "dev-app-token-change-me-0123456789", "dev-cron-secret-change-me-0123456789",
    "whsec_dev_change_me_0123456789", "dev-archive-master-key-change-me-0123456789", "ingestflow"})


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

    Its methods `bool`, `str`, `int`, `float` and `list` shadow the builtins inside the class body, so annotations
    after their definitions name the builtins explicitly (`builtins.str`, ...)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def bool(self, name: builtins.str) -> builtins.bool:
        raw = self.env.get(name, "").strip().lower()
        if raw in ("", "0", "false", "no", "off"):
            return False
        if raw in ("1", "true", "yes", "on"):
            return True
        raise ConfigError(name, f"must be 1 or 0 (true or false), got {raw[:16]!r}")

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
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

    def secret(self, name: builtins.str, min_length: builtins.int = 0) -> SecretStr | None:
        value = self.env.get(name, "").strip()
        if not value:
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


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to sign in to them: the one value every Kafka client ingestflow builds
    (gateway, worker, commands) is made from (app/clients/kafka_security.py), so none of them can connect
    with less security than configured."""

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None  # None under SSL: the system's trusted CAs
    ssl_certfile: Path | None = None  # a client certificate, for brokers that require one
    ssl_keyfile: Path | None = None  # its key, when not in ssl_certfile

    @property
    def bootstrap(self) -> str:
        return ",".join(self.bootstrap_servers)

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class Settings:
    # Shared with the previous systems' users.
    port: int = 8787
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    database_url: SecretStr = field(default_factory=lambda: SecretStr(DEFAULT_DATABASE_URL))
    redis_url: SecretStr = field(default_factory=lambda: SecretStr(DEFAULT_REDIS_URL))
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
    body_timeout_s: float = 30.0
    max_batch_items: int = 500
    rate_limit_events_per_min: int = 60
    rate_limit_crawl_per_min: int = 30
    trusted_proxies: tuple[IPNetwork, ...] = ()
    rate_limit_reads_per_min: int = 300
    rate_limit_webhook_per_min: int = 600
    read_cache_s: float = 5.0
    health_cache_s: float = 5.0
    database_acquire_timeout_s: float = 5.0
    spool_max_bytes: int = 1_073_741_824
    kafka_send_timeout_s: float = 5.0
    dedup_retention_days: int = 7
    archive_max_age_s: float = 3600.0
    archive_concurrency: int = 8
    trending_half_life_hours: float = 24.0
    leaderboard_size: int = 100
    audit_retention_days: int = 90
    transfer_log_retention_days: int = 365
    redis_retention_days: int = 35
    # Archive: old master keys that still decrypt archived batches after a key rotation.
    archive_old_keys: tuple[SecretStr, ...] = ()
    # Analytics.
    event_weights: tuple[tuple[str, float], ...] = field(default_factory=lambda: _weights(DEFAULT_EVENT_WEIGHTS))
    leaderboard_refresh_s: float = 30.0
    # Operations: how often each process re-evaluates its readiness for /metrics (ingestflow_ready).
    health_probe_interval_s: float = 10.0
    # `ingestflow run`: a child that crashes more than this many times within the window stops everything.
    run_max_restarts: int = 5
    run_restart_window_s: float = 300.0
    allow_example_secrets: bool = False
    # Worker state and delivery (docs/scaling.md).
    events_partitions: int = 12
    table_memory_mb: int = 128
    table_expiry_interval_s: float = 300.0
    stall_check_s: float = 10.0
    commit_interval_s: float = 1.0

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.event_weights)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, env_file: Path | None = None,
                 required: Iterable[str] = ()) -> Settings:
        """Settings from `env` (default: the process environment) over the values of `env_file` when it
        exists, so a variable set in the environment always wins. `required` names the variables the
        command at hand needs: only those stop start-up when missing."""
        base = os.environ if env is None else env
        e = _Env({**read_env_file(env_file), **base} if env_file is not None and env_file.is_file() else base)
        for name in required:
            if e.optional(name) is None:
                raise ConfigError(name, "is required but not set")
        schedule = e.str("CRON_SCHEDULE", "*/5 * * * *")
        if not schedule.isascii() or not croniter.is_valid(schedule):
            raise ConfigError("CRON_SCHEDULE", f"is not a valid cron expression: {schedule!r}")
        level = e.str("LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(sorted(LOG_LEVELS))}, got {level!r}")
        database_url = e.url("DATABASE_URL", DEFAULT_DATABASE_URL, ("postgres", "postgresql"))
        archive_url = e.str("ARCHIVE_URL", "")
        lighthouse_api_key = e.secret("LIGHTHOUSE_API_KEY")
        if not archive_url:
            archive_url = "lighthouse://" if lighthouse_api_key else "local://data/archive"
        if urlparse(archive_url).scheme not in ("local", "ipfs", "lighthouse", "http", "https"):
            raise ConfigError("ARCHIVE_URL", "must start with local://, ipfs://, or lighthouse://")
        settings = cls(
            port=e.int("PORT", 8787, 0, 65535),
            kafka=_kafka_connection(e),
            database_url=SecretStr(database_url),
            redis_url=SecretStr(e.url("REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix"))),
            ingest_app_token=e.secret("INGEST_APP_TOKEN", min_length=16) or SecretStr(""),
            cron_secret=e.secret("CRON_SECRET", min_length=16) or SecretStr(""),
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
            body_timeout_s=e.float("BODY_TIMEOUT_S", 30.0, 0.1),
            max_batch_items=e.int("MAX_BATCH_ITEMS", 500, 1, 100_000),
            rate_limit_events_per_min=e.int("RATE_LIMIT_EVENTS_PER_MIN", 60, 1),
            rate_limit_crawl_per_min=e.int("RATE_LIMIT_CRAWL_PER_MIN", 30, 1),
            trusted_proxies=_networks("TRUSTED_PROXIES", e.list("TRUSTED_PROXIES")),
            rate_limit_reads_per_min=e.int("RATE_LIMIT_READS_PER_MIN", 300, 1),
            rate_limit_webhook_per_min=e.int("RATE_LIMIT_WEBHOOK_PER_MIN", 600, 1),
            read_cache_s=e.float("READ_CACHE_S", 5.0),
            health_cache_s=e.float("HEALTH_CACHE_S", 5.0),
            database_acquire_timeout_s=e.float("DATABASE_ACQUIRE_TIMEOUT_S", 5.0, 0.1),
            spool_max_bytes=e.int("SPOOL_MAX_BYTES", 1_073_741_824, 1024),
            kafka_send_timeout_s=e.float("KAFKA_SEND_TIMEOUT_S", 5.0, 0.1),
            dedup_retention_days=e.int("DEDUP_RETENTION_DAYS", 7, 1, 365),
            archive_max_age_s=e.float("ARCHIVE_MAX_AGE_S", 3600.0, 1.0),
            archive_concurrency=e.int("ARCHIVE_CONCURRENCY", 8, 1, 256),
            trending_half_life_hours=e.float("TRENDING_HALF_LIFE_HOURS", 24.0, 0.01),
            leaderboard_size=e.int("LEADERBOARD_SIZE", 100, 1, 10_000),
            audit_retention_days=e.int("AUDIT_RETENTION_DAYS", 90, 1),
            transfer_log_retention_days=e.int("TRANSFER_LOG_RETENTION_DAYS", 365, 1),
            redis_retention_days=e.int("REDIS_RETENTION_DAYS", 35, 1),
            archive_old_keys=tuple(SecretStr(k) for k in e.list("ARCHIVE_OLD_KEYS")),
            event_weights=_weights(e.str("EVENT_WEIGHTS", DEFAULT_EVENT_WEIGHTS)),
            leaderboard_refresh_s=e.float("LEADERBOARD_REFRESH_S", 30.0, 0.5),
            health_probe_interval_s=e.float("HEALTH_PROBE_INTERVAL_S", 10.0, 0.5),
            run_max_restarts=e.int("RUN_MAX_RESTARTS", 5, 0, 1000),
            run_restart_window_s=e.float("RUN_RESTART_WINDOW_S", 300.0, 1.0),
            allow_example_secrets=e.bool("ALLOW_EXAMPLE_SECRETS"),
            events_partitions=e.int("EVENTS_PARTITIONS", 12, 1, 1000),
            table_memory_mb=e.int("TABLE_MEMORY_MB", 128, 16, 1_000_000),
            table_expiry_interval_s=e.float("TABLE_EXPIRY_INTERVAL_S", 300.0, 0.1),
            stall_check_s=e.float("STALL_CHECK_S", 10.0, 0.1),
            commit_interval_s=e.float("COMMIT_INTERVAL_S", 1.0, 0.1),
        )
        if not settings.allow_example_secrets:
            for name, value in settings._named_secrets():
                if value in EXAMPLE_SECRETS:
                    raise ConfigError(name, "is the published example value of .env.example, which anyone can "
                                            "read (and decrypt what it protects); set your own (deploy/run.sh "
                                            "generates them into .env), or ALLOW_EXAMPLE_SECRETS=1 in development")
        return settings

    def _named_secrets(self) -> list[tuple[str, str]]:
        named = [("INGEST_APP_TOKEN", self.ingest_app_token), ("CRON_SECRET", self.cron_secret),
                 ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                 ("LIGHTHOUSE_API_KEY", self.lighthouse_api_key),
                 ("LIGHTHOUSE_PRIVATE_KEY", self.lighthouse_private_key),
                 ("KAFKA_SASL_PASSWORD", self.kafka.sasl_password),
                 *(("ARCHIVE_OLD_KEYS", key) for key in self.archive_old_keys)]
        values = [(name, value.get()) for name, value in named if value]
        for name, url in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url)):
            password = urlparse(url.get()).password
            if password:
                values.append((name, unquote(password)))
        return values

    def secrets(self) -> list[str]:
        """Every secret value, as it may appear in text (a URL's password also percent-encoded), for the
        log formatter to mask."""
        values = {value for _, value in self._named_secrets()}
        for url in (self.database_url, self.redis_url):
            password = urlparse(url.get()).password
            if password:
                values.add(password)
        return sorted(values)


def _kafka_connection(e: _Env) -> KafkaConnection:
    """KAFKA_BOOTSTRAP_SERVERS and how to sign in, checked as a whole: a setting the protocol would ignore is
    refused rather than dropped (SASL credentials under SSL, a CA file under SASL_PLAINTEXT: the protocol is
    the likely mistake), and the TLS files are loaded once, so a bad one stops start-up naming its variable
    instead of failing every connection later."""
    brokers = e.list("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", f"entries must be host:port, got {broker!r}")
    if not brokers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", "is empty")
    protocol = e.str("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError("KAFKA_SECURITY_PROTOCOL", f"must be one of {', '.join(KAFKA_PROTOCOLS)}, got {protocol!r}")
    kafka = KafkaConnection(
        bootstrap_servers=brokers, security_protocol=protocol,
        sasl_mechanism=(e.optional("KAFKA_SASL_MECHANISM") or "").upper() or None,
        sasl_username=e.optional("KAFKA_SASL_USERNAME"), sasl_password=e.secret("KAFKA_SASL_PASSWORD"),
        ssl_cafile=_path(e.optional("KAFKA_SSL_CAFILE")), ssl_certfile=_path(e.optional("KAFKA_SSL_CERTFILE")),
        ssl_keyfile=_path(e.optional("KAFKA_SSL_KEYFILE")))
    sasl = {"KAFKA_SASL_MECHANISM": kafka.sasl_mechanism, "KAFKA_SASL_USERNAME": kafka.sasl_username,
            "KAFKA_SASL_PASSWORD": kafka.sasl_password}
    files = {"KAFKA_SSL_CAFILE": kafka.ssl_cafile, "KAFKA_SSL_CERTFILE": kafka.ssl_certfile,
             "KAFKA_SSL_KEYFILE": kafka.ssl_keyfile}
    for group, used, wanted in ((sasl, kafka.uses_sasl, "SASL_PLAINTEXT or SASL_SSL"),
                                (files, kafka.uses_ssl, "SSL or SASL_SSL")):
        for name, value in group.items():
            if value and not used:
                raise ConfigError(name, f"is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use it "
                                        f"(set KAFKA_SECURITY_PROTOCOL to {wanted}, or unset {name})")
    for name, value in sasl.items():
        if kafka.uses_sasl and not value:
            raise ConfigError(name, f"is required with KAFKA_SECURITY_PROTOCOL={protocol}")
    if kafka.sasl_mechanism is not None and kafka.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
        raise ConfigError("KAFKA_SASL_MECHANISM",
                          f"must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, got {kafka.sasl_mechanism!r}")
    if kafka.uses_ssl:
        _check_tls_files(kafka)
    return kafka


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _check_tls_files(kafka: KafkaConnection) -> None:
    """Each TLS file exists and loads: the CA file as trusted certificates, the certificate with its key."""
    for name, path in (("KAFKA_SSL_CAFILE", kafka.ssl_cafile), ("KAFKA_SSL_CERTFILE", kafka.ssl_certfile),
                       ("KAFKA_SSL_KEYFILE", kafka.ssl_keyfile)):
        if path is not None and not path.is_file():
            raise ConfigError(name, f"no such file: {path}")
    if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
        raise ConfigError("KAFKA_SSL_KEYFILE", "is set without KAFKA_SSL_CERTFILE, the certificate it is the key of")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if kafka.ssl_cafile is not None:
        try:
            context.load_verify_locations(cafile=kafka.ssl_cafile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("KAFKA_SSL_CAFILE", f"holds no readable PEM certificate{_reason(exc)}") from None
    if kafka.ssl_certfile is not None:
        try:
            # An encrypted key would make OpenSSL prompt for its passphrase on the terminal: refuse it instead.
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password=lambda: b"")
        except (ssl.SSLError, OSError) as exc:
            name = "KAFKA_SSL_KEYFILE" if kafka.ssl_keyfile is not None else "KAFKA_SSL_CERTFILE"
            raise ConfigError(name, "must hold a PEM certificate and its unencrypted private key (in "
                                    f"KAFKA_SSL_CERTFILE, or the key in KAFKA_SSL_KEYFILE){_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    """OpenSSL's reason (KEY_VALUES_MISMATCH, NO_CERTIFICATE_OR_CRL_FOUND) or the system's, after a colon."""
    reason = (exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror) or ""
    return f": {reason}" if reason else ""


def _networks(name: str, entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR networks (`10.0.0.1`, `10.0.0.0/8`, `::1`), checked once here: a malformed entry
    would otherwise fail every request that reads the client address."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(name, f"entries must be IP addresses or CIDR networks, got {entry[:64]!r}") from None
    return tuple(networks)


def _weights(raw: str) -> tuple[tuple[str, float], ...]:
    """EVENT_WEIGHTS `TYPE=weight,...`: every event type gets a weight (default 0 when not listed)."""
    kinds = EVENT_TYPES
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


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines of a .env file, as a shell reads them: `export ` and `#` comments allowed, values
    optionally in single or double quotes, and ` #...` after an unquoted value is a comment."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise ConfigError(f"{path}:{number}", "must be NAME=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


DEFAULT_EVENT_WEIGHTS = "VIEW=1,COPY=3,SAVE=2,FORK=4,VOTE=2"
DEFAULT_DATABASE_URL = "postgresql://ingestflow@127.0.0.1:5432/ingestflow"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
