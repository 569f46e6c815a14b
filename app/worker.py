"""The Faust worker: builds the app from settings, wires topics, tables and agents, and runs it.

Processing is exactly-once (Kafka transactions): table changelogs and consumer offsets commit together,
so a killed worker never double-counts an event. More workers with the same app id share the partitions.
"""
from __future__ import annotations

import logging
from typing import Any

import faust
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingestflow.agents import rule_metrics
from ingestflow.schemas import topics
from ingestflow.tables import rule_daily

from .db import Database
from .metrics_store import MetricsStore
from .settings import Settings

__all__ = ["build_app", "run_worker"]

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    settings.table_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap_servers],
        store="rocksdb://",
        datadir=str(settings.table_dir),
        processing_guarantee="exactly_once",
        topic_partitions=topics.EVENTS.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_bind=settings.host,
        web_host=settings.host,
        web_port=settings.worker_port,
        web_in_thread=False,
        producer_acks=-1,
        broker_commit_interval=1.0,
        table_cleanup_interval=300.0,
        stream_wait_empty=False,
        autodiscover=False,
        loghandlers=[],
    )
    db = Database(settings.database_url.get(), max_size=5)

    class Resources(Service):
        """Connects the stores the agents write to before any agent runs, and closes them last."""

        async def on_start(self) -> None:
            await db.start()

        async def on_stop(self) -> None:
            await db.stop()

    app.service(Resources)

    def topic(spec: topics.TopicSpec) -> Any:
        return app.topic(spec.name, partitions=spec.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    events = topic(topics.EVENTS)
    dead_letters = topic(topics.DEAD_LETTERS)
    rule_table = rule_daily.define(app, partitions=topics.EVENTS.partitions)
    rule_metrics.register(app, events=events, dead_letters=dead_letters, table=rule_table,
                          store=MetricsStore(db))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "worker": settings.worker_id})

    return app


def run_worker(settings: Settings) -> None:
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
