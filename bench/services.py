"""The local services' client URLs for the benchmarks: DATABASE_URL / REDIS_URL when set, else the URL (with
the generated password) that `deploy/<service>.sh url` prints for the instance the scripts run."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["database_url", "redis_url"]

ROOT = Path(__file__).resolve().parents[1]


def _url(service: str, database: str) -> str:
    return subprocess.run([str(ROOT / "deploy" / f"{service}.sh"), "url", database], check=True,
                          capture_output=True, text=True).stdout.strip()


def database_url(database: str = "ingestflow_test") -> str:
    return os.environ.get("DATABASE_URL") or _url("postgres", database)


def redis_url(database: str = "15") -> str:
    return os.environ.get("REDIS_URL") or _url("redis", database)
