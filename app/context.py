"""What every gateway route may use, built once by the gateway's owner and stored under one AppKey."""
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

__all__ = ["GatewayContext", "CONTEXT"]


@dataclass
class GatewayContext:
    settings: Settings
    clock: Clock
    publisher: Publisher
    db: Database
    metrics: MetricsStore
    redis: RedisClient
    limiter: RateLimiter
    leaderboards: LeaderboardStore | None = None  # issue 4: set by the gateway, Redis hot + PostgreSQL cold


CONTEXT = web.AppKey("context", GatewayContext)
