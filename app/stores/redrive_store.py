"""`dlq_redrives` in PostgreSQL: what `ingestflow dlq redrive` sent, so no run sends a dead letter twice to one
topic (app/ops/redrive.py has the protocol).

A row is written before its record is sent, with where to look for the record should the run stop before
Kafka's acknowledgement is recorded (the target partition, its end offset then, the record's fingerprint);
`confirm` gives it the offset the record landed at.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ingestflow.app.clients.db import Database
from ingestflow.app.core.errors import Unavailable

__all__ = ["Redrive", "RedriveStore", "Key", "LOCK"]

LOCK = 7_304_222  # pg_advisory_lock key: one re-drive at a time

Key = tuple[str, int, int, str]  # source topic, partition, offset; target topic


@dataclass(frozen=True)
class Redrive:
    source_topic: str
    source_partition: int
    source_offset: int
    target_topic: str
    target_partition: int
    target_from: int
    fingerprint: str
    error_type: str
    target_offset: int | None = None

    @property
    def key(self) -> Key:
        return self.source_topic, self.source_partition, self.source_offset, self.target_topic


class RedriveStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Held for a whole re-drive, so two runs cannot both send one selection; a second one is refused."""
        pool = await self._db.connected()
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
                raise Unavailable("another `ingestflow dlq redrive` is running; try again when it has finished")
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)

    async def find(self, keys: Sequence[Key]) -> dict[Key, Redrive]:
        """The rows of these dead letters and targets, sent or not yet confirmed."""
        if not keys:
            return {}
        topics, partitions, offsets, targets = (list(col) for col in zip(*keys, strict=True))
        rows = await self._db.fetch(
            "SELECT r.source_topic, r.source_partition, r.source_offset, r.target_topic, r.target_partition,"
            " r.target_from, r.fingerprint, r.error_type, r.target_offset FROM dlq_redrives r"
            " JOIN unnest($1::text[], $2::int[], $3::bigint[], $4::text[]) AS k(t, p, o, g)"
            " ON (r.source_topic, r.source_partition, r.source_offset, r.target_topic) = (k.t, k.p, k.o, k.g)",
            topics, partitions, offsets, targets)
        found = [Redrive(**dict(r)) for r in rows]
        return {row.key: row for row in found}

    async def intend(self, rows: Sequence[Redrive]) -> None:
        """Record that these are about to be sent (a row not yet confirmed is rewritten: sent again)."""
        await self._db.executemany(
            "INSERT INTO dlq_redrives (source_topic, source_partition, source_offset, target_topic,"
            " target_partition, target_from, fingerprint, error_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (source_topic, source_partition, source_offset, target_topic) DO UPDATE SET"
            " target_partition = EXCLUDED.target_partition, target_from = EXCLUDED.target_from,"
            " fingerprint = EXCLUDED.fingerprint, redriven_at = NOW() WHERE dlq_redrives.target_offset IS NULL",
            [(*r.key[:3], r.target_topic, r.target_partition, r.target_from, r.fingerprint, r.error_type)
             for r in rows])

    async def confirm(self, sent: Sequence[tuple[Redrive, int]]) -> None:
        """Kafka acknowledged these at these offsets."""
        await self._db.executemany(
            "UPDATE dlq_redrives SET target_offset = $5 WHERE (source_topic, source_partition, source_offset,"
            " target_topic) = ($1, $2, $3, $4)", [(*row.key, offset) for row, offset in sent])
