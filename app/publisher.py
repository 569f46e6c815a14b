"""Where the gateway hands accepted input: Kafka now, acknowledged only once the broker has it."""
from __future__ import annotations

from collections.abc import Sequence

from .kafka import OutgoingMessage, Producer

__all__ = ["Publisher"]


class Publisher:
    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._producer.send_many(messages)

    async def ping(self) -> None:
        await self._producer.ping()
