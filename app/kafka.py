"""Kafka clients for the gateway and the CLI: an idempotent producer whose every send is bounded in time,
and topic creation from the contracts in `schemas/topics.py`."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from ingestflow.schemas.topics import TopicSpec

from .errors import Unavailable

__all__ = ["OutgoingMessage", "Producer", "ensure_topics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int | None = None


class Producer:
    """acks=all and idempotence, so a send that returns is on every in-sync replica exactly once.

    aiokafka retries an idempotent batch forever; `send_timeout` bounds each call so the gateway can
    fall back to its disk spool instead of hanging.
    """

    def __init__(self, bootstrap: str, *, send_timeout: float = 5.0, client_id: str = "ingestflow",
                 linger_ms: int = 5) -> None:
        self._bootstrap = bootstrap
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
                bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all",
                enable_idempotence=True, linger_ms=self._linger_ms, max_batch_size=256 * 1024,
                request_timeout_ms=int(self._send_timeout * 1000) + 1000, compression_type=None)
            try:
                await asyncio.wait_for(producer.start(), self._send_timeout)
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                await _close_quietly(producer)
                raise Unavailable(f"Kafka is unreachable: {type(exc).__name__}") from exc
            self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _close_quietly(producer)

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Return only when every message is acknowledged; raise Unavailable otherwise."""
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        try:
            futures = [await producer.send(m.topic, m.value, key=m.key, timestamp_ms=m.timestamp_ms)
                       for m in messages]
            await asyncio.wait_for(asyncio.gather(*futures), self._send_timeout)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            # The producer may hold half-sent batches: drop it, so a fresh one (new producer id) replaces it.
            await self.stop()
            raise Unavailable(f"Kafka did not acknowledge within {self._send_timeout}s: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self._send_timeout)


async def _close_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5)
    except Exception as exc:  # a dead broker must not stop the shutdown
        log.warning("producer stop: %s", exc)


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create missing topics with their contract's partitions and cleanup policy; return those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="ingestflow-admin")
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(s.name, s.partitions, 1,
                        topic_configs={"cleanup.policy": "compact"} if s.compacted else {})
               for s in specs if s.name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            created = [t.name for t in new]
    finally:
        await admin.close()
    return created
