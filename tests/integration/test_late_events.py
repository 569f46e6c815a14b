"""Events older than the days the worker counts (MAX_EVENT_AGE_DAYS): the gateway refuses them with the field
and reason, and a worker drops one produced straight to `events` as late instead of counting it into a window
that has expired, which would restart that day's total from zero and overwrite the complete one."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg

from ingestflow.app.core.limits import MAX_EVENT_AGE_DAYS

from ..conftest import BASE_ENV
from .analytics_data import produce
from .conftest import eventually, start_group_at_end, wait_http

GATEWAY_PORT, WORKER_PORT = 18795, 16095


def midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def copy(rule: str, at: datetime, key: str) -> tuple[str, dict[str, Any], float]:
    return rule, {"id": key, "type": "COPY", "ruleId": rule, "ts": at.isoformat()}, at.timestamp()


async def late_count(http: aiohttp.ClientSession) -> float:
    async with http.get(f"http://127.0.0.1:{WORKER_PORT}/metrics") as resp:
        text = await resp.text()
    prefix = 'ingestflow_processed_total{agent="rule-metrics",outcome="late"} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


async def test_the_gateway_refuses_and_the_worker_drops_an_event_before_the_counted_days(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(PORT=str(GATEWAY_PORT), WORKER_PORT=str(WORKER_PORT), WORKER_APP_ID=f"late-{unique}")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    rule = f"late-{unique}"
    old_day, recent_day = midnight(MAX_EVENT_AGE_DAYS), midnight(2)
    # The complete total of a day no longer counted, written when it was.
    await pg.execute("INSERT INTO rule_metric_daily (rule_id, day, copies) VALUES ($1, $2, 7)", rule, old_day.date())
    try:
        await wait_http(f"http://127.0.0.1:{GATEWAY_PORT}/health")
        async with aiohttp.ClientSession() as http:
            body = {"events": [{"type": "COPY", "ruleId": rule, "ts": recent_day.isoformat()},
                               {"type": "COPY", "ruleId": rule, "ts": (old_day + timedelta(hours=23)).isoformat()}]}
            async with http.post(f"http://127.0.0.1:{GATEWAY_PORT}/ingest/events", json=body,
                                 headers={"x-app-token": env["INGEST_APP_TOKEN"]}) as resp:
                assert resp.status == 400
                refused = await resp.json()
            oldest = midnight(MAX_EVENT_AGE_DAYS - 1).date().isoformat()
            assert refused["field"] == "events[1].ts"
            assert refused["reason"] == (f"is before {oldest}: events are counted on the last"
                                         f" {MAX_EVENT_AGE_DAYS} UTC days only")

            # A direct producer does not pass the gateway: the late one between two counted ones.
            await produce(BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], "events",
                          [copy(rule, recent_day, f"{unique}-1"),
                           copy(rule, old_day + timedelta(hours=23), f"{unique}-2"),
                           copy(rule, recent_day + timedelta(hours=1), f"{unique}-3")])

            async def counted() -> Any:
                return await pg.fetchval("SELECT copies FROM rule_metric_daily WHERE rule_id = $1 AND day = $2",
                                         rule, recent_day.date())
            try:
                await eventually(lambda: _equals(counted(), 2), timeout=120, what="the counted day's copies")
                await eventually(lambda: _at_least(late_count(http), 1), timeout=30, what="the late event dropped")
            except AssertionError:
                print(worker.tail(), gateway.tail())
                raise
        assert await pg.fetchval("SELECT copies FROM rule_metric_daily WHERE rule_id = $1 AND day = $2",
                                 rule, old_day.date()) == 7
    finally:
        await pg.execute("DELETE FROM rule_metric_daily WHERE rule_id = $1", rule)


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def _at_least(value: Any, n: float) -> bool:
    return await value >= n
