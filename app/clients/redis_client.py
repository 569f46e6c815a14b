"""Redis for hot data (leaderboards, rate limits). Optional by design: every caller has a fallback, so a
Redis outage degrades speed, never correctness. Calls fail fast instead of hanging."""
from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["RedisClient", "RedisError"]

log = logging.getLogger(__name__)


class RedisClient:
    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        self._url = url
        self._timeout = timeout
        self._redis: Redis | None = None

    async def start(self) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(self._url, socket_timeout=self._timeout,
                                         socket_connect_timeout=self._timeout, retry_on_timeout=False,
                                         health_check_interval=0)

    async def stop(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    @property
    def redis(self) -> Redis:
        """The client; callers catch RedisError (raised also when Redis is down) and fall back."""
        if self._redis is None:
            raise RedisError("Redis client not started")
        return self._redis

    async def ping(self) -> None:
        await self.redis.ping()
