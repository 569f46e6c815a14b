"""Keeps each batch's table writes inside one Kafka transaction under exactly-once.

A Faust table write queues its changelog record in the app's producer buffer; a background task hands it
to the transactional producer later. Faust's exactly-once commit (`TransactionManager.commit`) commits the
acked offsets without first emptying that buffer (its at-least-once path does flush), so records of an
acked batch could still sit in the buffer, land in the *next* transaction, and be lost with it if the
worker dies or the partition is revoked before that one commits: offsets committed, state not. The gate
closes that gap: an agent writes a batch's tables and hands the records over under the gate, and a commit
takes the gate and empties the buffer before committing. So a commit sees every record of a batch or none.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from faust.transport.consumer import TransactionManager

__all__ = ["CommitGate", "gated_transactions"]


class CommitGate:
    def __init__(self, flush: Callable[[], Awaitable[Any]]) -> None:
        self._lock = asyncio.Lock()
        self._flush = flush

    @asynccontextmanager
    async def writes(self) -> AsyncIterator[None]:
        """Around a batch's table writes: on exit its changelog records are with the producer."""
        async with self._lock:
            yield
            await self._flush()

    @asynccontextmanager
    async def committing(self) -> AsyncIterator[None]:
        """Around a commit: no batch is half written, and nothing written is left in the buffer."""
        async with self._lock:
            await self._flush()
            yield


def gated_transactions(gate: CommitGate) -> type[TransactionManager]:
    """Faust's transaction manager with its commit taken under the gate (set as the transport's class)."""

    class GatedTransactionManager(TransactionManager):
        async def commit(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
            async with gate.committing():
                return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))

    return GatedTransactionManager
