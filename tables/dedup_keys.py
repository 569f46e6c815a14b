"""Table `dedup-keys`: when each event id (the idempotency key when given) was last seen, per rule.

Key: "ruleId<US>eventId" (co-partitioned with `events`, keyed by ruleId). Value: the record
timestamp (s) of the key's last sighting. Window: tumbling, one retention period (DEDUP_RETENTION_DAYS) wide,
expired after two periods; a lookup reads the event's window and the one before, so every sighting within
the retention is found while the table stays bounded (no ever-growing set).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

__all__ = ["define", "key"]


def define(app: faust.App, *, partitions: int, retention_days: int) -> Any:
    period = timedelta(days=retention_days)
    table = app.Table("dedup-keys", default=float, partitions=partitions, key_type=str)
    return table.tumbling(period, expires=2 * period).relative_to_stream()


def key(rule_id: str, idempotency_key: str) -> str:
    return f"{rule_id}\x1f{idempotency_key}"
