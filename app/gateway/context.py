"""What the gateway's routes may use, built once by build_gateway and stored under an AppKey. The reads'
context (app/web/routes_read.py ReadContext: settings, clock, stores, the per-IP limiter) is shared with
them, so the gateway's own routes and its reads see the same objects."""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.ttlcache import TtlCache
from ingestflow.app.web.routes_read import ReadContext

from .publisher import Publisher

__all__ = ["GatewayContext", "CONTEXT"]


@dataclass
class GatewayContext:
    reads: ReadContext  # settings, clock, PostgreSQL, the stores and the per-IP limiter
    publisher: Publisher
    redis: RedisClient
    probes: TtlCache[str, dict[str, object]]  # dependency checks behind /health, kept HEALTH_CACHE_S


CONTEXT = web.AppKey("context", GatewayContext)
