"""The routes anyone can call without a secret are bounded: reads and the Stripe webhook are rate-limited per
client, a heavy leaderboard is computed once per READ_CACHE_S however often it is asked for, and /health
probes each dependency (Lighthouse, with our key) at most once per HEALTH_CACHE_S."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from ingestflow.app.core import serde

from ..conftest import BASE_ENV
from ..fake_lighthouse import FakeLighthouse
from .conftest import wait_http
from .gateway_kit import get

# A Redis database of their own: other tests' reads from 127.0.0.1 do not spend these budgets.
LIMITS_REDIS = BASE_ENV["REDIS_URL"].rsplit("/", 1)[0] + "/12"


async def _same_window(redis_url: str, seconds_needed: float = 10.0) -> None:
    """Fresh counters, and the requests that follow all in one one-minute window."""
    redis = Redis.from_url(redis_url)
    for key in await redis.keys("ingestflow:rl:*"):
        await redis.delete(key)
    await redis.aclose()
    into = time.time() % 60
    if into > 60 - seconds_needed:
        await asyncio.sleep(60 - into + 0.05)


async def test_reads_are_rate_limited_per_client(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    spawn(["gateway"], env_factory(PORT="18606", REDIS_URL=LIMITS_REDIS, RATE_LIMIT_READS_PER_MIN="3"))
    base = "http://127.0.0.1:18606"
    await wait_http(f"{base}/health/live")
    await _same_window(LIMITS_REDIS)
    async with aiohttp.ClientSession() as http:
        replies = [await get(http, f"{base}{path}") for path in
                   (f"/metrics/rules/r-{unique}", "/trending/rules", f"/search?q=x{unique}", "/leaderboards/daily")]
        assert [r.status for r in replies] == [200, 200, 200, 429], [r.body for r in replies]
        assert replies[3].body["error"] == "RateLimited" and 1 <= int(replies[3].headers["Retry-After"]) <= 60
        health = await get(http, f"{base}/health")  # never limited: monitors and load balancers poll it
        assert health.status == 200


async def test_stripe_webhook_is_rate_limited_before_any_signature_work(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    spawn(["gateway"], env_factory(PORT="18612", REDIS_URL=LIMITS_REDIS, RATE_LIMIT_WEBHOOK_PER_MIN="2"))
    base = "http://127.0.0.1:18612"
    await wait_http(f"{base}/health/live")
    await _same_window(LIMITS_REDIS)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            async with http.post(f"{base}/ingest/stripe/webhook", data=b"{}",
                                 headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"}) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert int(r.headers["Retry-After"]) >= 1
    assert statuses == [400, 400, 429, 429]


async def test_a_heavy_leaderboard_is_computed_once_per_cache_interval(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], own_database: str,
        unique: str) -> None:
    spawn(["gateway"], env_factory(PORT="18607", DATABASE_URL=own_database, READ_CACHE_S="600"))
    base = "http://127.0.0.1:18607"
    await wait_http(f"{base}/health/live")
    path = f"{base}/leaderboards/all-time?scope=authors&limit=1000"  # past LEADERBOARD_SIZE: a GROUP BY each time
    pg = await asyncpg.connect(own_database)
    try:
        await pg.execute("INSERT INTO author_metric_daily (author_id, day, views, score) VALUES ($1, $2, 1, 1)",
                         f"first-{unique}", date(2020, 1, 1))
        async with aiohttp.ClientSession() as http:
            first = await get(http, path)
            assert first.status == 200 and [e["id"] for e in first.body["entries"]] == [f"first-{unique}"]
            await pg.execute("INSERT INTO author_metric_daily (author_id, day, views, score) VALUES ($1, $2, 5, 5)",
                             f"second-{unique}", date(2020, 1, 1))
            again = [await get(http, path) for _ in range(5)]
        assert all(r.status == 200 and r.body == first.body for r in again), "recomputed within READ_CACHE_S"
    finally:
        await pg.close()


async def test_health_probes_lighthouse_at_most_once_per_interval(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    lighthouse = await FakeLighthouse("lh-open-routes-key-0123456789", 18608).start()
    try:
        spawn(["gateway"], env_factory(PORT="18609", ARCHIVE_URL="lighthouse://", HEALTH_CACHE_S="600",
                                       LIGHTHOUSE_API_KEY=lighthouse.api_key, LIGHTHOUSE_NODE_URL=lighthouse.url,
                                       LIGHTHOUSE_GATEWAY_URL=lighthouse.url))
        base = "http://127.0.0.1:18609"
        await wait_http(f"{base}/health/live")
        async with aiohttp.ClientSession() as http:
            bodies = [serde.loads(await (await http.get(f"{base}/health")).read()) for _ in range(10)]
        archive = [d for d in bodies[-1]["dependencies"] if d["name"] == "archive"]
        assert archive and archive[0]["status"] == "up", bodies[-1]
        assert lighthouse.probes == 1, f"Lighthouse probed {lighthouse.probes} times by 10 health calls"
    finally:
        await lighthouse.stop()
