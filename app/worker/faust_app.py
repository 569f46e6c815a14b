"""The Faust app as every ingestflow process runs it: exactly-once, raw bytes in and out (our own orjson
decoding, app/core/serde.py), tables on a committed-only RocksDB store in a fixed memory budget
(app/worker/state_store.py, state_table.py) recovered without waiting for records that never come
(app/worker/recovery.py), a consumer whose deliveries, seeks and acks stay consistent and whose watchdog
seeks stalled partitions back (app/worker/consumer.py), and the Faust settings that decide its speed.

`new_app` is shared by the worker (app/worker/app.py) and the benchmark's bare-Faust baseline, so the
benchmark's framework ceiling runs with exactly the worker's settings.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from time import monotonic
from typing import Any

import faust
from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage
from faust.web import Web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from ingestflow.app.clients.kafka_security import broker_credentials
from ingestflow.app.core.limits import MAX_RECORD_BYTES
from ingestflow.app.core.observability import REBALANCES, TABLE_MEMORY
from ingestflow.app.core.settings import Settings

from .chunks import Chunk
from .consumer import consistent_delivery
from .recovery import PromptTableManager
from .state_store import RocksMemory
from .state_table import state_table

__all__ = ["new_app", "DrainingBuffer", "IngestflowApp", "OwnPagesOnly", "QuietWorker", "LeanPrometheusMonitor", "prometheus_sensors"]

# Chunks waiting for an agent per chunked topic: a chunk holds up to one fetch (1 MiB) of a partition.
CHUNK_QUEUE = 32


class OwnPagesOnly(AiohttpWeb):
    """Faust's aiohttp server without Faust's built-in pages: `/table/<name>/<key>/` hands any table's values
    (users' pending archive records, in plaintext) and `/router` the partition map to whoever reaches the
    port, and its index answers `{"status": "OK"}` whatever the worker's state. The worker serves only the
    pages it adds itself: health, /metrics and the documented reads (app/worker/app.py)."""

    default_blueprints = ()
    production_blueprints = ()
    debug_blueprints = ()
    optional_blueprints = ()


class DrainingBuffer(ProducerBuffer):
    """Faust's producer buffer (records agents send wait there for a background task to hand them to the
    producer), with a flush that returns once every record queued was handed over.
    Faust's returns when the queue is empty, while the record taken last may still be on its way, and
    gives up whenever one hand-over takes more than 0.1 s (a slow or distant broker): the commit gate
    (app/worker/commit_gate.py) then committed a transaction without records of a batch it had acked."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._handing_over = 0

    async def _send_pending(self, fut: FutureMessage) -> None:
        self._handing_over += 1
        try:
            await super()._send_pending(fut)
        finally:
            self._handing_over -= 1

    async def flush(self) -> None:
        while self.size or self._handing_over:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


def draining_buffer(app: faust.App) -> DrainingBuffer:
    """The app producer's buffer, replaced by a DrainingBuffer before the producer starts it."""
    producer: Any = app.producer
    buffer = DrainingBuffer(loop=producer.loop, beacon=producer.beacon)
    buffer.app = app
    producer.buffer = buffer
    return buffer


class IngestflowApp(faust.App):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunked_topics: set[str] = set()  # delivered in chunks by the consumer (app/worker/chunks.py)

    def _new_web(self) -> Web:
        return OwnPagesOnly(self)

    def topic(self, *topics: str, maxsize: int | None = None, **kwargs: Any) -> Any:
        """Faust's, with `maxsize` (the stream buffer of the topic's channel) applied: Faust's App.topic drops
        it, so every topic buffered `stream_buffer_maxsize` (4,096) events whatever was asked, and a chunked
        topic 4,096 chunks: a worker behind on a backlog held millions of fetched records."""
        topic = super().topic(*topics, **kwargs)
        if maxsize is not None:
            topic.maxsize = maxsize
        return topic

    def chunked_topic(self, *names: str, partitions: int) -> Any:
        """A raw-bytes topic (one channel over `names`) whose partitions reach its agent as chunks."""
        self.chunked_topics.update(names)
        return self.topic(*names, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", maxsize=CHUNK_QUEUE)


def new_app(settings: Settings, *, app_id: str | None = None, web: bool = True) -> IngestflowApp:
    settings.table_dir.mkdir(parents=True, exist_ok=True)
    memory = RocksMemory(settings.table_memory_mb)
    TABLE_MEMORY.set_function(memory.used_bytes)  # read at each scrape
    app = IngestflowApp(
        app_id or settings.worker_id,
        broker=[f"kafka://{b}" for b in settings.kafka.bootstrap_servers],
        broker_credentials=broker_credentials(settings.kafka),  # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
        store="rocksdb://",
        Table=state_table(memory),
        TableManager=PromptTableManager,
        datadir=str(settings.table_dir),
        processing_guarantee="exactly_once",
        # Names this worker in the group's member list (`ingestflow status`): host and the /metrics port.
        broker_client_id=f"{app_id or settings.worker_id}@{socket.gethostname()}:{settings.worker_port}",
        topic_partitions=settings.events_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=web,
        web_bind=settings.host,
        web_host=settings.host,
        web_port=settings.worker_port,
        web_in_thread=False,
        producer_acks=-1,
        # Records agents send (dead letters, notifications) share produce requests of up to 50 ms. Commits
        # still wait for every record (a transaction's commit flushes the producer); table changes go to
        # their changelogs with the commit itself (app/worker/changelog_batches.py).
        producer_linger=0.05,
        # Stated, not left to Faust's default or its PRODUCER_MAX_REQUEST_SIZE variable: the archive's pending
        # values (tables/archive_pending.py) and the dead letters (schemas/dead_letters.py) are bounded by it.
        producer_max_request_size=MAX_RECORD_BYTES,
        # Under load a commit (one transaction per partition) every interval; once caught up, at once
        # (app/worker/consumer.py, `caught_up`).
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=100_000,
        table_cleanup_interval=300.0,
        # A rebalance does not wait for the batches in flight: their acks no longer count once it starts
        # (app/worker/consumer.py), so their events are delivered again and the dedup keeps them once.
        stream_wait_empty=False,
        autodiscover=False,
        loghandlers=[],
    )
    setattr(app.transport, "Consumer",  # this app's only
            consistent_delivery(app.transport.Consumer, stall_check_s=settings.stall_check_s))
    # At Faust's default bound of 100 the streams pause to drain the buffer every hundred records sent; a
    # batch may send more than that (dead letters, and changelog records when not exactly-once).
    draining_buffer(app).max_messages = 10_000
    return app


def prometheus_sensors(app: faust.App) -> None:
    """Faust's own sensors (events, rebalances) on /metrics, next to ingestflow's: both live in
    prometheus-client's default registry."""
    setup_prometheus_sensors(app, name_prefix="faust")
    monitor = app.monitor  # typed as faust's base Monitor; setup_prometheus_sensors just set a PrometheusMonitor
    assert isinstance(monitor, PrometheusMonitor)
    app.monitor = LeanPrometheusMonitor(metrics=monitor._metrics)
    REBALANCES.labels(group=app.conf.id)  # at 0 before the first rebalance, so that one counts too


class LeanPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor cut to what the dashboard reads (events in, rebalances). Its per-table-
    operation, per-send and per-message hooks ran on every table read and write, every changelog record and
    every message, each with a labelled-metric lookup: about 10% of the analytics pipeline's CPU. Consumer
    lag is exported per owned partition by app/worker/lag.py, not from Faust's offset gauges (those kept
    a partition's last figure in whichever worker had read it)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        message.time_in = monotonic()  # where ingestflow_processing_duration_seconds starts

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        message = event.message  # the dashboard's events/s: a chunk counts its records
        self._metrics.total_events.inc(len(message.records) if isinstance(message, Chunk) else 1)

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        pass

    def on_tp_commit(self, tp_offsets: Any) -> None:
        pass

    def on_rebalance_start(self, app: Any) -> dict[Any, Any]:
        REBALANCES.labels(group=app.conf.id).inc()
        state: dict[Any, Any] = super().on_rebalance_start(app)
        return state

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        """Faust logs a failed send (a fenced producer, a broker error) and fails its future before calling
        this; its Prometheus version then timed the send from `on_send_initiated`'s state, None here, and
        raised TypeError in the callback."""


class QuietWorker(faust.Worker):
    """faust.Worker sets the root logger to DEBUG for its terminal spinner whenever the level is WARN or
    above, so every library's debug call built a LogRecord (4% of the pipeline's CPU in `faust.topics`
    alone). The root logger keeps the level our logging config gives it."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
