"""Per-IP rate limits shared through Redis by every gateway process, and the in-process fallback when Redis
is down (a private Redis, stopped in the test)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ..conftest import BASE_ENV
from .conftest import wait_http
from .gateway_kit import Reply, post


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def same_window(seconds_needed: float = 8.0) -> None:
    """Start at the beginning of a one-minute window, so the requests that follow all fall in one."""
    into = time.time() % 60
    if into > 60 - seconds_needed:
        await asyncio.sleep(60 - into + 0.05)


async def send(http: aiohttp.ClientSession, base: str, path: str, unique: str) -> Reply:
    body = ({"events": [{"type": "VIEW", "ruleId": f"rl-{unique}"}]} if path == "events" else
            {"sourceId": f"rl-{unique}", "items": [{"externalId": "1", "url": "https://example.org", "title": "t"}]})
    return await post(http, f"{base}/ingest/{path}", body)


async def test_two_gateways_share_one_budget_per_ip_and_endpoint_class(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], http: aiohttp.ClientSession,
        unique: str) -> None:
    # A Redis DB of its own for this test: the shared counters of other tests' gateways stay apart.
    env = env_factory(RATE_LIMIT_EVENTS_PER_MIN="6", RATE_LIMIT_CRAWL_PER_MIN="2", REDIS_URL=BASE_ENV["REDIS_URL"].rsplit("/", 1)[0] + "/14")
    bases = ["http://127.0.0.1:18130", "http://127.0.0.1:18131"]
    for i, base in enumerate(bases):
        spawn(["gateway"], {**env, "PORT": base.rsplit(":", 1)[1],
                            "FILE_BUFFER_DIR": env["FILE_BUFFER_DIR"] + str(i)})
    for base in bases:
        await wait_http(f"{base}/health")
    redis = Redis.from_url(env["REDIS_URL"])
    for key in await redis.keys("ingestflow:rl:*"):
        await redis.delete(key)
    await redis.aclose()
    await same_window()
    replies = [await send(http, bases[i % 2], "events", unique) for i in range(8)]
    assert [r.status for r in replies] == [202] * 6 + [429] * 2  # 3 + 3 through two processes, then refused
    first_refusal = replies[6]
    assert first_refusal.body["error"] == "RateLimited"
    assert first_refusal.headers["RateLimit-Limit"] == "6" and first_refusal.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(first_refusal.headers["Retry-After"]) <= 60
    assert first_refusal.headers["Retry-After"] == first_refusal.headers["RateLimit-Reset"]
    assert [r.headers["RateLimit-Remaining"] for r in replies[:6]] == ["5", "4", "3", "2", "1", "0"]
    # Crawl has its own, smaller budget.
    crawl = [await send(http, bases[i % 2], "crawl", unique) for i in range(3)]
    assert [r.status for r in crawl] == [202, 202, 429] and crawl[0].headers["RateLimit-Limit"] == "2"


async def test_redis_down_falls_back_to_in_process_limits_without_failing_requests(
        private_service: Callable[..., Any], spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession, unique: str) -> None:
    redis = private_service("redis", 16391)
    env = env_factory(PORT="18132", RATE_LIMIT_EVENTS_PER_MIN="3", REDIS_URL=redis.url("0"))
    spawn(["gateway"], env)
    base = "http://127.0.0.1:18132"
    await wait_http(f"{base}/health")
    redis.stop()
    await same_window()
    statuses = [(await send(http, base, "events", unique)).status for _ in range(5)]
    assert statuses == [202, 202, 202, 429, 429]  # the in-process window holds the same budget
    health = await http.get(f"{base}/health")
    body = await health.json()
    assert health.status == 200  # Redis down never stops ingest
    assert {d["name"]: d["status"] for d in body["dependencies"]}["redis"] == "down"
