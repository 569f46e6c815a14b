"""Dead-lettering: a record that fails for its own content (schemas/dead_letters.py has the record format) is
parked on `dead-letters` whole, and its partition moves on; nothing is silently dropped.

Each send waits for Kafka's acknowledgement before the agent goes on, so the source offset is never committed
ahead of its dead letter; a send that fails (Kafka down) is tried again until it passes (the partition
waits). Dead letters leave on the worker's plain producer, outside the batch's transaction: a worker
killed between a dead letter and its batch's commit sends it again after the restart (at least once; the copies
carry the same `dlq.source.*` headers). The record's own headers stay on its dead letter, its trace id among
them, and the log line of each dead letter names that trace id.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ingestflow.app.core import tracing
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.core.observability import DEAD_LETTERED, PROCESSED
from ingestflow.app.core.retry import retry
from ingestflow.schemas import dead_letters as contract

__all__ = ["DeadLetters", "source_of"]

log = logging.getLogger(__name__)


def source_of(message: Any) -> contract.Source:
    """Where a consumed Faust message was read, its key, value and headers as they were on the wire."""
    m = message
    headers = m.headers.items() if isinstance(m.headers, Mapping) else (m.headers or ())
    return contract.Source(topic=m.topic, partition=m.partition, offset=m.offset,
                           timestamp_ms=round(m.timestamp * 1000), key=_raw(m.key), value=_raw(m.value),
                           headers=tuple((str(k), _raw(v) or b"") for k, v in headers))


class DeadLetters:
    def __init__(self, topic: Any, *, worker: str) -> None:
        self._topic = topic  # a Faust topic with raw key and value serializers
        self._worker = worker

    async def _deliver(self, record: contract.DeadRecord) -> None:
        delivered = await self._topic.send(key=record.key, value=record.value, headers=record.headers)
        await delivered

    async def send(self, message: Any, error: BaseException, *, agent: str) -> None:
        """Dead-letters the consumed record `message` (a Faust message) for `error`."""
        source = source_of(message)
        failure = contract.Failure(type=type(error).__name__, message=str(error), worker=self._worker,
                                   field=error.field if isinstance(error, ValidationError) else None)
        for record in contract.envelopes(source, failure):
            await retry(lambda: self._deliver(record), what=f"dead-letter {source.topic}:{source.offset}")
        DEAD_LETTERED.labels(topic=source.topic).inc()
        PROCESSED.labels(agent=agent, outcome="dead-lettered").inc()
        log.warning("dead-lettered %s:%d:%d: %s: %s", source.topic, source.partition, source.offset,
                    failure.type, failure.message[:300], extra={"trace_id": tracing.of_message(message)})


def _raw(data: Any) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return str(data).encode()
