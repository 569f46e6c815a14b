"""Prometheus metrics shared by every process, and the JSON log setup.

Metric objects live in the default registry (prometheus-client's own process-wide registry); each process
exports them on its /metrics.
"""
from __future__ import annotations

import logging
import logging.config
import platform
import re
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info

from . import serde

__all__ = ["configure_logging", "logging_config", "publish_build_info", "observe_batch", "REQUESTS",
           "REQUEST_SECONDS", "EVENTS_ACCEPTED", "EVENTS_REJECTED", "DEAD_LETTERED", "PROCESSED",
           "PROCESSING_SECONDS", "EVENT_AGE", "DEPENDENCY_UP", "READY", "CONSUMER_LAG", "CONSUMER_COMMITTED",
           "REBALANCES", "ARCHIVE_BATCHES", "ARCHIVE_BYTES", "ARCHIVE_UPLOAD_SECONDS", "ARCHIVE_UPLOAD_FAILURES",
           "TRANSFERS_PENDING", "TRANSFERS_PENDING_AGE", "SPOOLED", "SPOOL_REPLAYED", "SPOOL_PENDING", "SPOOL_FAILED",
           "SPOOL_BYTES", "SPOOL_MAX_BYTES", "RATE_LIMITED", "TABLE_KEYS", "TABLE_MEMORY", "BUILD_INFO",
           "PARTITION_STALLS", "RESTORED_RECORDS", "RECORDS_DELETED_UNPROCESSED", "BATCHES_READ_AGAIN"]

REQUESTS = Counter("ingestflow_http_requests_total", "HTTP requests by route and status", ["route", "status"])
REQUEST_SECONDS = Histogram("ingestflow_http_request_duration_seconds", "Time to answer an HTTP request",
                            ["route", "method"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
EVENTS_ACCEPTED = Counter("ingestflow_events_accepted_total", "Items accepted by the gateway", ["kind"])
EVENTS_REJECTED = Counter("ingestflow_events_rejected_total", "Requests rejected by the gateway", ["reason"])
DEAD_LETTERED = Counter("ingestflow_dead_lettered_total", "Records parked on the dead-letter topic", ["topic"])
PROCESSED = Counter("ingestflow_processed_total", "Records processed by agents", ["agent", "outcome"])
# Two clocks: the worker's own work (from consumption) and the record's age (from its event time). A replay
# or an import carries old event times, so only the first says whether the worker itself is slow.
PROCESSING_SECONDS = Histogram("ingestflow_processing_duration_seconds",
                               "From a batch's oldest record entering its agent to the batch being durable",
                               ["agent"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
EVENT_AGE = Histogram("ingestflow_event_age_seconds", "From a batch's newest record's timestamp to its processing",
                      ["agent"], buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400,
                                          30 * 86400))
TABLE_KEYS = Gauge("ingestflow_table_keys", "Keys held by this worker per table", ["table"])
TABLE_MEMORY = Gauge("ingestflow_table_memory_bytes",
                     "RocksDB's block cache and memtables, every table of this worker (bounded by TABLE_MEMORY_MB)")
PARTITION_STALLS = Counter("ingestflow_partition_stalls_total",
                           "Partitions the watchdog sought back to their committed offset", ["topic", "partition"])
BATCHES_READ_AGAIN = Counter("ingestflow_batches_read_again_total",
                             "Batches an agent failed to handle, rolled back and read again from the last commit",
                             ["agent"])
RECORDS_DELETED_UNPROCESSED = Counter(
    "ingestflow_records_deleted_unprocessed_total",
    "Records the broker's retention deleted before a worker processed them (lost; the commit moves past them)",
    ["topic", "partition"])
RESTORED_RECORDS = Counter("ingestflow_table_restored_records_total",
                           "Changelog records read into the local table stores (recovery, standbys)", ["table"])
DEPENDENCY_UP = Gauge("ingestflow_dependency_up", "1 when the dependency answered its last check", ["dependency"])
READY = Gauge("ingestflow_ready", "1 when this process's last readiness check passed")
BUILD_INFO = Info("ingestflow_build", "The running version and the libraries that decide its behaviour")

# Consumer group, exported by each worker for the partitions it owns now (a partition it lost disappears).
CONSUMER_LAG = Gauge("ingestflow_consumer_lag", "Records of an owned partition not yet committed by the group",
                     ["group", "topic", "partition"])
CONSUMER_COMMITTED = Gauge("ingestflow_consumer_committed_offset", "The group's committed offset of an owned partition",
                           ["group", "topic", "partition"])
REBALANCES = Counter("ingestflow_rebalances_total", "Consumer group rebalances this worker went through", ["group"])

# Archive sink.
ARCHIVE_BATCHES = Counter("ingestflow_archive_batches_total", "Archive batches by outcome",
                          ["outcome"])  # archived, already-archived
ARCHIVE_BYTES = Counter("ingestflow_archive_bytes_total", "Encrypted bytes uploaded to the archive")
ARCHIVE_UPLOAD_SECONDS = Histogram("ingestflow_archive_upload_seconds", "One upload attempt to the archive",
                                   ["backend"], buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ARCHIVE_UPLOAD_FAILURES = Counter("ingestflow_archive_upload_failures_total", "Failed archive upload attempts",
                                  ["backend"])
TRANSFERS_PENDING = Gauge("ingestflow_transfer_logs_pending",
                          "transfer_logs rows pending whose batch has no success row")
TRANSFERS_PENDING_AGE = Gauge("ingestflow_transfer_logs_oldest_pending_seconds",
                            "Age of the oldest pending transfer_logs row whose batch has no success")

# Gateway spool and rate limits.
SPOOLED = Counter("ingestflow_spooled_total", "Messages appended to the gateway's disk spool")
SPOOL_REPLAYED = Counter("ingestflow_spool_replayed_total", "Spooled messages acknowledged by Kafka on replay")
SPOOL_PENDING = Gauge("ingestflow_spool_pending", "Messages in the disk spool waiting for Kafka")
SPOOL_FAILED = Gauge("ingestflow_spool_failed", "Corrupt spool stretches parked in failed/")
SPOOL_BYTES = Gauge("ingestflow_spool_bytes", "Bytes on disk in the spool's segments")
SPOOL_MAX_BYTES = Gauge("ingestflow_spool_max_bytes", "The spool's bound (SPOOL_MAX_BYTES): past it, 503")
RATE_LIMITED = Counter("ingestflow_rate_limited_total", "Requests refused by the per-IP rate limit",
                       ["endpoint", "backend"])


def publish_build_info(role: str) -> None:
    """`ingestflow_build_info{role, version, python, faust, aiokafka} 1`: which build answers on this target."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"
    BUILD_INFO.info({"role": role, "version": version("ingestflow"), "python": platform.python_version(),
                     "faust": version("faust-streaming"), "aiokafka": version("aiokafka")})


def observe_batch(agent: str, events: Sequence[Any]) -> None:
    """Once a batch is durable: the time since its oldest record entered the agent's stream (`message.time_in`,
    set by the worker's monitor on the monotonic clock) and the age of its newest record's event time."""
    if not events:
        return
    consumed = getattr(events[0].message, "time_in", None)
    if consumed is not None:
        PROCESSING_SECONDS.labels(agent=agent).observe(max(0.0, time.monotonic() - consumed))
    EVENT_AGE.labels(agent=agent).observe(max(0.0, time.time() - events[-1].message.timestamp))


# Attributes a log call may pass in `extra`, copied to the line when present: the gateway's request id (its
# trace id), an event id, and the trace id(s) of the record or batch a worker line is about.
LOG_FIELDS = ("request_id", "event_id", "trace_id", "trace_ids")


class _JsonFormatter(logging.Formatter):
    """One JSON object a line; known secrets are masked in case any code path ever formats one."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        words = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._mask = re.compile("|".join(re.escape(w) for w in words)) if words else None

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                                    "logger": record.name, "msg": record.getMessage()}
        for key in LOG_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = serde.dumps(entry).decode()
        return self._mask.sub("***", line) if self._mask else line


def logging_config(level: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A dictConfig for JSON lines on stderr; the Faust worker takes it as its own logging setup."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": _JsonFormatter, "secrets": list(secrets)}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["default"]},
        # The clients' and Faust's own INFO lines (every service's start and stop, every topic created) drown
        # ours at INFO; they show at DEBUG.
        "loggers": {name: {"level": ("INFO" if level == "DEBUG" else "WARNING") if level in ("DEBUG", "INFO")
                           else level} for name in ("aiokafka", "kafka", "faust", "mode")},
    }


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    logging.config.dictConfig(logging_config(level, secrets))
