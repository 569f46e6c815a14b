"""Table `archive-pending`: each user's records waiting to be archived.

Key: the user id as a string (the `website-records` topic's key, so no repartitioning).
Value (JSON): {"p": source partition, "upto": highest source offset already applied (record or control),
"first_ts": Kafka timestamp of the oldest pending record or null, "offsets": [...], "records": [...],
"traces": [...]} where records are already in the archived shape ({"website_uid", "cleanedJson", "context"})
and traces are the distinct trace ids of the pending records (app/core/tracing.py; absent in values written
before they were kept).
No window and no expiry: an entry lives as long as the user has records; once flushed it shrinks to its
watermark (`upto`), which makes replayed records and controls no-ops. Durable in RocksDB, rebuilt from its
changelog topic on any worker.

Size: every value is one changelog record, so it stays within MAX_VALUE_BYTES, below the worker producer's
MAX_RECORD_BYTES (app/core/limits.py) with room for the key and the batch framing. `value_bytes` bounds a
value's JSON from its records alone (so the bound decides the same way whatever the grouping of events):
the agent cuts a user's batch before a record that would pass it, and a record that alone would is
archived as a batch of its own without entering the table (agents/archive.py).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust

from ingestflow.app.core import serde, tracing
from ingestflow.app.core.limits import MAX_RECORD_BYTES

__all__ = ["define", "NAME", "MAX_VALUE_BYTES", "EMPTY_BYTES", "record_bytes", "value_bytes"]

NAME = "archive-pending"
MAX_VALUE_BYTES = MAX_RECORD_BYTES - 100_000
EMPTY_BYTES = 140  # {"p", "upto", "first_ts", "offsets": [], "records": [], "traces": []}, the widest numbers
# A record's offset (at most 20 digits), the two commas besides its JSON, and its trace id when new (quoted,
# a comma).
PER_RECORD_BYTES = 22 + tracing.MAX_LENGTH + 3


def record_bytes(record: dict[str, Any]) -> int:
    """What one record adds to a value, at most."""
    return len(serde.dumps(record)) + PER_RECORD_BYTES


def value_bytes(records: Iterable[dict[str, Any]]) -> int:
    """An upper bound of the JSON size of a value holding these records."""
    return EMPTY_BYTES + sum(record_bytes(r) for r in records)


def define(app: faust.App, *, partitions: int) -> Any:
    return app.Table(NAME, default=None, partitions=partitions, key_type=str)
