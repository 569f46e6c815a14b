"""transfer_logs rows (the previous archive service's schema): one row per upload attempt of a batch.

An attempt inserts `pending` before the upload and turns it into `success` (CID, entries_transferred) or
`failed` (error_message). At most one `success` row exists per batch id (unique partial index), which is
what makes a replayed batch skip its upload. `trace_ids` holds the distinct trace ids of the batch's records
(app/core/tracing.py), so an operator finds the archive object of a traced record by its id.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg

from ingestflow.app.clients.db import Database

__all__ = ["TransferLogs", "TransferLog", "TransferSummary", "STATUSES"]

STATUSES = ("success", "failed", "pending")
MAX_ERROR = 2000
_COLUMNS = ("id, user_id, lighthouse_hash, entries_transferred, status, transferred_at, error_message, batch_id,"
            " trace_ids")


@dataclass(frozen=True, slots=True)
class TransferLog:
    id: int
    user_id: int
    lighthouse_hash: str | None
    entries_transferred: int
    status: str
    transferred_at: datetime
    error_message: str | None
    batch_id: str | None
    trace_ids: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "user_id": self.user_id, "lighthouse_hash": self.lighthouse_hash,
                "entries_transferred": self.entries_transferred, "status": self.status,
                "transferred_at": self.transferred_at.isoformat(), "error_message": self.error_message,
                "batch_id": self.batch_id, "trace_ids": self.trace_ids}


@dataclass(frozen=True, slots=True)
class TransferSummary:
    """What an operator watches. A batch is unresolved while it has no `success` row: its `pending` rows are
    uploads in flight, or left behind by a worker that died mid-upload (the batch is redone under a new row,
    so a pending row older than any upload can take needs a look); its `failed` rows are attempts being
    retried."""

    pending: int  # pending rows of unresolved batches
    oldest_pending_s: float | None
    failed_batches: int  # unresolved batches with at least one failed attempt
    failed_last_hour: int  # failed attempts in the last hour, resolved or not

    def to_json(self) -> dict[str, Any]:
        return {"pending": self.pending, "oldestPendingSeconds": self.oldest_pending_s,
                "failedBatches": self.failed_batches, "failedLastHour": self.failed_last_hour}


class TransferLogs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def success_cid(self, batch_id: str) -> str | None:
        return cast(str | None, await self._db.fetchval(
            "SELECT lighthouse_hash FROM transfer_logs WHERE batch_id = $1 AND status = 'success'", batch_id))

    async def begin(self, user_id: int, batch_id: str, entries: int,
                    trace_ids: Sequence[str] = ()) -> tuple[int | None, str | None]:
        """One round trip: (new pending row id, None), or (None, CID) when the batch already succeeded."""
        row = await self._db.fetchrow(
            "WITH done AS (SELECT lighthouse_hash FROM transfer_logs WHERE batch_id = $2 AND status = 'success'"
            " LIMIT 1), ins AS (INSERT INTO transfer_logs (user_id, batch_id, entries_transferred, status,"
            " trace_ids) SELECT $1, $2, $3, 'pending', $4 WHERE NOT EXISTS (SELECT 1 FROM done) RETURNING id)"
            " SELECT (SELECT id FROM ins) AS id, (SELECT lighthouse_hash FROM done) AS cid",
            user_id, batch_id, entries, list(trace_ids))
        assert row is not None
        return row["id"], row["cid"]

    async def start(self, user_id: int, batch_id: str, entries: int) -> int:
        return int(await self._db.fetchval(
            "INSERT INTO transfer_logs (user_id, batch_id, entries_transferred, status)"
            " VALUES ($1, $2, $3, 'pending') RETURNING id", user_id, batch_id, entries))

    async def add_failed(self, user_id: int, batch_id: str, entries: int, at: float, error: str,
                         trace_ids: Sequence[str] = ()) -> None:
        """A failed attempt recorded after the fact (it happened while PostgreSQL was down)."""
        await self._db.execute(
            "INSERT INTO transfer_logs (user_id, batch_id, entries_transferred, status, transferred_at,"
            " error_message, trace_ids) VALUES ($1, $2, $3, 'failed', to_timestamp($4), $5, $6)",
            user_id, batch_id, entries, at, error[:MAX_ERROR], list(trace_ids))

    async def fail_pending(self, batch_id: str, error: str) -> None:
        """Turn the batch's `pending` rows `failed`: attempts whose insert reached PostgreSQL but whose answer
        never reached the worker (a link that dropped or reset it), so no upload followed them."""
        await self._db.execute(
            "UPDATE transfer_logs SET status = 'failed', error_message = $2, updated_at = NOW()"
            " WHERE batch_id = $1 AND status = 'pending'", batch_id, error[:MAX_ERROR])

    async def fail(self, row_id: int, error: str) -> None:
        await self._db.execute(
            "UPDATE transfer_logs SET status = 'failed', error_message = $2, updated_at = NOW() WHERE id = $1",
            row_id, error[:MAX_ERROR])

    async def succeed(self, row_id: int, batch_id: str, cid: str, entries: int) -> str:
        """Mark the attempt a success; if another attempt already succeeded for this batch, keep that one."""
        try:
            await self._db.execute(
                "UPDATE transfer_logs SET status = 'success', lighthouse_hash = $2, entries_transferred = $3,"
                " transferred_at = NOW(), updated_at = NOW(), error_message = NULL WHERE id = $1",
                row_id, cid, entries)
        except asyncpg.UniqueViolationError:
            existing = await self.success_cid(batch_id)
            await self.fail(row_id, f"duplicate: batch already archived as {existing}")
            return existing or cid
        return cid

    async def query(self, *, user_id: int | None, status: str | None, limit: int) -> list[TransferLog]:
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM transfer_logs WHERE ($1::bigint IS NULL OR user_id = $1)"
            " AND ($2::text IS NULL OR status = $2) ORDER BY transferred_at DESC, id DESC LIMIT $3",
            user_id, status, limit)
        return [TransferLog(**dict(r)) for r in rows]

    async def summary(self) -> TransferSummary:
        row = await self._db.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending' AND unresolved) AS pending,"
            " EXTRACT(EPOCH FROM NOW() - min(transferred_at) FILTER (WHERE status = 'pending' AND unresolved))"
            "::float8 AS oldest,"
            " count(DISTINCT batch_id) FILTER (WHERE status = 'failed' AND unresolved) AS failed_batches,"
            " count(*) FILTER (WHERE status = 'failed' AND transferred_at > NOW() - INTERVAL '1 hour') AS failed_1h"
            " FROM (SELECT status, transferred_at, batch_id, NOT EXISTS (SELECT 1 FROM transfer_logs s"
            " WHERE s.batch_id = t.batch_id AND s.status = 'success') AS unresolved"
            " FROM transfer_logs t WHERE status IN ('pending', 'failed')) AS attempts")
        assert row is not None
        return TransferSummary(row["pending"], row["oldest"], row["failed_batches"], row["failed_1h"])

    async def query_cid(self, cid: str) -> list[TransferLog]:
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM transfer_logs WHERE lighthouse_hash = $1 ORDER BY id", cid)
        return [TransferLog(**dict(r)) for r in rows]
