"""The aiohttp gateway: builds the web application, maps every error to one response shape, and owns
the start and stop of the clients it uses (connect late, stop in reverse order)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.kafka import Producer
from ingestflow.app.clients.lifecycle import Clients
from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.clock import Clock, SystemClock
from ingestflow.app.core.errors import SpoolFull
from ingestflow.app.core.observability import EVENTS_REJECTED, publish_build_info
from ingestflow.app.core.settings import Settings
from ingestflow.app.core.ttlcache import TtlCache
from ingestflow.app.stores.leaderboard_store import LeaderboardStore
from ingestflow.app.stores.metrics_store import MetricsStore
from ingestflow.app.web import routes_read
from ingestflow.app.web.health import watch
from ingestflow.app.web.http import errors_middleware
from ingestflow.app.web.ratelimit import RateLimiter
from ingestflow.app.web.routes_read import READS, ReadContext

from . import routes_archive, routes_cron, routes_ingest, routes_ops
from .context import CONTEXT, GatewayContext
from .publisher import Publisher
from .spool import Spool

__all__ = ["build_gateway", "run_gateway"]

log = logging.getLogger(__name__)
def build_gateway(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=settings.max_body_bytes)
    db = Database(settings.database_url.get(), max_size=10, acquire_timeout=settings.database_acquire_timeout_s)
    # Kafka with the disk spool behind it (replayed by its own producer), Redis-shared rate limits.
    clock = clock or SystemClock()
    publisher = Publisher(
        Producer(settings.kafka, send_timeout=settings.kafka_send_timeout_s),
        Spool(settings.file_buffer_dir, max_bytes=settings.spool_max_bytes),
        Producer(settings.kafka, send_timeout=settings.kafka_send_timeout_s,
                 client_id="ingestflow-replay", linger_ms=20))
    redis = RedisClient(settings.redis_url.get())
    limiter = RateLimiter(redis, clock, {"events": settings.rate_limit_events_per_min,
                                         "records": settings.rate_limit_events_per_min,
                                         "crawl": settings.rate_limit_crawl_per_min,
                                         "webhook": settings.rate_limit_webhook_per_min,
                                         "reads": settings.rate_limit_reads_per_min})
    # The same stores as a worker builds: any process answers a read alike.
    reads = ReadContext(settings=settings, clock=clock, db=db, metrics=MetricsStore(db, settings.weights),
                        leaderboards=LeaderboardStore(db, redis, size=settings.leaderboard_size), limiter=limiter,
                        cache=TtlCache(settings.read_cache_s))
    app[CONTEXT] = GatewayContext(reads=reads, publisher=publisher, redis=redis,
                                  probes=TtlCache(settings.health_cache_s))
    app[READS] = reads

    # The spool must open (a 202 relies on it); Kafka, PostgreSQL, Redis and the archive may come later.
    clients = Clients().add("spool", publisher, required=True).add("postgres", db).add("redis", redis)
    for table in (routes_ingest.routes, routes_read.routes, routes_ops.routes, routes_cron.routes):
        app.add_routes(table)
    routes_archive.setup(app, settings, db, clients, clock)
    app.cleanup_ctx.append(clients.context)

    async def readiness_probe(app: web.Application) -> AsyncIterator[None]:
        async def accepting() -> bool:
            return (await routes_ops.gateway_health(app))[0]
        task = asyncio.create_task(watch(accepting, settings.health_probe_interval_s), name="readiness-probe")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(readiness_probe)  # last: it probes the clients the contexts above started
    publish_build_info("gateway")
    EVENTS_REJECTED.labels(reason=SpoolFull.__name__)  # exported at 0, so the first 503 for a full spool shows
    return app


def run_gateway(settings: Settings) -> None:
    web.run_app(build_gateway(settings), host=settings.host, port=settings.port, access_log=None,
                print=lambda *_: log.info("gateway listening on http://%s:%d", settings.host, settings.port))
