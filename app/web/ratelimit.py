"""Per-IP, per-endpoint-class rate limits, shared by every gateway instance through Redis.

A fixed one-minute window per (class, IP): one Lua script increments the window's counter and sets its
expiry atomically, so concurrent gateways never lose a hit or leave a counter without expiry. When Redis is
down (calls fail fast: 0.5 s socket timeouts) each gateway falls back to its own in-process windows and skips
Redis for `redis_retry_s` before trying again, so an outage costs at most one slow call per interval.
Answers carry the IETF draft headers (RateLimit-Limit / -Remaining / -Reset) and Retry-After on 429.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ingestflow.app.clients.redis_client import RedisClient, RedisError
from ingestflow.app.core.clock import Clock
from ingestflow.app.core.errors import RateLimited
from ingestflow.app.core.observability import RATE_LIMITED

__all__ = ["RateLimiter", "Decision", "LocalWindows", "WINDOW_S"]

log = logging.getLogger(__name__)
WINDOW_S = 60
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    backend: str

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s)}
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


class LocalWindows:
    """The in-process fallback: fixed windows per key, old windows dropped as the clock moves on."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._counts: dict[str, tuple[int, int]] = {}
        self._max_keys = max_keys

    def hit(self, key: str, window: int) -> int:
        seen_window, count = self._counts.get(key, (window, 0))
        count = count + 1 if seen_window == window else 1
        if len(self._counts) >= self._max_keys and key not in self._counts:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        self._counts[key] = (window, count)
        return count


class RateLimiter:
    def __init__(self, redis: RedisClient, clock: Clock, limits: Mapping[str, int], *,
                 prefix: str = "ingestflow:rl", redis_retry_s: float = 5.0) -> None:
        self._redis = redis
        self._clock = clock
        self._limits = dict(limits)
        self._prefix = prefix
        self._redis_retry_s = redis_retry_s
        self._redis_down_until = 0.0
        self._local = LocalWindows()

    def limit(self, endpoint: str) -> int:
        return self._limits[endpoint]

    async def hit(self, endpoint: str, ip: str) -> Decision:
        """Count one request of `ip` on `endpoint` and say whether it may go on."""
        limit = self._limits[endpoint]
        now = self._clock.time()
        window = int(now // WINDOW_S)
        reset_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
        key = f"{self._prefix}:{endpoint}:{ip}:{window}"
        count, backend = await self._count(key, window, reset_s)
        decision = Decision(allowed=count <= limit, limit=limit, remaining=max(0, limit - count),
                            reset_s=reset_s, backend=backend)
        if not decision.allowed:
            RATE_LIMITED.labels(endpoint=endpoint, backend=backend).inc()
        return decision

    async def admit(self, endpoint: str, ip: str) -> Decision:
        """hit(), raising RateLimited (429 + Retry-After) when the caller is over its budget."""
        decision = await self.hit(endpoint, ip)
        if not decision.allowed:
            raise RateLimited(f"rate limit of {decision.limit} requests a minute reached for {endpoint}",
                              retry_after=decision.reset_s, limit=decision.limit)
        return decision

    async def _count(self, key: str, window: int, reset_s: int) -> tuple[int, str]:
        if self._clock.monotonic() >= self._redis_down_until:
            try:
                count = await self._redis.redis.eval(_INCR, 1, key, str((reset_s + 1) * 1000))
                return int(count), "redis"
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_down_until = self._clock.monotonic() + self._redis_retry_s
                log.warning("rate limit: Redis unavailable (%s); in-process limits for %.0fs",
                            type(exc).__name__, self._redis_retry_s)
        return self._local.hit(key, window), "local"
