from __future__ import annotations

import pytest

from ingestflow.app.errors import ConfigError
from ingestflow.app.settings import Settings

from ...conftest import BASE_ENV


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env(BASE_ENV)
    assert s.port == 8787
    assert s.buffer_size == 100
    assert s.cron_schedule == "*/5 * * * *"
    assert s.archive_url.startswith("local://")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PORT", "http", "PORT: must be a whole number"),
    ("PORT", "70000", "PORT: must be between 0 and 65535"),
    ("BUFFER_SIZE", "0", "BUFFER_SIZE: must be between 1"),
    ("CRON_SCHEDULE", "every five minutes", "CRON_SCHEDULE: is not a valid cron expression"),
    ("LOG_LEVEL", "chatty", "LOG_LEVEL: must be one of"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: must be a URL with scheme"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS: entries must be host:port"),
    ("INGEST_APP_TOKEN", "short", "INGEST_APP_TOKEN: must be at least 16 characters"),
    ("INGEST_APP_TOKEN", "", "INGEST_APP_TOKEN: is required"),
])
def test_malformed_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, variable: value})
    assert str(info.value).startswith(message)
    assert info.value.variable == variable


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env(BASE_ENV)
    text = repr(s) + str(s)
    for name in ("INGEST_APP_TOKEN", "CRON_SECRET", "STRIPE_WEBHOOK_SECRET", "LIGHTHOUSE_PRIVATE_KEY"):
        assert BASE_ENV[name] not in text
    assert "ingestflow:ingestflow@" not in text


def test_lighthouse_key_selects_the_lighthouse_archive() -> None:
    s = Settings.from_env({**BASE_ENV, "LIGHTHOUSE_API_KEY": "lh-key-0123456789"})
    assert s.archive_url == "lighthouse://"


def test_cli_reports_a_bad_variable_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ingestflow.app import cli
    for k, v in {**BASE_ENV, "BUFFER_SIZE": "lots"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as info:
        cli.main(["migrate"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ingestflow: configuration error: BUFFER_SIZE: must be a whole number, got 'lots'"]
