"""Archiving one batch exactly once: encrypt, skip if already archived, log `pending`, upload, log
`success`; a failed attempt is logged `failed` and retried with backoff, forever (the caller's partition
waits, nothing is dropped).

The envelope is sealed once per batch, so every retry uploads the same bytes and a content-addressed
backend stores them once. A batch whose id already has a `success` row (the worker crashed after the
upload, before Kafka committed) is not uploaded again.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ingestflow.app.core import serde
from ingestflow.app.core.observability import ARCHIVE_BATCHES, ARCHIVE_BYTES, ARCHIVE_UPLOAD_FAILURES, ARCHIVE_UPLOAD_SECONDS
from ingestflow.app.core.retry import retry

from .base import ArchiveBackend
from .crypto import Keyring, seal
from .transfer_logs import TransferLogs

__all__ = ["Batch", "ArchiveSink", "batch_id", "plaintext"]

log = logging.getLogger(__name__)


def batch_id(app_id: str, user_id: int, partition: int, offsets: Sequence[int]) -> str:
    """Deterministic: the same records (by source offset) read by the same app (consumer group) always make
    the same batch id; another app id reading the same topic keeps its own archive."""
    text = f"{app_id}|{user_id}|{partition}|{','.join(map(str, offsets))}"
    return hashlib.sha256(text.encode()).hexdigest()


def plaintext(user_id: int, records: Sequence[dict[str, Any]]) -> bytes:
    """The previous service's shape: `[{"user_id": 123, "data": [{"website_uid", "cleanedJson", "context"}]}]`."""
    return serde.dumps([{"user_id": user_id, "data": list(records)}])


@dataclass(frozen=True)
class Batch:
    user_id: int
    partition: int
    offsets: tuple[int, ...]
    records: tuple[dict[str, Any], ...] = field(repr=False)
    trace_ids: tuple[str, ...] = ()  # the records' distinct trace ids: on the batch's transfer_logs rows

    def plaintext(self) -> bytes:
        return plaintext(self.user_id, self.records)


@dataclass
class Unlogged:
    """A batch's attempts that PostgreSQL was too down to record. Once it answers again, before the next
    attempt goes on, they are written: one `failed` row for the attempts that could not start (with their
    count and time span), and the rows left `pending` by uploads that failed meanwhile, or by attempts whose
    insert reached PostgreSQL but whose answer was lost on the way back, turn `failed`. So transfer_logs
    shows the outage's failed attempts, then the success, and no attempt stays `pending`."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0
    reason: str = ""
    pending_rows: list[tuple[int, str]] = field(default_factory=list)

    def missed(self, exc: Exception) -> None:
        now = time.time()
        self.first = self.first or now
        self.last, self.count = now, self.count + 1
        self.reason = f"{type(exc).__name__}: {exc}"[:300]

    async def write(self, logs: TransferLogs, user_id: int, batch_id: str, entries: int,
                    trace_ids: Sequence[str]) -> None:
        if self.count:
            # A missed attempt may have inserted its `pending` row, only its answer lost on the way back.
            await logs.fail_pending(batch_id, f"the attempt's answer from PostgreSQL was lost: {self.reason}")
            await logs.add_failed(user_id, batch_id, entries, self.first,
                                  f"{self.count} attempt(s) could not reach PostgreSQL between "
                                  f"{_iso(self.first)} and {_iso(self.last)}: {self.reason}", trace_ids)
            self.count, self.first = 0, 0.0
        while self.pending_rows:
            row, reason = self.pending_rows[0]
            await logs.fail(row, reason)
            self.pending_rows.pop(0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class ArchiveSink:
    def __init__(self, backend: ArchiveBackend, logs: TransferLogs, keyring: Keyring, *, app_id: str,
                 concurrency: int, retry_base: float = 0.2, retry_cap: float = 5.0) -> None:
        self._app_id = app_id
        self._backend = backend
        self._backend_name = backend.name
        ARCHIVE_UPLOAD_FAILURES.labels(backend=self._backend_name)  # exported at 0, so a first failure shows
        self._logs = logs
        self._keyring = keyring
        self._concurrency = concurrency
        self._base = retry_base
        self._cap = retry_cap

    async def archive_many(self, batches: Sequence[Batch]) -> list[str]:
        """Every batch archived, at most `concurrency` uploads at a time; returns their CIDs in order."""
        gate = asyncio.Semaphore(self._concurrency)

        async def one(batch: Batch) -> str:
            async with gate:
                return await self.archive(batch)
        return list(await asyncio.gather(*(one(b) for b in batches)))

    def batch_id(self, batch: Batch) -> str:
        return batch_id(self._app_id, batch.user_id, batch.partition, batch.offsets)

    async def archive(self, batch: Batch) -> str:
        bid = self.batch_id(batch)
        what = f"archive batch {bid[:16]} (user {batch.user_id}, {len(batch.records)} records)"
        traced = {"trace_ids": list(batch.trace_ids)}
        blob = seal(self._keyring, batch.plaintext(), user_id=batch.user_id, count=len(batch.records),
                    batch_id=bytes.fromhex(bid))

        unlogged = Unlogged()

        async def attempt() -> tuple[int | None, str]:
            try:
                await unlogged.write(self._logs, batch.user_id, bid, len(batch.records), batch.trace_ids)
                row, existing = await self._logs.begin(batch.user_id, bid, len(batch.records), batch.trace_ids)
            except Exception as exc:  # PostgreSQL down: no row for this attempt; written once it is back
                unlogged.missed(exc)
                raise
            if row is None:
                assert existing is not None
                return None, existing
            started = time.perf_counter()
            try:
                cid = await self._backend.put(blob)
                ARCHIVE_UPLOAD_SECONDS.labels(backend=self._backend_name).observe(time.perf_counter() - started)
                return row, cid
            except Exception as exc:
                ARCHIVE_UPLOAD_FAILURES.labels(backend=self._backend_name).inc()
                reason = f"{type(exc).__name__}: {exc}"
                try:
                    await self._logs.fail(row, reason)
                except Exception as log_exc:  # PostgreSQL down too: marked failed once it is back
                    log.warning("%s: could not log the failure: %s", what, type(log_exc).__name__, extra=traced)
                    unlogged.pending_rows.append((row, reason))
                raise

        row, uploaded = await retry(attempt, what=what, base=self._base, cap=self._cap)
        if row is None:
            log.info("%s: already archived as %s, not uploading again", what, uploaded, extra=traced)
            ARCHIVE_BATCHES.labels(outcome="already-archived").inc()
            return uploaded
        row_id = row
        cid = await retry(lambda: self._logs.succeed(row_id, bid, uploaded, len(batch.records)),
                          what=f"{what}: write success", base=self._base, cap=self._cap)
        ARCHIVE_BATCHES.labels(outcome="archived").inc()
        ARCHIVE_BYTES.inc(len(blob))
        log.info("%s: archived as %s", what, cid, extra=traced)
        return cid
