"""The local services' client URLs for the benchmarks: DATABASE_URL / REDIS_URL when set, else the URL (with
the generated password) that `deploy/<service>.sh url` prints for the instance the scripts run."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["database_url", "redis_url", "start_worker"]

ROOT = Path(__file__).resolve().parents[1]


def _url(service: str, database: str) -> str:
    return subprocess.run([str(ROOT / "deploy" / f"{service}.sh"), "url", database], check=True,
                          capture_output=True, text=True).stdout.strip()


def database_url(database: str = "ingestflow_test") -> str:
    return os.environ.get("DATABASE_URL") or _url("postgres", database)


def redis_url(database: str = "15") -> str:
    return os.environ.get("REDIS_URL") or _url("redis", database)


def start_worker(bootstrap: str, app_id: str, port: int, work: Path, name: str, *, log_level: str = "WARNING",
                 command: tuple[str, ...] = ("-m", "ingestflow.app.cli", "worker"),
                 settings: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`ingestflow worker` (or another `command` run with its settings) as the worker `name` a bench starts in
    `work`, logging to work/<name>.log, its tables in work/tables-<name> (kept across its restarts), with
    everything a worker requires: fresh random secrets (the archive writes to a local directory there) and the
    shared PostgreSQL and Redis with their passwords; `settings` adds or overrides environment settings."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update({"INGEST_APP_TOKEN": secrets.token_hex(16), "CRON_SECRET": secrets.token_hex(16),
                "LIGHTHOUSE_PRIVATE_KEY": secrets.token_hex(32), "ARCHIVE_URL": f"local://{work / 'archive'}",
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url(), "REDIS_URL": redis_url("14"),
                "WORKER_APP_ID": app_id, "WORKER_PORT": str(port), "TABLE_DIR": str(work / f"tables-{name}"),
                "LOG_LEVEL": log_level, **(settings or {})})
    return subprocess.Popen([sys.executable, *command], env=env, stdout=open(work / f"{name}.log", "ab"),
                            stderr=subprocess.STDOUT, cwd=work)
