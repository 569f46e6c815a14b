"""The fault-injection helper itself: a private Redis stops and starts without touching the shared one."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from ingestflow.app.clients.redis_client import RedisClient, RedisError

from ..conftest import BASE_ENV


async def test_private_redis_stops_while_shared_one_keeps_answering(
        private_service: Callable[..., Any], services: None) -> None:
    svc = private_service("redis", 16390)
    client = RedisClient(svc.url("0"))
    await client.start()
    await client.ping()
    svc.stop()
    try:
        await client.ping()
        raise AssertionError("ping succeeded against a stopped Redis")
    except (RedisError, OSError):
        pass
    shared = Redis.from_url(BASE_ENV["REDIS_URL"])
    assert await shared.ping()
    await shared.aclose()
    svc.start()
    await client.ping()
    await client.stop()
