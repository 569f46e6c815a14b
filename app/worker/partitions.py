"""Table changelogs checked against their source topics before a batch writes anything.

Faust checks that a table's changelog topic has as many partitions as the source topic on the table's first
write, against the consumer group's metadata snapshot; a changelog created moments before the group joined
can show 0 partitions there until the next metadata refresh. Raised halfway through a batch, that
PartitionsMismatch would leave some of the batch's table writes done and others not; checked first, it is a
transient failure the agent waits out (errors.is_transient) with nothing written.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_changelogs"]


async def check_changelogs(tables: Iterable[Any], source_topics: Iterable[str]) -> None:
    """Raise faust.exceptions.PartitionsMismatch unless every table's changelog matches every source topic
    (Faust caches a passed check, so after the first batch this is a set lookup per table)."""
    topics = list(source_topics)
    for table in tables:
        for topic in topics:
            getattr(table, "table", table)._verify_source_topic_partitions(topic)  # a windowed table's own table
