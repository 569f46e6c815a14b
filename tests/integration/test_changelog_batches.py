"""Table changes sent as record batches in a transaction (app/worker/changelog_batches.py), against the real
broker: each key once with its last value, visible only once the transaction commits, and the offset the
store saves is the last record's."""
from __future__ import annotations

from dataclasses import dataclass, field
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.worker.changelog_batches import BATCH_BYTES, send_changes
from ingestflow.schemas.topics import TopicSpec

from ..conftest import BASE_ENV, plaintext_kafka

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]


@dataclass
class Store:
    """Where send_changes notes the offsets sent (a StateStore's `note_sent`)."""

    sent: dict[int, int] = field(default_factory=dict)

    def note_sent(self, partition: int, offset: int) -> None:
        self.sent[partition] = max(offset, self.sent.get(partition, -1))


@dataclass
class ChangelogTopic:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class Table:
    name: str
    data: Store
    changelog_topic: ChangelogTopic


async def committed_records(topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[tuple[bytes, bytes | None]] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                found += [(r.key, r.value) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_a_commits_changes_reach_the_changelog_once_per_key_and_only_with_the_commit(
        services: None, unique: str) -> None:
    topic = f"changelog-batches-{unique}"
    await ensure_topics(plaintext_kafka(KAFKA), (TopicSpec(topic, "key", 2, compacted=True),))
    # Past one batch: 3,000 records of ~300 bytes are about 1 MB, two batches at least.
    big: dict[bytes, bytes | None] = {f"key-{i}".encode(): b"v" * 290 for i in range(3000)}
    store = Store()
    table = Table("t", store, ChangelogTopic(topic))
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, transactional_id=f"tx-{unique}", acks="all")
    await producer.start()
    try:
        await producer.begin_transaction()
        sent = await send_changes(producer, [(table, {**big, b"deleted": None})], 1)
        assert sent == 3001 and sum(len(k) + len(v or b"") for k, v in big.items()) > BATCH_BYTES
        assert await committed_records(topic, 1) == []  # nothing visible before the commit
        await producer.commit_transaction()
    finally:
        await producer.stop()
    records = await committed_records(topic, 1)
    assert records == [*big.items(), (b"deleted", None)]  # each key once, in order, tombstone included
    assert await committed_records(topic, 0) == []
    # The offset noted is the last record's: the commit marker follows it, so the end is 2 past it.
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, isolation_level="read_committed")
    await consumer.start()
    try:
        end = (await consumer.end_offsets([TopicPartition(topic, 1)]))[TopicPartition(topic, 1)]
    finally:
        await consumer.stop()
    assert store.sent == {1: end - 2}
