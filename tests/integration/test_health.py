"""Liveness and readiness on both kinds of process: a required dependency down fails readiness with the
reason, while liveness still answers."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from .conftest import eventually, start_group_at_end, wait_http


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.json()


async def test_worker_readiness_names_the_missing_database(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    env = env_factory(PORT="18461", WORKER_PORT="16461", WORKER_APP_ID=f"health-{unique}",
                      DATABASE_URL="postgresql://ingestflow@127.0.0.1:1/ingestflow_test")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    try:
        await wait_http("http://127.0.0.1:16461/health/live", timeout=90)
    except AssertionError:
        print(worker.tail())
        raise
    assert (await _get("http://127.0.0.1:16461/health/live"))[0] == 200

    async def not_ready() -> dict[str, Any] | None:
        status, body = await _get("http://127.0.0.1:16461/health/ready")
        return body if status == 503 else None
    body = await eventually(not_ready, timeout=60, what="worker readiness 503")
    assert any(r.startswith("postgres:") for r in body["reasons"])
    deps = {d["name"]: d for d in body["dependencies"]}
    assert deps["postgres"]["status"] == "down" and deps["kafka"]["status"] == "up"
    assert isinstance(deps["kafka"]["latencyMs"], float)
    assert deps["redis"]["required"] is False
    assert deps["archive"]["status"] == "up" and deps["archive"]["required"] is True, deps["archive"]
    # /health answers the same report (the page an operator opens first).
    status, health = await _get("http://127.0.0.1:16461/health")
    assert status == 503 and any(r.startswith("postgres:") for r in health["reasons"])


async def test_gateway_live_and_ready_with_every_dependency_up(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    spawn(["gateway"], env_factory(PORT="18462"))
    await wait_http("http://127.0.0.1:18462/health/live")
    status, body = await _get("http://127.0.0.1:18462/health/ready")
    assert status == 200 and body["ready"] is True
    assert {d["name"]: d["status"] for d in body["dependencies"]} == {
        "kafka": "up", "postgres": "up", "redis": "up", "spool": "up", "archive": "up"}
