"""The Faust worker: builds the app from settings, wires topics, tables and agents, and runs it.

Processing is exactly-once (Kafka transactions): table changelogs and consumer offsets commit together,
so a killed worker never double-counts an event. More workers with the same app id share the partitions.
"""
from __future__ import annotations

import logging
from typing import Any

import faust
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from mode import Service

from ingestflow.agents import crawl as crawl_agent
from ingestflow.agents import donations as donations_agent
from ingestflow.agents import leaderboards as leaderboard_jobs
from ingestflow.agents import rule_metrics
from ingestflow.schemas import topics
from ingestflow.tables import dedup_keys, rule_catalog, rule_daily, rule_trending, view_guard

from . import routes_read
from .archive import backend_for
from .clock import SystemClock
from .commit_gate import CommitGate, gated_transactions
from .context import ReadContext
from .crawl_store import CrawlStore
from .db import Database
from .donation_store import DonationStore
from .faust_app import QuietWorker, new_app, prometheus_sensors
from .leaderboard_store import LeaderboardStore
from .metrics_store import MetricsStore
from .observability import TABLE_KEYS, logging_config
from .health import Probe, readiness
from .kafka import Producer
from .redis_client import RedisClient
from .settings import Settings

__all__ = ["build_app", "run_worker"]

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    app = new_app(settings)
    db = Database(settings.database_url.get(), max_size=5)

    class Resources(Service):
        """Connects the stores the agents write to before any agent runs, and closes them last. PostgreSQL
        down at start-up is not fatal: writes reconnect and retry, and readiness reports it meanwhile."""

        async def on_start(self) -> None:
            try:
                await db.start()
            except Exception as exc:
                log.warning("PostgreSQL not reachable at start-up: %s", type(exc).__name__)

        async def on_stop(self) -> None:
            await db.stop()

    app.service(Resources)

    def topic(spec: topics.TopicSpec) -> Any:
        return app.topic(spec.name, partitions=spec.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    dead_letters = topic(topics.DEAD_LETTERS)
    # Every commit sees a batch's table writes whole (app/commit_gate.py); the consumer is built at start.
    gate = CommitGate(lambda: app.producer.buffer.flush())
    setattr(app.transport, "TransactionManager", gated_transactions(gate))  # this app's transport only
    # --- Analytics (issue 4): one agent over the co-partitioned `events` + `rules` topics, local tables only.
    redis = RedisClient(settings.redis_url)
    app.service(_started(redis))
    leaderboards = LeaderboardStore(db, redis, size=settings.leaderboard_size)
    metrics = MetricsStore(db, settings.weights)
    parts = topics.EVENTS.partitions
    analytics_tables = rule_metrics.Tables(
        daily=rule_daily.define(app, partitions=parts),
        dedup_keys=dedup_keys.define(app, partitions=parts, retention_days=settings.dedup_retention_days),
        view_guard=view_guard.define(app, partitions=parts),
        catalog=rule_catalog.define(app, partitions=parts),
        trending=rule_trending.define(app, partitions=parts))
    events_and_rules = app.topic(topics.EVENTS.name, topics.RULES.name, key_type=bytes, value_type=bytes,
                                 key_serializer="raw", value_serializer="raw")
    rule_metrics.register(
        app, channel=events_and_rules, dead_letters=dead_letters, tables=analytics_tables, gate=gate,
        options=rule_metrics.Options(rules_topic=topics.RULES.name,
                                     dedup_retention_s=settings.dedup_retention_days * 86400.0,
                                     half_life_s=settings.trending_half_life_hours * 3600.0,
                                     weights=settings.weights),
        store=metrics, trending_sink=leaderboards)
    leaderboard_jobs.register(app, store=leaderboards, clock=SystemClock(),
                              refresh_s=settings.leaderboard_refresh_s, cron=settings.cron_schedule)
    crawl_agent.register(app, items=topic(topics.CRAWL), dead_letters=dead_letters, store=CrawlStore(db))
    donations_agent.register(app, webhooks=topic(topics.STRIPE), notifications=topic(topics.NOTIFICATIONS),
                             dead_letters=dead_letters, store=DonationStore(db))
    # --- end analytics
    # --- Archive (issue 5): per-user encrypted batches to Lighthouse / IPFS / local, see agents/archive.py.
    from ingestflow.agents import archive as archive_agent
    archive_agent.wire(app, settings=settings, db=db, records=topic(topics.RECORDS), dead_letters=dead_letters,
                       gate=gate)
    # --- end archive

    prometheus_sensors(app)
    # The GET reads, served here as on the gateway (from the shared stores, so every worker answers alike).
    web = app.web
    assert isinstance(web, AiohttpWeb)  # the driver of web="aiohttp://" (Faust's default)
    routes_read.mount(web.web_app, ReadContext(settings=settings, clock=SystemClock(), db=db, metrics=metrics,
                                               leaderboards=leaderboards))
    table_sizes(app)

    probe_producer = Producer(settings.kafka_bootstrap, send_timeout=2.0, client_id="ingestflow-health")
    app.service(_started(probe_producer))
    archive_probe = backend_for(settings)  # its own client: probing never competes with uploads
    app.service(_started(archive_probe))
    probes = [Probe("kafka", probe_producer.ping), Probe("postgres", db.ping),
              Probe("redis", redis.ping, required=False), Probe("archive", archive_probe.ping)]

    @app.page("/health/live")
    async def live(web: Any, request: Any) -> Any:
        return web.json({"status": "alive", "worker": settings.worker_id})

    async def ready_response(web: Any) -> Any:
        ok, body = await readiness(probes)
        if app.rebalancing:
            ok, body["status"] = False, "not ready"
            body.setdefault("reasons", []).append("kafka: consumer group is rebalancing")
        return web.json({**body, "worker": settings.worker_id}, status=200 if ok else 503)

    @app.page("/health/ready")
    async def ready(web: Any, request: Any) -> Any:
        return await ready_response(web)

    # app.page turns a handler into a View class, so one page cannot await another page's handler.
    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return await ready_response(web)

    return app


def table_sizes(app: faust.App, interval: float = 30.0) -> None:
    """Keys per table and partition-local store, exported for the dashboard's table-size panel."""
    @app.timer(interval)
    async def export_table_sizes() -> None:
        for name, table in app.tables.items():
            TABLE_KEYS.labels(table=name).set(sum(1 for _ in table.data.keys()))


def _started(client: Any) -> type[Service]:
    """A Faust service class that starts a connect-late client (start()/stop()) with the app."""

    class Started(Service):
        async def on_start(self) -> None:
            try:
                await client.start()
            except Exception as exc:  # optional dependency: every caller falls back
                log.warning("%s not reachable at start-up: %s", type(client).__name__, type(exc).__name__)

        async def on_stop(self) -> None:
            await client.stop()

    return Started


def run_worker(settings: Settings, secrets: list[str]) -> None:
    app = build_app(settings)
    worker = QuietWorker(app, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level, secrets))
    worker.execute_from_commandline()
