"""Kafka clients for the gateway and the CLI: an idempotent producer whose every send is bounded in time,
topic creation from the contracts in `schemas/topics.py`, reading what a topic holds without a consumer
group, and the start of any aiokafka client with the reason it failed. Every client is made from one KafkaConnection (app/clients/kafka_security.py)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from ingestflow.app.core.errors import Unavailable
from ingestflow.app.core.settings import KafkaConnection
from ingestflow.schemas.topics import TopicSpec

from .kafka_security import client_options, refusal

__all__ = ["Header", "OutgoingMessage", "Producer", "ensure_topics", "start_client", "partition_counts",
           "committed_reader", "read_partitions", "read_topic"]

log = logging.getLogger(__name__)


Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes | None  # None: a null key (what a re-driven record may have kept); the gateway always sets one
    value: bytes | None  # None: a tombstone
    timestamp_ms: int | None = None
    headers: tuple[Header, ...] = ()
    partition: int | None = None  # None: the key decides (Kafka's default partitioner)

    @property
    def size(self) -> int:
        """Key, value and header bytes: what counts against a record's size bound."""
        return len(self.key or b"") + len(self.value or b"") + sum(len(k.encode()) + len(v) for k, v in self.headers)


class Producer:
    """acks=all and idempotence, so a send that returns is on every in-sync replica exactly once.

    aiokafka retries an idempotent batch forever; `send_timeout` bounds each call so the gateway can
    fall back to its disk spool instead of hanging.
    """

    def __init__(self, kafka: KafkaConnection, *, send_timeout: float = 5.0, client_id: str = "ingestflow",
                 linger_ms: int = 5) -> None:
        self._kafka = kafka
        self._send_timeout = send_timeout
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(
                **client_options(self._kafka), client_id=self._client_id, acks="all",
                enable_idempotence=True, linger_ms=self._linger_ms, max_batch_size=256 * 1024,
                request_timeout_ms=int(self._send_timeout * 1000) + 1000, compression_type=None)
            await start_client(self._kafka, producer.start, producer.stop, self._send_timeout)
            self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly(producer.stop)

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> list[tuple[int, int]]:
        """Return only when every message is acknowledged, with the (partition, offset) each landed at;
        raise Unavailable otherwise."""
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        try:
            futures = [await producer.send(m.topic, m.value, key=m.key, timestamp_ms=m.timestamp_ms,
                                           headers=list(m.headers) or None, partition=m.partition)
                       for m in messages]
            acks = await asyncio.wait_for(asyncio.gather(*futures), self._send_timeout)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            # The producer may hold half-sent batches: drop it, so a fresh one (new producer id) replaces it.
            await self.stop()
            raise Unavailable(f"Kafka did not acknowledge within {self._send_timeout}s: {type(exc).__name__}") from exc
        return [(ack.partition, ack.offset) for ack in acks]

    async def ping(self) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self._send_timeout)


async def _quietly(close: Callable[[], Awaitable[object]]) -> None:
    try:
        await asyncio.wait_for(close(), 5)
    except Exception as exc:  # a dead broker must not stop the shutdown
        log.warning("kafka client stop: %s", type(exc).__name__)


async def start_client(kafka: KafkaConnection, start: Callable[[], Awaitable[None]],
                       close: Callable[[], Awaitable[object]], timeout_s: float = 30.0) -> None:
    """Start an aiokafka client within `timeout_s`. On failure the client is closed and Unavailable says
    why the broker did not serve it (refused credentials, an untrusted certificate, a listener expecting TLS
    or SASL, nothing listening), so commands print one actionable line and the gateway spools."""
    try:
        await asyncio.wait_for(start(), timeout_s)
    except asyncio.TimeoutError as exc:
        await _quietly(close)
        raise Unavailable(f"Kafka at {kafka.bootstrap} did not answer within {timeout_s:g}s") from exc
    except (KafkaError, OSError) as exc:
        await _quietly(close)
        reason = await refusal(kafka, timeout_s)
        raise Unavailable(reason or f"Kafka at {kafka.bootstrap} is unreachable: {type(exc).__name__}") from exc


def committed_reader(kafka: KafkaConnection) -> AIOKafkaConsumer:
    """A group-less, read_committed consumer: reading never creates or moves a consumer group."""
    return AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False,
                            isolation_level="read_committed", auto_offset_reset="earliest")


async def read_partitions(reader: AIOKafkaConsumer, starts: dict[TopicPartition, int]
                          ) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The records of these partitions from their start offsets to the end they have now, in batches, in
    order per partition (records only: transaction markers take offsets but carry none)."""
    ends = await reader.end_offsets(list(starts))
    todo = {tp: start for tp, start in starts.items() if start < ends[tp]}
    reader.assign(list(starts))
    for tp, start in todo.items():
        reader.seek(tp, start)
    while todo:
        batches = await reader.getmany(*todo, timeout_ms=1000, max_records=500)
        for tp, messages in batches.items():
            yield [m for m in messages if m.offset < ends[tp]]
        for tp in list(todo):
            if await reader.position(tp) >= ends[tp]:
                del todo[tp]


async def read_topic(kafka: KafkaConnection, topic: str) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Every committed record the topic holds now, from its start, in batches (in order per partition)."""
    reader = committed_reader(kafka)
    await start_client(kafka, reader.start, reader.stop)
    try:
        await reader._client.force_metadata_update()  # a fresh consumer may not know the topic yet
        tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if tps:
            async for batch in read_partitions(reader, dict(await reader.beginning_offsets(tps))):
                yield batch
    finally:
        await reader.stop()


async def ensure_topics(kafka: KafkaConnection, specs: Iterable[TopicSpec]) -> list[str]:
    """Create missing topics with their contract's partitions and configs (cleanup policy, retention); return
    those created. An existing topic is left as its operator configured it."""
    admin = AIOKafkaAdminClient(**client_options(kafka), client_id="ingestflow-admin")
    await start_client(kafka, admin.start, admin.close)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(s.name, s.partitions, 1, topic_configs=s.configs()) for s in specs if s.name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            created = [t.name for t in new]
    finally:
        await admin.close()
    return created


async def partition_counts(kafka: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """The partition count of each named topic that exists."""
    admin = AIOKafkaAdminClient(**client_options(kafka), client_id="ingestflow-admin")
    await start_client(kafka, admin.start, admin.close)
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}
