"""The Faust worker: builds the app from settings, wires topics, tables and agents, and runs it.

Processing is exactly-once (Kafka transactions): table changelogs and consumer offsets commit together,
so a killed worker never double-counts an event. More workers with the same app id share the partitions.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from ingestflow.agents import archive as archive_agent
from ingestflow.agents import crawl as crawl_agent
from ingestflow.agents import donations as donations_agent
from ingestflow.agents import leaderboards as leaderboard_jobs
from ingestflow.agents import rule_metrics
from ingestflow.agents.dead_letter import DeadLetters
from ingestflow.app.archive import backend_for
from ingestflow.app.archive.crypto import Keyring
from ingestflow.app.archive.sink import ArchiveSink
from ingestflow.app.archive.state import ArchiveState
from ingestflow.app.archive.transfer_logs import TransferLogs
from ingestflow.app.clients.db import Database
from ingestflow.app.clients.kafka import Producer, ensure_topics, partition_counts
from ingestflow.app.clients.lifecycle import Clients
from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.clock import SystemClock
from ingestflow.app.core.errors import ConfigError
from ingestflow.app.core.observability import (DEAD_LETTERED, TABLE_KEYS, TRANSFERS_PENDING, TRANSFERS_PENDING_AGE,
                                               logging_config, publish_build_info)
from ingestflow.app.core.settings import Settings
from ingestflow.app.core.ttlcache import TtlCache
from ingestflow.app.stores.crawl_store import CrawlStore
from ingestflow.app.stores.donation_store import DonationStore
from ingestflow.app.stores.leaderboard_store import LeaderboardStore
from ingestflow.app.stores.metrics_store import MetricsStore
from ingestflow.app.web import routes_read
from ingestflow.app.web.health import Probe, ProbeCache, Readiness, readiness, summary, watch
from ingestflow.app.web.ratelimit import RateLimiter
from ingestflow.app.web.routes_read import ReadContext
from ingestflow.schemas import topics
from ingestflow.tables import (archive_pending, archive_seen, dedup_keys, rule_catalog, rule_daily, rule_trending,
                               view_guard)

from .commit_gate import CommitGate, gated_transactions
from .consumer import delivered_now
from .faust_app import QuietWorker, new_app, prometheus_sensors
from .lag import export_consumer_lag
from .state_store import limit_malloc_arenas

__all__ = ["build_app", "run_worker"]

log = logging.getLogger(__name__)


def build_app(settings: Settings, *, events_partitions: int) -> faust.App:
    """The worker app; `events_partitions` is the partition count `events` and `rules` have on the broker."""
    if not settings.lighthouse_private_key:
        # A worker without it would leave every record unarchived while the gateway accepts them.
        raise ConfigError("LIGHTHOUSE_PRIVATE_KEY", "is required by the worker (it encrypts the archive)")
    app = new_app(settings)
    db = Database(settings.database_url.get(), max_size=5, acquire_timeout=settings.database_acquire_timeout_s)
    redis = RedisClient(settings.redis_url.get())
    # Connected before any agent runs, closed after them. None is fatal at start-up: PostgreSQL, Redis and Kafka
    # reconnect on use (the partitions wait and nothing is acknowledged meanwhile); readiness reports them.
    clients = Clients().add("postgres", db).add("redis", redis)
    app.service(clients.service())

    def topic(spec: topics.TopicSpec) -> Any:
        return app.topic(spec.name, partitions=spec.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    dead_letters = DeadLetters(topic(topics.DEAD_LETTERS), worker=settings.worker_id)
    # Every commit sees a batch's table writes whole, and no batch writes for a partition revoked since it
    # was delivered (app/worker/commit_gate.py); the consumer is built at start.
    async def hand_over() -> None:
        """A batch's records to the producer, its table changes on their way to the changelogs."""
        await app.producer.buffer.flush()
        transactions: Any = app.consumer.transactions  # the gated transaction manager set below
        transactions.send_changes()

    gate = CommitGate(hand_over, current=lambda event: delivered_now(app, event))
    setattr(app.transport, "TransactionManager", gated_transactions(gate))  # this app's transport only
    # --- Analytics: one agent over the co-partitioned `events` + `rules` topics, local tables only.
    leaderboards = LeaderboardStore(db, redis, size=settings.leaderboard_size)
    metrics = MetricsStore(db, settings.weights)
    parts = events_partitions
    analytics_tables = rule_metrics.Tables(
        daily=rule_daily.define(app, partitions=parts),
        dedup_keys=dedup_keys.define(app, partitions=parts, retention_days=settings.dedup_retention_days),
        view_guard=view_guard.define(app, partitions=parts),
        catalog=rule_catalog.define(app, partitions=parts),
        trending=rule_trending.define(app, partitions=parts))
    events_and_rules = app.chunked_topic(topics.EVENTS.name, topics.RULES.name, partitions=parts)
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
    # --- Archive: per-user encrypted batches to Lighthouse / IPFS / local, see agents/archive.py.
    backend = backend_for(settings)
    control = Producer(settings.kafka, send_timeout=settings.kafka_send_timeout_s, client_id="ingestflow-archive-timer")
    clients.add("archive", backend, required=True).add("archive control producer", control)
    keyring = Keyring(settings.lighthouse_private_key.get(), tuple(k.get() for k in settings.archive_old_keys))
    archive_agent.register(
        app, records=topic(topics.RECORDS), dead_letters=dead_letters,
        table=archive_pending.define(app, partitions=topics.RECORDS.partitions),
        seen=archive_seen.define(app, partitions=topics.RECORDS.partitions,
                                 retention_days=settings.dedup_retention_days),
        sink=ArchiveSink(backend, TransferLogs(db), keyring, app_id=settings.worker_id,
                         concurrency=settings.archive_concurrency),
        state=ArchiveState(db, settings.worker_id, settings.cron_schedule), producer=control, clock=SystemClock(),
        settings=settings, gate=gate)
    # --- end archive

    prometheus_sensors(app)
    export_consumer_lag(app, [spec.name for spec in topics.CONSUMED])
    transfer_log_gauges(app, TransferLogs(db))
    publish_build_info("worker")
    for spec in topics.CONSUMED:  # exported at 0, so the first dead letter of each topic shows as an increase
        DEAD_LETTERED.labels(topic=spec.name)
    expire_closed_windows(app, settings.table_expiry_interval_s)
    # The GET reads, served here as on the gateway (from the shared stores, so every worker answers alike).
    web = app.web
    assert isinstance(web, AiohttpWeb)  # the driver of web="aiohttp://" (Faust's default)
    clock = SystemClock()
    routes_read.mount(web.web_app, ReadContext(
        settings=settings, clock=clock, db=db, metrics=metrics, leaderboards=leaderboards,
        limiter=RateLimiter(redis, clock, {"reads": settings.rate_limit_reads_per_min}),
        cache=TtlCache(settings.read_cache_s)))
    table_sizes(app)

    probe_producer = Producer(settings.kafka, send_timeout=2.0, client_id="ingestflow-health")
    archive_probe = backend_for(settings)  # its own client: probing never competes with uploads
    clients.add("kafka health probe", probe_producer).add("archive health probe", archive_probe)
    probes = [Probe("kafka", probe_producer.ping), Probe("postgres", db.ping),
              Probe("redis", redis.ping, required=False), Probe("archive", archive_probe.ping)]
    probe_cache: ProbeCache = TtlCache(settings.health_cache_s)

    @app.page("/health/live")
    async def live(web: Any, request: Any) -> Any:
        return web.json({"status": "alive", "worker": settings.worker_id})

    async def evaluate() -> tuple[bool, Readiness]:
        ok, body = await readiness(probes, probe_cache)
        if app.rebalancing:
            return False, summary(False, body["dependencies"],
                                  [*body.get("reasons", []), "kafka: consumer group is rebalancing"])
        return ok, body

    async def ready_response(web: Any) -> Any:
        ok, body = await evaluate()
        return web.json({**body, "worker": settings.worker_id}, status=200 if ok else 503)

    @app.task
    async def probe_readiness() -> None:
        async def ready() -> bool:
            return (await evaluate())[0]
        await watch(ready, settings.health_probe_interval_s)

    @app.page("/health/ready")
    async def ready(web: Any, request: Any) -> Any:
        return await ready_response(web)

    # app.page turns a handler into a View class, so one page cannot await another page's handler.
    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return await ready_response(web)

    return app


def table_sizes(app: faust.App, interval: float = 30.0) -> None:
    """Keys per table held by this worker (RocksDB's estimate: no scan), for the dashboard's table-size panel."""
    @app.timer(interval)
    async def export_table_sizes() -> None:
        for name, table in app.tables.items():
            TABLE_KEYS.labels(table=name).set(table.data.estimated_keys())


def expire_closed_windows(app: faust.App, interval: float) -> None:
    """Every `interval` (Faust's own cleanup cadence), the keys of closed windows leave the tables' stores
    and changelogs (app/worker/commit_gate.py, state_table.py)."""
    @app.timer(interval, name="expire-closed-windows")
    async def expire() -> None:
        if app.rebalancing:
            return
        transactions: Any = app.consumer.transactions  # app/worker/commit_gate.py's
        try:
            expired = await transactions.expire_windows()
        except Exception as exc:  # Kafka unavailable: the next round tries again
            log.warning("window expiry: %s: %s", type(exc).__name__, exc)
            return
        if expired:
            log.info("expired %d keys of closed windows", expired)


def transfer_log_gauges(app: faust.App, logs: TransferLogs, interval: float = 30.0) -> None:
    """transfer_logs rows left `pending` (no success for their batch), for the alert on stuck uploads."""
    @app.timer(interval, name="transfer-log-gauges")
    async def export_transfer_logs() -> None:
        try:
            summary = await logs.summary()
        except Exception as exc:  # PostgreSQL down: readiness reports it; the gauges keep their last figures
            log.debug("transfer_logs summary: %s", type(exc).__name__)
            return
        TRANSFERS_PENDING.set(summary.pending)
        TRANSFERS_PENDING_AGE.set(summary.oldest_pending_s or 0.0)


def events_partitions(settings: Settings) -> int:
    """Creates missing topics (`events` and `rules` with EVENTS_PARTITIONS) and returns the partition count
    `events` has: the one the tables must use. Runs before Faust's event loop exists, in its own thread."""
    async def check() -> int:
        await ensure_topics(settings.kafka, topics.specs(settings.events_partitions))
        counts = await partition_counts(settings.kafka, (topics.EVENTS.name, topics.RULES.name))
        events, rules = counts.get(topics.EVENTS.name), counts.get(topics.RULES.name)
        if events is None or events != rules:
            raise ConfigError("EVENTS_PARTITIONS", f"`events` has {events} partitions and `rules` {rules}: they must be "
                                                   "equal (co-partitioned), see docs/scaling.md")
        if events != settings.events_partitions:
            log.warning("`events` has %d partitions; EVENTS_PARTITIONS=%d applies only when the topic is created "
                        "(docs/scaling.md explains how to grow)", events, settings.events_partitions)
        return events

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, check()).result()


def run_worker(settings: Settings, secrets: list[str]) -> None:
    limit_malloc_arenas()
    app = build_app(settings, events_partitions=events_partitions(settings))
    worker = QuietWorker(app, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logging_config(settings.log_level, secrets))
    worker.execute_from_commandline()
