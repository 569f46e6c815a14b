from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ingestflow.app.core.errors import ConfigError
from ingestflow.app.core.observability import logging_config
from ingestflow.app.core.settings import EXAMPLE_SECRETS, Settings, read_env_file

from ...conftest import BASE_ENV, ROOT
from .conftest import TlsFiles

EXAMPLE = read_env_file(ROOT / ".env.example")


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env(BASE_ENV)
    assert s.port == 8787
    assert s.buffer_size == 100
    assert s.cron_schedule == "*/5 * * * *"
    assert s.archive_url.startswith("local://")
    assert (s.events_partitions, s.table_memory_mb, s.table_expiry_interval_s, s.stall_check_s) == (12, 128, 300.0, 10.0)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PORT", "http", "PORT: must be a whole number"),
    ("PORT", "70000", "PORT: must be between 0 and 65535"),
    ("BUFFER_SIZE", "0", "BUFFER_SIZE: must be between 1"),
    ("CRON_SCHEDULE", "every five minutes", "CRON_SCHEDULE: is not a valid cron expression"),
    ("CRON_SCHEDULE", "*/٥ * * * *", "CRON_SCHEDULE: is not a valid cron expression"),
    ("LOG_LEVEL", "chatty", "LOG_LEVEL: must be one of"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: must be a URL with scheme"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS: entries must be host:port"),
    ("INGEST_APP_TOKEN", "short", "INGEST_APP_TOKEN: must be at least 16 characters"),
    ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal", "TRUSTED_PROXIES: entries must be IP addresses or CIDR"),
    ("TRUSTED_PROXIES", "10.0.0.0/33", "TRUSTED_PROXIES: entries must be IP addresses or CIDR"),
    ("ALLOW_EXAMPLE_SECRETS", "maybe", "ALLOW_EXAMPLE_SECRETS: must be 1 or 0"),
    ("EVENTS_PARTITIONS", "0", "EVENTS_PARTITIONS: must be between 1 and 1000"),
    ("TABLE_MEMORY_MB", "8", "TABLE_MEMORY_MB: must be between 16"),
    ("STALL_CHECK_S", "soon", "STALL_CHECK_S: must be a number"),
])
def test_malformed_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, variable: value})
    assert str(info.value).startswith(message)
    assert info.value.variable == variable


def test_trusted_proxies_are_parsed_into_networks_at_start() -> None:
    s = Settings.from_env({**BASE_ENV, "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7, ::1"})
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env(BASE_ENV)
    text = repr(s) + str(s)
    for name in ("INGEST_APP_TOKEN", "CRON_SECRET", "STRIPE_WEBHOOK_SECRET", "LIGHTHOUSE_PRIVATE_KEY"):
        assert BASE_ENV[name] not in text
    for url in ("DATABASE_URL", "REDIS_URL"):
        password = urlparse(BASE_ENV[url]).password
        assert password and password not in text, f"the password of {url} shows"


def test_lighthouse_key_selects_the_lighthouse_archive() -> None:
    s = Settings.from_env({**BASE_ENV, "LIGHTHOUSE_API_KEY": "lh-key-0123456789"})
    assert s.archive_url == "lighthouse://"


def test_cli_reports_a_bad_variable_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    from ingestflow.app import cli
    monkeypatch.chdir(tmp_path)
    for k, v in {**BASE_ENV, "BUFFER_SIZE": "lots"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as info:
        cli.main(["migrate"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ingestflow: configuration error: BUFFER_SIZE: must be a whole number, got 'lots'"]


def test_a_command_requires_only_the_settings_it_uses() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k not in ("INGEST_APP_TOKEN", "CRON_SECRET")}
    assert not Settings.from_env(env).ingest_app_token  # `migrate` needs no token
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, required=("INGEST_APP_TOKEN", "CRON_SECRET"))
    assert str(info.value) == "INGEST_APP_TOKEN: is required but not set"


def test_env_example_lists_every_setting() -> None:
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

    Settings.from_env(Recording(BASE_ENV))
    listed = {line.lstrip("# ").split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if "=" in line.lstrip("# ").split(" ", 1)[0]}
    assert read - listed == set(), "settings missing from .env.example"
    assert listed - read == set(), ".env.example lists variables nothing reads"


@pytest.mark.parametrize("name", ["INGEST_APP_TOKEN", "CRON_SECRET", "STRIPE_WEBHOOK_SECRET",
                                  "LIGHTHOUSE_PRIVATE_KEY", "DATABASE_URL", "ARCHIVE_OLD_KEYS"])
def test_published_example_secrets_are_refused_outside_development(name: str) -> None:
    value = EXAMPLE.get(name) or EXAMPLE["LIGHTHOUSE_PRIVATE_KEY"]  # ARCHIVE_OLD_KEYS: a former example key
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, name: value})
    assert info.value.variable == name and "published example value" in str(info.value)
    assert value not in str(info.value)
    assert Settings.from_env({**BASE_ENV, name: value, "ALLOW_EXAMPLE_SECRETS": "1"})


def test_every_secret_of_env_example_is_a_known_published_one() -> None:
    for name in ("INGEST_APP_TOKEN", "CRON_SECRET", "STRIPE_WEBHOOK_SECRET", "LIGHTHOUSE_PRIVATE_KEY"):
        assert EXAMPLE[name] in EXAMPLE_SECRETS, name
    assert urlparse(EXAMPLE["DATABASE_URL"]).password in EXAMPLE_SECRETS


def test_env_file_is_read_under_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# settings\nexport PORT=9000\nCRON_SCHEDULE="0 * * * *"\nBUFFER_SIZE=7   # a comment\n'
                        "LOG_LEVEL='DEBUG'\n")
    s = Settings.from_env({**BASE_ENV, "PORT": "9100"}, env_file=env_file)
    assert (s.port, s.cron_schedule, s.buffer_size, s.log_level) == (9100, "0 * * * *", 7, "DEBUG")
    assert Settings.from_env(BASE_ENV, env_file=tmp_path / "missing").port == 8787
    env_file.write_text("PORT 9000\n")
    with pytest.raises(ConfigError, match=r"\.env:1: must be NAME=value"):
        Settings.from_env(BASE_ENV, env_file=env_file)


def test_logs_mask_old_archive_keys_and_the_passwords_in_urls(capsys: pytest.CaptureFixture[str]) -> None:
    old_key = "former-archive-master-key-0123456789"
    s = Settings.from_env({**BASE_ENV, "ARCHIVE_OLD_KEYS": old_key,
                           "DATABASE_URL": "postgresql://ingestflow:p%40ss-w0rd-1234@127.0.0.1:5432/ingestflow"})
    logging.config.dictConfig(logging_config("INFO", s.secrets()))
    try:
        logging.getLogger("ingestflow.test").warning("keys %s; dsn %s; redis %s; decoded p@ss-w0rd-1234", old_key,
                                                     s.database_url.get(), s.redis_url.get())
        err = capsys.readouterr().err
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    redis_password = urlparse(BASE_ENV["REDIS_URL"]).password
    assert redis_password
    for secret in (old_key, "p%40ss-w0rd-1234", "p@ss-w0rd-1234", redis_password):
        assert secret not in err, secret
    assert "***" in err


SASL_SSL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "ingestflow", "KAFKA_SASL_PASSWORD": "kafka-password-0123456789"}


def test_kafka_defaults_to_plaintext_without_credentials() -> None:
    kafka = Settings.from_env(BASE_ENV).kafka
    assert (kafka.security_protocol, kafka.uses_ssl, kafka.uses_sasl) == ("PLAINTEXT", False, False)
    assert kafka.bootstrap == BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]


def test_kafka_sasl_ssl_settings_are_read_and_the_password_never_shows(tls_files: TlsFiles,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    s = Settings.from_env({**BASE_ENV, **SASL_SSL, "KAFKA_SSL_CAFILE": str(tls_files.ca)})
    kafka = s.kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == \
        ("SASL_SSL", "SCRAM-SHA-512", "ingestflow")
    assert kafka.sasl_password is not None and kafka.sasl_password.get() == SASL_SSL["KAFKA_SASL_PASSWORD"]
    assert kafka.ssl_cafile == tls_files.ca
    assert SASL_SSL["KAFKA_SASL_PASSWORD"] not in repr(s) + str(s)
    assert SASL_SSL["KAFKA_SASL_PASSWORD"] in s.secrets()
    logging.config.dictConfig(logging_config("INFO", s.secrets()))
    try:
        logging.getLogger("ingestflow.test").warning("sasl %s", kafka.sasl_password.get())
        err = capsys.readouterr().err
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert SASL_SSL["KAFKA_SASL_PASSWORD"] not in err and "***" in err


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ("KAFKA_SASL_MECHANISM", "GSSAPI", "must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ("KAFKA_SASL_MECHANISM", "", "is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ("KAFKA_SASL_USERNAME", "", "is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ("KAFKA_SASL_PASSWORD", "", "is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "no such file: /nonexistent/ca.pem"),
])
def test_a_bad_kafka_security_setting_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, **SASL_SSL, variable: value})
    assert info.value.variable == variable and str(info.value) == f"{variable}: {message}"
    assert SASL_SSL["KAFKA_SASL_PASSWORD"] not in str(info.value)


@pytest.mark.parametrize(("protocol", "variable"), [
    ("PLAINTEXT", "KAFKA_SASL_USERNAME"), ("SSL", "KAFKA_SASL_PASSWORD"), ("PLAINTEXT", "KAFKA_SSL_CAFILE"),
    ("SASL_PLAINTEXT", "KAFKA_SSL_CERTFILE")])
def test_a_setting_the_protocol_would_ignore_is_refused(protocol: str, variable: str, tls_files: TlsFiles) -> None:
    """Credentials with no protocol to carry them would otherwise be dropped and the client talk in clear."""
    env = {**BASE_ENV, "KAFKA_SECURITY_PROTOCOL": protocol, variable: str(tls_files.ca)}
    if protocol.startswith("SASL"):
        env.update({k: v for k, v in SASL_SSL.items() if k != "KAFKA_SECURITY_PROTOCOL"})
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    assert f"is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use it" in str(info.value)


@pytest.mark.parametrize(("files", "variable", "message"), [
    ({"KAFKA_SSL_CAFILE": "key"}, "KAFKA_SSL_CAFILE", "holds no readable PEM certificate"),
    ({"KAFKA_SSL_KEYFILE": "key"}, "KAFKA_SSL_KEYFILE", "is set without KAFKA_SSL_CERTFILE"),
    ({"KAFKA_SSL_CERTFILE": "cert"}, "KAFKA_SSL_CERTFILE", "must hold a PEM certificate and its unencrypted"),
    ({"KAFKA_SSL_CERTFILE": "cert", "KAFKA_SSL_KEYFILE": "other_key"}, "KAFKA_SSL_KEYFILE", "must hold a PEM"),
    ({"KAFKA_SSL_CERTFILE": "cert", "KAFKA_SSL_KEYFILE": "encrypted_key"}, "KAFKA_SSL_KEYFILE", "must hold a PEM"),
])
def test_tls_files_that_do_not_load_stop_start_up(files: dict[str, str], variable: str, message: str,
                                                  tls_files: TlsFiles) -> None:
    env = {**BASE_ENV, "KAFKA_SECURITY_PROTOCOL": "SSL",
           **{name: str(getattr(tls_files, attr)) for name, attr in files.items()}}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable and message in str(info.value), str(info.value)


@pytest.mark.parametrize("files", [{"KAFKA_SSL_CERTFILE": "combined"},
                                   {"KAFKA_SSL_CERTFILE": "cert", "KAFKA_SSL_KEYFILE": "key"}])
def test_a_client_certificate_with_its_key_is_accepted(files: dict[str, str], tls_files: TlsFiles) -> None:
    paths = {name: getattr(tls_files, attr) for name, attr in files.items()}
    kafka = Settings.from_env({**BASE_ENV, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tls_files.ca),
                               **{name: str(path) for name, path in paths.items()}}).kafka
    assert kafka.ssl_certfile == paths["KAFKA_SSL_CERTFILE"] and kafka.ssl_keyfile == paths.get("KAFKA_SSL_KEYFILE")
