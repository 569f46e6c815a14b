"""Chunked delivery (app/worker/chunks.py) through the worker's consumer: a partition's fetched records reach
the streams as one message, and its ack counts for every record in it, so the commit moves past the whole
chunk, past the offsets between its records (transaction markers) and never past a record not acked."""
from __future__ import annotations

from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from ingestflow.app.worker.chunks import CHUNK_RECORDS, Chunk, chunk_of, offsets_of
from ingestflow.app.worker.consumer import consistent_delivery
from ingestflow.app.worker.faust_app import CHUNK_QUEUE, IngestflowApp

EVENTS0 = TP("events", 0)


@pytest.fixture
def consumer() -> Any:
    """The worker's consumer class on an app with no broker behind it: delivery and commit bookkeeping only."""
    app = faust.App("chunks-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    setattr(app.transport, "Consumer", consistent_delivery(app.transport.Consumer, stall_check_s=30.0))
    app.topics._acking_topics.add("events")
    consumer: Any = app.consumer
    consumer.delivered = []

    async def callback(message: Any) -> None:
        consumer.delivered.append(message)
    consumer.callback = callback
    consumer.resume_flow()
    return consumer


def records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord("events", 0, offset, 1_000 * offset, 0, b"r", b"{}", None, 1, 2, []) for offset in offsets]


def after_seek(consumer: Any, committed: int) -> None:
    """The state a seek to `committed` leaves (ConsistentConsumer.perform_seek)."""
    consumer._committed_offset[EVENTS0] = committed
    consumer._read_offset[EVENTS0] = committed - 1


async def test_a_partitions_fetched_records_arrive_as_one_chunk_and_its_ack_commits_past_all(consumer: Any) -> None:
    after_seek(consumer, 5)
    assert await consumer._deliver_chunk(EVENTS0, records(5, 6, 7), 0, 0)
    (chunk,) = consumer.delivered
    assert isinstance(chunk, Chunk) and offsets_of(chunk) == [5, 6, 7] and chunk.offset == 7
    assert chunk.timestamp == 7.0 and chunk.key is None and chunk.value is None
    assert consumer._new_offset(EVENTS0) is None  # delivered, not acked: nothing to commit
    assert consumer.ack(chunk) is True
    assert consumer._new_offset(EVENTS0) == 8
    assert consumer.ack(chunk) is False  # once


async def test_offsets_between_a_chunks_records_are_gaps_and_a_missing_head_holds_the_commit(consumer: Any) -> None:
    after_seek(consumer, 5)
    assert await consumer._deliver_chunk(EVENTS0, records(5, 6, 9), 0, 0)  # 7 and 8: transaction markers
    consumer.ack(consumer.delivered[-1])
    assert consumer._new_offset(EVENTS0) == 10
    consumer._committed_offset[EVENTS0] = 10
    assert await consumer._deliver_chunk(EVENTS0, records(12, 13), 0, 0)  # 10 and 11 never delivered
    consumer.ack(consumer.delivered[-1])
    assert consumer._new_offset(EVENTS0) == 14  # recorded as gaps from the last offset read (9)


async def test_records_delivered_before_are_left_out_and_a_stale_chunks_ack_does_not_count(consumer: Any) -> None:
    after_seek(consumer, 5)
    assert await consumer._deliver_chunk(EVENTS0, records(5, 6), 0, 0)
    assert await consumer._deliver_chunk(EVENTS0, records(5, 6, 7), 0, 0)  # fetched again: only 7 is new
    assert offsets_of(consumer.delivered[-1]) == [7]
    consumer._new_epoch([EVENTS0])  # a seek: both chunks are read again after it
    assert not any(consumer.ack(chunk) for chunk in consumer.delivered)
    assert consumer._new_offset(EVENTS0) is None


def test_an_event_of_a_chunked_topic_names_its_chunk() -> None:
    chunk = Chunk(EVENTS0, records(3, 4), 1)
    assert chunk_of(type("Event", (), {"message": chunk})()) is chunk
    with pytest.raises(AssertionError):
        chunk_of(type("Event", (), {"message": object()})())


async def test_a_large_fetch_is_cut_into_chunks_of_at_most_chunk_records(consumer: Any) -> None:
    fetched = records(*range(5, 5 + 2 * CHUNK_RECORDS + 500))

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], None]:
        return {EVENTS0: fetched}, None
    consumer.app.chunked_topics = {"events"}
    consumer._wait_next_records = wait_next_records
    consumer.highwater = lambda tp: 10_000
    consumer._set_active_tps({EVENTS0})
    after_seek(consumer, 5)
    await consumer._fetch_and_deliver()
    assert [len(chunk.records) for chunk in consumer.delivered] == [CHUNK_RECORDS, CHUNK_RECORDS, 500]
    for chunk in consumer.delivered:
        consumer.ack(chunk)
    assert consumer._new_offset(EVENTS0) == fetched[-1].offset + 1


def test_a_chunked_topics_stream_buffer_holds_a_few_chunks_not_fausts_4096() -> None:
    """Faust's App.topic drops `maxsize`: every topic buffered 4,096 events, and a chunked topic 4,096 chunks
    of up to 1,000 records (a worker behind on a backlog held 1.4 million fetched records, over 1 GB)."""
    app = IngestflowApp("chunk-queue-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    topic = app.chunked_topic("events", "rules", partitions=4)
    agent_channel = topic.clone(is_iterator=False)  # what an agent's stream reads from
    assert topic.queue.maxsize == agent_channel.queue.maxsize == CHUNK_QUEUE < 100
    assert app.chunked_topics == {"events", "rules"}


async def test_the_worker_is_caught_up_once_all_it_was_given_is_acked_and_its_partitions_were_read_to_the_end(
        consumer: Any) -> None:
    """What lets the commit timer commit at once (ConsistentConsumer.caught_up); a backlog never is."""
    fetches = [records(5, 6, 7), records(8)]  # the end is 10: offset 9 is the last transaction's marker

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], None]:
        return {EVENTS0: fetches.pop(0)}, None

    async def tracked(message: Any) -> None:
        consumer.track_message(message)
        consumer.delivered.append(message)
    consumer.callback = tracked
    consumer.app.chunked_topics = {"events"}
    consumer._wait_next_records = wait_next_records
    consumer.highwater = lambda tp: 10
    consumer.assignment = lambda: {EVENTS0}
    consumer._set_active_tps({EVENTS0})
    after_seek(consumer, 5)

    await consumer._fetch_and_deliver()
    assert not consumer.caught_up()  # delivered, not acked
    consumer.ack(consumer.delivered[-1])
    assert not consumer.caught_up()  # offset 8 still to read
    await consumer._fetch_and_deliver()
    consumer.ack(consumer.delivered[-1])
    assert consumer.caught_up()
    assert consumer._new_offset(EVENTS0) == 9  # what the commit takes
    assert not consumer.caught_up()  # nothing left to commit
