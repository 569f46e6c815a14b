"""Prometheus metrics shared by every process, and the JSON log setup.

Metric objects live in the default registry (prometheus-client's own process-wide registry); each process
exports them on its /metrics.
"""
from __future__ import annotations

import logging
import logging.config
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from . import serde

__all__ = ["configure_logging", "logging_config", "REQUESTS", "EVENTS_ACCEPTED", "EVENTS_REJECTED", "DEAD_LETTERED",
           "PROCESSED", "PROCESSING_LATENCY", "DEPENDENCY_UP", "ARCHIVE_BATCHES", "ARCHIVE_BYTES", "ARCHIVE_UPLOAD_SECONDS", "TRANSFER_FAILURES",
           "SPOOLED", "SPOOL_REPLAYED", "SPOOL_PENDING", "SPOOL_FAILED", "RATE_LIMITED", "TABLE_KEYS"]

REQUESTS = Counter("ingestflow_http_requests_total", "HTTP requests by route and status", ["route", "status"])
EVENTS_ACCEPTED = Counter("ingestflow_events_accepted_total", "Items accepted by the gateway", ["kind"])
EVENTS_REJECTED = Counter("ingestflow_events_rejected_total", "Requests rejected by the gateway", ["reason"])
DEAD_LETTERED = Counter("ingestflow_dead_lettered_total", "Records parked on the dead-letter topic", ["topic"])
PROCESSED = Counter("ingestflow_processed_total", "Records processed by agents", ["agent", "outcome"])
PROCESSING_LATENCY = Histogram("ingestflow_processing_latency_seconds",
                               "From the record's timestamp to its processing", ["agent"],
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
TABLE_KEYS = Gauge("ingestflow_table_keys", "Keys held by this worker per table", ["table"])
DEPENDENCY_UP = Gauge("ingestflow_dependency_up", "1 when the dependency answered its last check", ["dependency"])

# Archive sink.
ARCHIVE_BATCHES = Counter("ingestflow_archive_batches_total", "Archive batches by outcome",
                          ["outcome"])  # archived, already-archived
ARCHIVE_BYTES = Counter("ingestflow_archive_bytes_total", "Encrypted bytes uploaded to the archive")
ARCHIVE_UPLOAD_SECONDS = Histogram("ingestflow_archive_upload_seconds", "One upload attempt to the archive",
                                   ["backend"], buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
TRANSFER_FAILURES = Counter("ingestflow_transfer_failures_total", "Failed archive upload attempts")

# Gateway spool and rate limits (issue 3).
SPOOLED = Counter("ingestflow_spooled_total", "Messages appended to the gateway's disk spool")
SPOOL_REPLAYED = Counter("ingestflow_spool_replayed_total", "Spooled messages acknowledged by Kafka on replay")
SPOOL_PENDING = Gauge("ingestflow_spool_pending", "Messages in the disk spool waiting for Kafka")
SPOOL_FAILED = Gauge("ingestflow_spool_failed", "Corrupt spool stretches parked in failed/")
RATE_LIMITED = Counter("ingestflow_rate_limited_total", "Requests refused by the per-IP rate limit",
                       ["endpoint", "backend"])


class _JsonFormatter(logging.Formatter):
    """One JSON object a line; known secrets are masked in case any code path ever formats one."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        words = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._mask = re.compile("|".join(re.escape(w) for w in words)) if words else None

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                                    "logger": record.name, "msg": record.getMessage()}
        for key in ("request_id", "event_id"):
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
        "loggers": {name: {"level": "WARNING" if level in ("DEBUG", "INFO") else level}
                    for name in ("aiokafka", "kafka")},
    }


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    logging.config.dictConfig(logging_config(level, secrets))
