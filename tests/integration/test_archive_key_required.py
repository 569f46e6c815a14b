"""Without LIGHTHOUSE_PRIVATE_KEY nothing could be archived: the gateway answers 503 on /ingest/records
instead of 202, and a worker refuses to start, instead of both running with the archive silently off."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from .conftest import wait_http
from .gateway_kit import post


async def test_gateway_refuses_records_while_the_archive_key_is_unset(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    env = env_factory(PORT="18613")
    del env["LIGHTHOUSE_PRIVATE_KEY"]
    spawn(["gateway"], env)
    base = "http://127.0.0.1:18613"
    await wait_http(f"{base}/health")
    async with aiohttp.ClientSession() as http:
        records = await post(http, f"{base}/ingest/records",
                             {"user_id": 1, "records": [{"wuid": f"w-{unique}", "cleaned": {"k": 1}}]})
        assert records.status == 503, records.body
        assert "LIGHTHOUSE_PRIVATE_KEY" in records.body["message"] and int(records.headers["Retry-After"]) >= 1
        events = await post(http, f"{base}/ingest/events", {"events": [{"type": "VIEW", "ruleId": f"k-{unique}"}]})
        assert events.status == 202, events.body


def test_worker_refuses_to_start_without_the_archive_key(
        services: None, env_factory: Callable[..., dict[str, str]]) -> None:
    env = env_factory(WORKER_PORT="18614")
    del env["LIGHTHOUSE_PRIVATE_KEY"]
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    done = subprocess.run([sys.executable, "-m", "ingestflow.app.cli", "worker"], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "ingestflow: configuration error: LIGHTHOUSE_PRIVATE_KEY: is required but not set"
