"""What the web routes may use, built once by the process that serves them and stored under an AppKey:
`GatewayContext` for the gateway's routes, `ReadContext` for the reads, which the gateway and every worker
serve alike (app/routes_read.py)."""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .clock import Clock
from .db import Database
from .leaderboard_store import LeaderboardStore
from .metrics_store import MetricsStore
from .publisher import Publisher
from .ratelimit import RateLimiter
from .redis_client import RedisClient
from .settings import Settings

__all__ = ["GatewayContext", "CONTEXT", "ReadContext", "READS"]


@dataclass
class ReadContext:
    """The stores behind the GET reads: shared by every process, so the answer never depends on which
    gateway or worker a request reaches."""

    settings: Settings
    clock: Clock
    db: Database
    metrics: MetricsStore
    leaderboards: LeaderboardStore


@dataclass
class GatewayContext:
    settings: Settings
    clock: Clock
    publisher: Publisher
    db: Database
    metrics: MetricsStore
    redis: RedisClient
    limiter: RateLimiter
    leaderboards: LeaderboardStore  # issue 4: Redis hot + PostgreSQL cold


CONTEXT = web.AppKey("context", GatewayContext)
READS = web.AppKey("reads", ReadContext)
