"""One event from the HTTP request to its PostgreSQL row, through the real Kafka and a real worker."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg

from .analytics_data import recent_day
from .conftest import eventually, start_group_at_end, wait_http

DAY = recent_day(4)
NEXT_DAY = DAY + timedelta(days=1)


async def test_event_walks_from_http_to_postgres(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(PORT="18787", WORKER_PORT="16066", WORKER_APP_ID=f"e2e-{unique}")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    await wait_http("http://127.0.0.1:18787/health")
    rule = f"rule-{unique}"
    events = [{"type": "VIEW", "ruleId": rule, "ts": DAY.strftime("%Y-%m-%dT10:00:00Z")},
              {"type": "COPY", "ruleId": rule, "ts": DAY.strftime("%Y-%m-%dT11:00:00Z")},
              {"type": "VOTE", "ruleId": rule, "ts": NEXT_DAY.strftime("%Y-%m-%dT09:00:00Z")}]
    async with aiohttp.ClientSession() as http:
        async with http.post("http://127.0.0.1:18787/ingest/events", json={"events": events},
                             headers={"x-app-token": env["INGEST_APP_TOKEN"]}) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["accepted"] == 3

        async def rows() -> list[Any]:
            return await pg.fetch("SELECT day::text, views, copies, votes FROM rule_metric_daily"
                                  " WHERE rule_id = $1 ORDER BY day", rule)
        try:
            got = await eventually(lambda: _when_len(rows(), 2), timeout=90, what="rule_metric_daily rows")
        except AssertionError:
            print(worker.tail(), gateway.tail())
            raise
        assert [tuple(r) for r in got] == [(DAY.date().isoformat(), 1, 1, 0), (NEXT_DAY.date().isoformat(), 0, 0, 1)]

        async with http.get(f"http://127.0.0.1:18787/metrics/rules/{rule}",
                            params={"from": (DAY - timedelta(days=10)).date().isoformat(),
                                    "to": (NEXT_DAY + timedelta(days=1)).date().isoformat()}) as resp:
            body = await resp.json()
        assert body["totals"] == {"views": 1, "copies": 1, "saves": 0, "forks": 0, "votes": 1}


async def _when_len(rows: Any, n: int) -> Any:
    got = await rows
    return got if len(got) >= n else None
