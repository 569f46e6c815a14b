"""Table `rule-daily`: per rule and UTC day, how many events of each type counted.

Key: ruleId (the `events` topic's key, so no repartitioning). Value: {"VIEW": n, "COPY": n, ...}.
Window: tumbling one day on event time (the Kafka record timestamp), kept MAX_EVENT_AGE_DAYS (35) days,
then expired. Durable in RocksDB and rebuilt from its changelog topic on any worker.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import faust

from ingestflow.app.core.limits import MAX_EVENT_AGE_DAYS

__all__ = ["define", "add_counts", "day_of_window", "window_start"]

DAY = timedelta(days=1)
RETENTION = timedelta(days=MAX_EVENT_AGE_DAYS)


def define(app: faust.App, *, partitions: int) -> Any:
    table = app.Table("rule-daily", default=dict, partitions=partitions, key_type=str)
    return table.tumbling(DAY, expires=RETENTION).relative_to_stream()


def add_counts(counts: dict[str, int], added: dict[str, int]) -> dict[str, int]:
    """The window operation for a batch: one changelog record for all of a batch's events of a rule-day
    (a new dict, so the changelog records the whole value)."""
    updated = dict(counts)
    for kind, n in added.items():
        updated[kind] = updated.get(kind, 0) + n
    return updated


def window_start(ts: float) -> float:
    return ts - (ts % DAY.total_seconds())


def day_of_window(start: float) -> date:
    return datetime.fromtimestamp(start, timezone.utc).date()
