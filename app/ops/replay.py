"""Replay: re-produce a time range of a topic so the stream jobs rebuild derived state from it.

Offsets are looked up by timestamp (Kafka's ListOffsets by time). The records are read with a group-less
consumer, so the live consumer group is never touched, and produced again with their key, value, headers
(the trace id among them) and original timestamp, either onto the same topic (the agents drop what they
have already counted: every event carries its id) or `into` another topic, for example the input of a new
table version. Progress is checkpointed after every acknowledged batch, so an interrupted replay resumes
where it stopped.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from ingestflow.app.clients.kafka import OutgoingMessage, Producer, start_client
from ingestflow.app.clients.kafka_security import client_options
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.core.settings import KafkaConnection

from .progress import Checkpoint, Progress

__all__ = ["ReplayRange", "ReplayReport", "plan_ranges", "replay"]

BATCH = 2000


@dataclass(frozen=True)
class ReplayRange:
    partition: int
    start: int  # first offset to replay
    end: int  # first offset not to replay


@dataclass
class ReplayReport:
    topic: str
    into: str
    ranges: list[ReplayRange]
    produced: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    complete: bool = False

    @property
    def total(self) -> int:
        return sum(r.end - r.start for r in self.ranges)


async def plan_ranges(consumer: AIOKafkaConsumer, topic: str, start: datetime,
                      end: datetime | None) -> list[ReplayRange]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # a fresh consumer may not know the topic yet
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ValidationError("topic", f"topic {topic!r} does not exist")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    log_end = await consumer.end_offsets(tps)
    begin = await consumer.beginning_offsets(tps)
    by_start = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in tps})
    by_end = (await consumer.offsets_for_times({tp: int(end.timestamp() * 1000) for tp in tps})
              if end is not None else {})
    ranges = []
    for tp in tps:
        first = by_start[tp].offset if by_start.get(tp) else log_end[tp]
        last = by_end[tp].offset if by_end.get(tp) else log_end[tp]
        ranges.append(ReplayRange(tp.partition, max(first, begin[tp]), max(last, max(first, begin[tp]))))
    return ranges


async def replay(kafka: KafkaConnection, topic: str, start: datetime, end: datetime | None, *, into: str | None,
                 checkpoint: Checkpoint, stop: asyncio.Event, progress: Progress | None = None,
                 dry_run: bool = False, batch_size: int = BATCH) -> ReplayReport:
    target = into or topic
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await start_client(kafka, consumer.start, consumer.stop)
    producer = Producer(kafka, send_timeout=30.0, client_id="ingestflow-replay")
    try:
        ranges = await plan_ranges(consumer, topic, start, end)
        report = ReplayReport(topic=topic, into=target, ranges=ranges)
        state = checkpoint.load()
        if state.get("topic") != topic or state.get("into") != target:
            state = {"topic": topic, "into": target, "next": {}}
        if progress is not None:
            progress.total = report.total
            progress.done = sum(int(v) - r.start for r in ranges
                                for k, v in state["next"].items() if int(k) == r.partition)
        if dry_run:
            return report
        for r in ranges:
            next_offset = int(state["next"].get(str(r.partition), r.start))
            if next_offset >= r.end:
                continue
            tp = TopicPartition(topic, r.partition)
            consumer.assign([tp])
            consumer.seek(tp, next_offset)
            while next_offset < r.end and not stop.is_set():
                batch = (await consumer.getmany(tp, timeout_ms=1000, max_records=batch_size)).get(tp, [])
                batch = [m for m in batch if m.offset < r.end]
                if not batch:
                    # Transaction markers take offsets but carry no record: follow the position past them.
                    next_offset = max(next_offset, await consumer.position(tp))
                    continue
                await producer.send_many([OutgoingMessage(target, m.key, m.value, m.timestamp, tuple(m.headers))
                                          for m in batch])
                next_offset = batch[-1].offset + 1
                state["next"][str(r.partition)] = next_offset
                checkpoint.save(state)
                report.produced += len(batch)
                report.per_partition[r.partition] = report.per_partition.get(r.partition, 0) + len(batch)
                if progress is not None:
                    progress.advance(len(batch))
            if stop.is_set():
                return report
        report.complete = True
        checkpoint.clear()
        return report
    finally:
        await producer.stop()
        await consumer.stop()
