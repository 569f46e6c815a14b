"""Suite-wide rules: every test runs (a skipped test fails the run), and settings come from one factory."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from ingestflow.app.core.settings import KafkaConnection, Settings

ROOT = Path(__file__).resolve().parents[1]


def service_url(service: str, *args: str, env: Mapping[str, str] | None = None) -> str:
    """The URL, with its password, that `deploy/<service>.sh url` gives clients of that instance (the password
    is generated next to the instance's data directory, the same file the script starts the service with)."""
    script = ROOT / "deploy" / f"{service}.sh"
    return subprocess.run([str(script), "url", *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout.strip()


# The suite talks to the services deploy/services.sh starts; the same variables move them to other ports and
# data directories (KAFKA_PORT, PG_PORT + PG_DATA_DIR, REDIS_PORT + REDIS_DATA_DIR, TOXIPROXY_PORT), so a test
# run can use its own instances.
_KAFKA_PORT = os.environ.get("KAFKA_PORT", "9092")
# The fault-injection proxy the network tests put between a client and a service (deploy/toxiproxy.sh).
TOXIPROXY_PORT = os.environ.get("TOXIPROXY_PORT", "18500")

BASE_ENV = {
    "INGEST_APP_TOKEN": "test-app-token-0123456789abcdef",
    "CRON_SECRET": "test-cron-secret-0123456789abcdef",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_0123456789abcdef",
    "LIGHTHOUSE_PRIVATE_KEY": "test-archive-master-key-0123456789",
    "DATABASE_URL": service_url("postgres", "ingestflow_test"),
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_KAFKA_PORT}",
    "REDIS_URL": service_url("redis", "15"),
    # Every test sends from one client IP (127.0.0.1) and the tests share one Redis, so one test's requests
    # would spend the next one's budget: no budgets and no caches here. The tests of the limits and caches
    # (test_gateway_ratelimit.py, test_open_routes.py, test_dashboard.py) set values of their own.
    "RATE_LIMIT_EVENTS_PER_MIN": "100000000",
    "RATE_LIMIT_CRAWL_PER_MIN": "100000000",
    "RATE_LIMIT_READS_PER_MIN": "100000000",
    "RATE_LIMIT_WEBHOOK_PER_MIN": "100000000",
    "READ_CACHE_S": "0",
    "HEALTH_CACHE_S": "0",
}


def plaintext_kafka(address: str) -> KafkaConnection:
    """The connection of a test's own client to a broker without SASL or TLS (the shared one, a private one,
    a proxy in front of one)."""
    return KafkaConnection(bootstrap_servers=(address,))


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
