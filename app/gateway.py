"""The aiohttp gateway: builds the web application, maps every error to one response shape, and owns
the start and stop of the clients it uses (connect late, stop in reverse order)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import routes_archive, routes_cron, routes_ingest, routes_ops, routes_read
from .clock import Clock, SystemClock
from .context import CONTEXT, READS, GatewayContext, ReadContext
from .db import Database
from .http import errors_middleware
from .kafka import Producer
from .leaderboard_store import LeaderboardStore
from .metrics_store import MetricsStore
from .publisher import Publisher
from .ratelimit import RateLimiter
from .redis_client import RedisClient
from .settings import Settings
from .spool import Spool

__all__ = ["build_gateway", "run_gateway"]

log = logging.getLogger(__name__)
def build_gateway(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=settings.max_body_bytes)
    db = Database(settings.database_url.get(), max_size=10)
    # Issue 3: Kafka with the disk spool behind it (replayed by its own producer), Redis-shared rate limits.
    clock = clock or SystemClock()
    publisher = Publisher(
        Producer(settings.kafka_bootstrap, send_timeout=settings.kafka_send_timeout_s),
        Spool(settings.file_buffer_dir, max_bytes=settings.spool_max_bytes),
        Producer(settings.kafka_bootstrap, send_timeout=settings.kafka_send_timeout_s,
                 client_id="ingestflow-replay", linger_ms=20))
    redis = RedisClient(settings.redis_url)
    limiter = RateLimiter(redis, clock, {"events": settings.rate_limit_events_per_min,
                                         "records": settings.rate_limit_events_per_min,
                                         "crawl": settings.rate_limit_crawl_per_min})
    metrics = MetricsStore(db, settings.weights)  # the same store as a worker builds
    leaderboards = LeaderboardStore(db, redis, size=settings.leaderboard_size)  # issue 4
    app[CONTEXT] = GatewayContext(settings=settings, clock=clock, publisher=publisher, db=db, metrics=metrics,
                                  redis=redis, limiter=limiter, leaderboards=leaderboards)
    app[READS] = ReadContext(settings=settings, clock=clock, db=db, metrics=metrics, leaderboards=leaderboards)

    async def clients(app: web.Application) -> AsyncIterator[None]:
        # The spool must open (a 202 relies on it); Kafka, PostgreSQL and Redis may come later.
        await publisher.start()
        for name, start in (("postgres", db.start), ("redis", redis.start)):
            try:
                await start()
            except Exception as exc:
                log.warning("%s not reachable at start-up: %s", name, type(exc).__name__)
        yield
        await redis.stop()
        await publisher.stop()
        await db.stop()

    app.cleanup_ctx.append(clients)
    for table in (routes_ingest.routes, routes_read.routes, routes_ops.routes, routes_cron.routes):
        app.add_routes(table)
    routes_archive.setup(app, settings, db, clock)  # issue 5: archive routes + their clients' cleanup_ctx
    return app


def run_gateway(settings: Settings) -> None:
    web.run_app(build_gateway(settings), host=settings.host, port=settings.port, access_log=None,
                print=lambda *_: log.info("gateway listening on http://%s:%d", settings.host, settings.port))
