"""Table `rule-catalog`: the rule -> author side of the stream-table join.

Key: ruleId (the `rules` catalog topic and `events` are both keyed by ruleId, so this table is
co-partitioned with the events that look it up). Value: {"authorId", "source": "catalog"|"event", "title"}.
Filled from the compacted `rules` topic; an event's own `authorId` fills it only while the catalog has no
entry, and a catalog entry always wins. Not windowed: one small entry per rule, deleted by a tombstone.
"""
from __future__ import annotations

from typing import Any

import faust

__all__ = ["define", "resolve"]


def define(app: faust.App, *, partitions: int) -> Any:
    return app.Table("rule-catalog", default=None, partitions=partitions, key_type=str)


def resolve(entry: dict[str, Any] | None, event_author: str | None) -> dict[str, Any] | None:
    """The entry to store after an event, or None when nothing changes."""
    if event_author and (entry is None or (entry["source"] == "event" and entry["authorId"] != event_author)):
        return {"authorId": event_author, "source": "event", "title": None}
    return None
