"""Dead-lettering: a record that cannot be decoded or validated is parked with its error and source
offset on the `dead-letters` topic, so the agent keeps running and nothing is silently dropped."""
from __future__ import annotations

import logging
from typing import Any

from ingestflow.app import serde
from ingestflow.app.observability import DEAD_LETTERED

__all__ = ["dead_letter"]

log = logging.getLogger(__name__)


async def dead_letter(topic: Any, event: Any, error: Exception) -> None:
    message = event.message
    source = f"{message.topic}:{message.partition}:{message.offset}"
    raw = event.value if isinstance(event.value, bytes | bytearray) else serde.dumps(event.value)
    envelope = {"source": {"topic": message.topic, "partition": message.partition, "offset": message.offset,
                           "timestamp": message.timestamp},
                "error": str(error), "errorType": type(error).__name__,
                "key": message.key.decode("utf-8", "replace") if message.key else None,
                "value": raw.decode("utf-8", "replace")}
    DEAD_LETTERED.labels(topic=message.topic).inc()
    log.warning("dead-lettered %s: %s", source, error)
    await topic.send(key=source.encode(), value=serde.dumps(envelope))
