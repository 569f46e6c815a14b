"""Table `view-guard`: per rule, client IP and UTC day, the views counted and when the last one was.

Key: "ruleId<US>ip" (co-partitioned with `events`). Value: agents.dedup.ViewState as JSON. Window: tumbling
one UTC day on event time, expired after two days: the cap is per day, and the 10-minute repeat check looks
at most into the previous day.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

__all__ = ["define", "key"]

DAY = timedelta(days=1)


def define(app: faust.App, *, partitions: int) -> Any:
    table = app.Table("view-guard", default=dict, partitions=partitions, key_type=str)
    return table.tumbling(DAY, expires=2 * DAY).relative_to_stream()


def key(rule_id: str, ip: str) -> str:
    return f"{rule_id}\x1f{ip}"
