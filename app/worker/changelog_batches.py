"""Under exactly-once, a table's changes reach its changelog as record batches in the partition's open
transaction, sent while the agents go on and awaited by the commit.

Faust sends one changelog record per table write as it is made: a FutureMessage, a trip through the
producer buffer, an aiokafka send with its own future and callbacks, about a quarter of the worker's time
per event. Those records count only once their transaction commits, and until then the store holds the
transaction's writes anyway (app/worker/state_store.py). So after each batch of an agent (under the commit
gate, app/worker/commit_gate.py) the changes not sent yet, each key once with its last value, are sent
through the partition's transactional producer as closed record batches, and the commit waits for Kafka to
have taken them before it commits. No record has a future of its own, and the broker writes one batch
while the worker computes the next. Keys and values are the bytes Faust's changelog records carry.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["send_changes", "batches", "BATCH_BYTES"]

BATCH_BYTES = 512 * 1024  # under the broker's default max.message.bytes (1 MiB)


async def send_changes(producer: Any, changes: Sequence[tuple[Any, Mapping[bytes, bytes | None]]],
                       partition: int) -> int:
    """Sends each table's changes (None deletes) to its changelog's `partition` through `producer` (the
    partition's transactional aiokafka producer, in its open transaction) and waits for Kafka to take them;
    notes each store's last changelog offset; returns the records sent. The tables' changelogs are sent side
    by side: each one's batches follow each other, as aiokafka sends one batch of a partition at a time."""
    async def send(table: Any, table_changes: Mapping[bytes, bytes | None]) -> int:
        topic = table.changelog_topic.get_topic_name()
        sent = [(builder.record_count(), await producer.send_batch(builder, topic, partition=partition))
                for builder in batches(table.name, table_changes.items())]
        for records, future in sent:
            metadata = await future
            table.data.note_sent(partition, metadata.offset + records - 1)  # a batch's offsets are consecutive
        return sum(records for records, _ in sent)

    return sum(await asyncio.gather(*(send(table, table_changes) for table, table_changes in changes)))


def batches(name: str, changes: Iterable[tuple[bytes, bytes | None]]) -> list[BatchBuilder]:
    """The changes as closed record batches (a closed batch is sent at once: no linger)."""
    built: list[BatchBuilder] = []
    for key, value in changes:
        if not built or built[-1].append(key=key, value=value, timestamp=None) is None:  # none yet, or full
            if built:
                built[-1].close()
            built.append(BatchBuilder(BATCH_BYTES, 0, is_transactional=True))  # 0: uncompressed
            if built[-1].append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"table {name}: a changelog record over {BATCH_BYTES} bytes")
    if built:
        built[-1].close()
    return built
