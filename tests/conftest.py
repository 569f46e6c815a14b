"""Suite-wide rules: every test runs (a skipped test fails the run), and settings come from one factory."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from ingestflow.app.settings import Settings

# The suite talks to the services deploy/services.sh starts; the same variables move them to other ports
# (KAFKA_PORT, PG_PORT, REDIS_PORT), so a test run can use its own instances.
_KAFKA_PORT = os.environ.get("KAFKA_PORT", "9092")
_PG_PORT = os.environ.get("PG_PORT", "5432")
_REDIS_PORT = os.environ.get("REDIS_PORT", "6379")

BASE_ENV = {
    "INGEST_APP_TOKEN": "test-app-token-0123456789abcdef",
    "CRON_SECRET": "test-cron-secret-0123456789abcdef",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_0123456789abcdef",
    "LIGHTHOUSE_PRIVATE_KEY": "test-archive-master-key-0123456789",
    "DATABASE_URL": f"postgresql://ingestflow:ingestflow@127.0.0.1:{_PG_PORT}/ingestflow_test",
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_KAFKA_PORT}",
    "REDIS_URL": f"redis://127.0.0.1:{_REDIS_PORT}/15",
}


@pytest.fixture
def env_factory(tmp_path: Any) -> Callable[..., dict[str, str]]:
    def make(**overrides: str) -> dict[str, str]:
        env = dict(BASE_ENV, FILE_BUFFER_DIR=str(tmp_path / "spool"), TABLE_DIR=str(tmp_path / "tables"),
                   ARCHIVE_URL=f"local://{tmp_path / 'archive'}")
        env.update(overrides)
        return env
    return make


@pytest.fixture
def settings_factory(env_factory: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    return lambda **overrides: Settings.from_env(env_factory(**overrides))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {skipped} test(s) skipped; every test must run", red=True)
        session.exitstatus = 1
