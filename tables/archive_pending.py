"""Table `archive-pending`: each user's records waiting to be archived.

Key: the user id as a string (the `website-records` topic's key, so no repartitioning).
Value (JSON): {"p": source partition, "upto": highest source offset already applied (record or control),
"first_ts": Kafka timestamp of the oldest pending record or null, "offsets": [...], "records": [...]}
where records are already in the archived shape ({"website_uid", "cleanedJson", "context"}).
No window and no expiry: an entry lives as long as the user has records; once flushed it shrinks to its
watermark (`upto`), which makes replayed records and controls no-ops. Durable in RocksDB, rebuilt from its
changelog topic on any worker.
"""
from __future__ import annotations

from typing import Any

import faust

__all__ = ["define", "NAME"]

NAME = "archive-pending"


def define(app: faust.App, *, partitions: int) -> Any:
    return app.Table(NAME, default=None, partitions=partitions, key_type=str)
