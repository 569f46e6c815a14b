"""The Faust app as every ingestflow process runs it: exactly-once, raw bytes in and out (our own orjson
decoding, app/serde.py), RocksDB tables, a consumer that commits only acks of the current generation
(app/rebalance_acks.py), and the Faust settings that decide its speed.

`new_app` is shared by the worker (app/worker.py) and the benchmark's bare-Faust baseline, so the
benchmark's framework ceiling runs with exactly the worker's settings.
"""
from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors

from ingestflow.schemas import topics

from .rebalance_acks import current_generation_acks
from .settings import Settings

__all__ = ["new_app", "QuietWorker", "LeanPrometheusMonitor", "prometheus_sensors"]


def new_app(settings: Settings, *, app_id: str | None = None, web: bool = True) -> faust.App:
    settings.table_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id or settings.worker_id,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap_servers],
        store="rocksdb://",
        datadir=str(settings.table_dir),
        processing_guarantee="exactly_once",
        topic_partitions=topics.EVENTS.partitions,
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
        # Changelog records go out in batches of up to 50 ms instead of one produce request per table write:
        # +50% on bench/bench_pipeline.py. Commits still wait for every record (a transaction's commit
        # flushes the producer), so this adds latency only within the 1 s commit interval.
        producer_linger=0.05,
        broker_commit_interval=1.0,
        table_cleanup_interval=300.0,
        # A rebalance does not wait for the batches in flight: their acks no longer count once it starts
        # (app/rebalance_acks.py), so their events are delivered again and the dedup keeps them once.
        stream_wait_empty=False,
        autodiscover=False,
        loghandlers=[],
    )
    setattr(app.transport, "Consumer", current_generation_acks(app.transport.Consumer))  # this app's only
    # Table writes queue changelog messages in Faust's producer buffer; at its default bound of 100 the
    # streams pause to drain it every hundred writes. A batch of ours writes more than that at once.
    app.producer.buffer.max_messages = 10_000
    return app


def prometheus_sensors(app: faust.App) -> None:
    """Faust's own sensors (offsets per partition, so consumer lag; events; rebalances) on /metrics, next
    to ingestflow's: both live in prometheus-client's default registry."""
    setup_prometheus_sensors(app, name_prefix="faust")
    monitor = app.monitor  # typed as faust's base Monitor; setup_prometheus_sensors just set a PrometheusMonitor
    assert isinstance(monitor, PrometheusMonitor)
    app.monitor = LeanPrometheusMonitor(metrics=monitor._metrics)


class LeanPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor cut to what the dashboard reads (events in, partition end offsets,
    committed offsets, rebalances). Its per-table-operation, per-send and per-message hooks ran on every
    table read and write, every changelog record and every message, each with a labelled-metric lookup:
    about 10% of the analytics pipeline's CPU."""

    def __init__(self, metrics: Any, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._end_offset_gauges: dict[Any, Any] = {}

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self._metrics.total_events.inc()  # the dashboard's events/s

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        # Called for every message; the labelled child is looked up once per partition.
        gauge = self._end_offset_gauges.get(tp)
        if gauge is None:
            gauge = self._end_offset_gauges[tp] = self._metrics.topic_partition_end_offset.labels(
                topic=tp.topic, partition=tp.partition)
        gauge.set(offset)

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


class QuietWorker(faust.Worker):
    """faust.Worker sets the root logger to DEBUG for its terminal spinner whenever the level is WARN or
    above, so every library's debug call built a LogRecord (4% of the pipeline's CPU in `faust.topics`
    alone). The root logger keeps the level our logging config gives it."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
