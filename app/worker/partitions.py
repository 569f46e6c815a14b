"""Table changelogs checked against their source topics before a batch writes anything.

Faust checks that a table's changelog topic has as many partitions as the source topic on the table's first
write, against the consumer group's metadata snapshot; a changelog created moments before the group joined
shows 0 partitions there until the consumer next refreshes its metadata, which on its own happens only every
metadata max age (5 minutes): a new deployment's first worker sat idle that long. Raised halfway through a
batch, that PartitionsMismatch would leave some of the batch's table writes done and others not; checked
first, it is a transient failure the agent waits out (errors.is_transient) with nothing written, and the
consumer is asked to refresh its metadata at once, so the wait lasts until the broker knows the changelog.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from faust.exceptions import PartitionsMismatch

__all__ = ["check_changelogs"]

log = logging.getLogger(__name__)


async def check_changelogs(app: Any, tables: Iterable[Any], source_topics: Iterable[str]) -> None:
    """Raise faust.exceptions.PartitionsMismatch unless every table's changelog matches every source topic
    (Faust caches a passed check, so after the first batch this is a set lookup per table)."""
    topics = list(source_topics)
    try:
        for table in tables:
            for topic in topics:
                getattr(table, "table", table)._verify_source_topic_partitions(topic)  # a windowed table's own
    except PartitionsMismatch:
        try:
            await refresh_metadata(app)
        except Exception as exc:  # the periodic refresh still comes; the check's own error is the one to raise
            log.warning("consumer metadata refresh failed: %r", exc)
        raise


async def refresh_metadata(app: Any) -> None:
    """The group's consumer fetches cluster metadata now (in its own thread and loop); a changed topic list
    updates its metadata snapshot and makes it rejoin, so the new changelog partitions get assigned too."""
    thread = app.consumer._thread
    await thread.call_thread(lambda: thread._ensure_consumer()._client.force_metadata_update())
