"""Under exactly-once, a table's changes reach its changelog when their transaction commits, as record
batches: one per changelog partition and commit (more only past `BATCH_BYTES`).

Faust sends one changelog record per table write as it is made: a FutureMessage, a trip through the
producer buffer, an aiokafka send with its own future and callbacks, about a quarter of the worker's time
per event. Those records count only once their transaction commits, and until then the store holds the
transaction's writes anyway (app/worker/state_store.py), each key once with its last value. So the commit
sends those through the partition's transactional producer just before committing it: a key written
several times in one commit interval is sent once (as Kafka Streams' and Quix Streams' state caches do),
and no record has a future of its own. Keys and values are the bytes Faust's changelog records carry.
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["send_pending", "BATCH_BYTES"]

BATCH_BYTES = 512 * 1024  # under the broker's default max.message.bytes (1 MiB)


async def send_pending(producer: Any, tables: list[Any], partition: int) -> int:
    """Sends the pending changes of `partition` of every table given through `producer` (the partition's
    transactional aiokafka producer, in its open transaction) and waits for Kafka to take them; notes
    each store's last changelog offset; returns the records sent."""
    sent: list[tuple[Any, int, asyncio.Future[Any]]] = []  # (store, records, batch future)

    async def send(store: Any, topic: str, builder: BatchBuilder) -> None:
        builder.close()  # a closed batch is sent at once: no linger
        sent.append((store, builder.record_count(), await producer.send_batch(builder, topic, partition=partition)))

    for table in tables:
        store, topic = table.data, table.changelog_topic.get_topic_name()
        builder = None
        # A copy: the sends below await, and the dict must not change while it is iterated.
        for key, value in list(store.pending_changes(partition).items()):
            if builder is None:
                builder = new_builder()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full
                await send(store, topic, builder)
                builder = new_builder()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"table {table.name}: a changelog record over {BATCH_BYTES} bytes")
        if builder is not None:
            await send(store, topic, builder)
    for store, records, future in sent:
        metadata = await future
        store.note_sent(partition, metadata.offset + records - 1)  # a batch's offsets are consecutive
    return sum(records for _, records, _ in sent)


def new_builder() -> BatchBuilder:
    return BatchBuilder(BATCH_BYTES, 0, is_transactional=True)  # 0: uncompressed, as the worker produces
