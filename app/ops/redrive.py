"""Re-driving dead letters: each record produced again, unchanged, to its source topic (or `to` another), once.

Unchanged: the original key, value (a value split in parts joined back), headers (those not starting with
`dlq.`, so its trace id stays) and timestamp. To its source topic a record goes back to its source partition;
to another topic, to the partition Kafka's default partitioner gives its key (murmur2), so a key's records
share a partition there too. Records are sent in source order (topic, partition, offset), so the order of a
partition's records is kept.

Once per dead letter and target topic, across crashes too: before a chunk is sent its rows go to
`dlq_redrives` (app/stores/redrive_store.py) with each target partition's end offset and each record's
fingerprint; once Kafka acknowledged the chunk, the rows get their offsets. A row a run left without its
offset (stopped between the send and the confirmation) is settled by the next run: the target partition is
read from the recorded offset, and a record there with the same fingerprint means it was sent (the row gets
that offset); otherwise it is sent then. One re-drive runs at a time (a PostgreSQL advisory lock).
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from ingestflow.app.clients.kafka import (Header, OutgoingMessage, Producer, committed_reader, read_partitions,
                                          start_client)
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.core.settings import KafkaConnection
from ingestflow.app.stores.redrive_store import Key, Redrive, RedriveStore

from .dlq import DeadLetter, Selection, scan
from .progress import Progress

__all__ = ["RedriveReport", "redrive", "fingerprint", "CHUNK"]

CHUNK = 500


@dataclass
class RedriveReport:
    selected: int = 0  # whole dead letters the selection picked
    already: int = 0  # sent by an earlier run
    settled: int = 0  # sent by an interrupted run (found on the target), confirmed now
    sent: int = 0
    to_send: list[str] = field(default_factory=list)  # ids left to send (all of them, in a dry run)
    targets: dict[str, int] = field(default_factory=dict)  # target topic -> records sent (or to send)
    incomplete: int = 0  # split values whose parts were not all on the topic: not sent
    unreadable: int = 0
    complete: bool = False

    def to_json(self, dry_run: bool) -> dict[str, object]:
        return {"selected": self.selected, "alreadyRedriven": self.already, "settled": self.settled,
                "sent": self.sent, "toSend": self.to_send, "targets": self.targets, "incomplete": self.incomplete,
                "unreadable": self.unreadable, "complete": self.complete, "dryRun": dry_run}


@dataclass(frozen=True)
class _Plan:
    letter: DeadLetter
    message: OutgoingMessage
    fingerprint: str

    @property
    def key(self) -> Key:
        source = self.letter.source
        return source.topic, source.partition, source.offset, self.message.topic

    def row(self, target_from: int) -> Redrive:
        source, message = self.letter.source, self.message
        assert message.partition is not None
        return Redrive(source.topic, source.partition, source.offset, message.topic, message.partition,
                       target_from, self.fingerprint, self.letter.failure.type)


def fingerprint(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> str:
    """Identifies a record on its target partition: its key, value and headers (not its timestamp, which a
    topic may set itself)."""
    digest = hashlib.sha256()
    for part in (key, value, *(b for name, data in headers for b in (name.encode(), data))):
        digest.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


async def redrive(kafka: KafkaConnection, store: RedriveStore, selection: Selection, *, to: str | None,
                  stop: asyncio.Event, progress: Progress | None = None, dry_run: bool = False,
                  chunk: int = CHUNK) -> RedriveReport:
    found = await scan(kafka, selection)
    report = RedriveReport(selected=len(found.letters), incomplete=found.incomplete, unreadable=found.unreadable)
    letters = sorted(found.letters, key=lambda d: (d.source.topic, d.source.partition, d.source.offset))
    reader = committed_reader(kafka)
    await start_client(kafka, reader.start, reader.stop)
    try:
        plans = _plan(letters, to, await _partition_counts(reader, to, {d.source.topic for d in letters}))
        async with store.exclusive():
            pending = await _unsent(plans, store, reader, report, dry_run)
            report.to_send = [p.letter.id for p in pending]
            for p in pending:
                report.targets[p.message.topic] = report.targets.get(p.message.topic, 0) + 1
            if dry_run:
                return report
            if progress is not None:
                progress.total = len(pending)
            await _send(pending, store, reader, kafka, report, stop, progress, chunk)
            report.complete = not report.to_send
    finally:
        await reader.stop()
    return report


async def _partition_counts(reader: AIOKafkaConsumer, to: str | None, sources: set[str]) -> dict[str, int]:
    """The partition count of each target topic; a target that does not exist is refused, naming it."""
    await reader._client.force_metadata_update()
    counts = {t: len(reader.partitions_for_topic(t) or ()) for t in ({to} if to else sources)}
    missing = sorted(t for t, n in counts.items() if not n)
    if missing:
        raise ValidationError("to" if to else "topic", f"topic {', '.join(missing)} does not exist")
    return counts


def _plan(letters: list[DeadLetter], to: str | None, partitions: dict[str, int]) -> list[_Plan]:
    plans = []
    for letter in letters:
        source = letter.source
        topic = to or source.topic
        if to is None:
            partition = source.partition
        elif source.key is None:
            partition = source.partition % partitions[topic]
        else:
            partition = (murmur2(source.key) & 0x7FFFFFFF) % partitions[topic]
        message = OutgoingMessage(topic, source.key, source.value, source.timestamp_ms, source.headers, partition)
        plans.append(_Plan(letter, message, fingerprint(source.key, source.value, source.headers)))
    return plans


async def _unsent(plans: list[_Plan], store: RedriveStore, reader: AIOKafkaConsumer, report: RedriveReport,
                  dry_run: bool) -> list[_Plan]:
    """The plans no run has sent: rows confirmed are skipped, rows left unconfirmed settled on the target."""
    rows = await store.find([p.key for p in plans])
    report.already = sum(1 for row in rows.values() if row.target_offset is not None)
    unconfirmed = [row for row in rows.values() if row.target_offset is None]
    landed = await _find_on_targets(reader, unconfirmed)
    report.settled = len(landed)
    if landed and not dry_run:
        await store.confirm([(row, landed[row.key]) for row in unconfirmed if row.key in landed])
    return [p for p in plans if p.key not in landed and (p.key not in rows or rows[p.key].target_offset is None)]


async def _find_on_targets(reader: AIOKafkaConsumer, rows: list[Redrive]) -> dict[Key, int]:
    """Where each of these rows' records landed on its target partition (at or after its `target_from`)."""
    if not rows:
        return {}
    starts: dict[TopicPartition, int] = {}
    for row in rows:
        tp = TopicPartition(row.target_topic, row.target_partition)
        starts[tp] = min(starts.get(tp, row.target_from), row.target_from)
    wanted: dict[tuple[str, int, str], list[Redrive]] = {}  # identical records of several dead letters: a list
    for row in sorted(rows, key=lambda r: r.target_from):
        wanted.setdefault((row.target_topic, row.target_partition, row.fingerprint), []).append(row)
    landed: dict[Key, int] = {}
    async for batch in read_partitions(reader, starts):
        for m in batch:
            waiting = wanted.get((m.topic, m.partition, fingerprint(m.key, m.value, m.headers)), [])
            match = next((r for r in waiting if r.target_from <= m.offset and r.key not in landed), None)
            if match is not None:
                landed[match.key] = m.offset
    return landed


async def _send(pending: list[_Plan], store: RedriveStore, reader: AIOKafkaConsumer, kafka: KafkaConnection,
                report: RedriveReport, stop: asyncio.Event, progress: Progress | None, chunk: int) -> None:
    producer = Producer(kafka, send_timeout=30.0, client_id="ingestflow-dlq-redrive")
    try:
        for i in range(0, len(pending), chunk):
            if stop.is_set():
                return
            plans = pending[i:i + chunk]
            tps = sorted({TopicPartition(p.message.topic, p.message.partition) for p in plans})
            ends = await reader.end_offsets(tps)
            rows = [p.row(ends[TopicPartition(p.message.topic, p.message.partition)]) for p in plans]
            await store.intend(rows)
            acks = await producer.send_many([p.message for p in plans])
            await store.confirm([(row, offset) for row, (_, offset) in zip(rows, acks, strict=True)])
            report.sent += len(plans)
            report.to_send = report.to_send[len(plans):]
            if progress is not None:
                progress.advance(len(plans))
    finally:
        await producer.stop()
