"""Import what users of the previous systems already have, by producing it to the topics.

Sources: NDJSON or JSON-array files of events, crawl items or website records; the old `user_data_buffer`
table (rows of `user_id` and a `record_json` array of `{"wuid", "cleaned", "context"}`) read straight from
PostgreSQL; and a JSON file store (an object of records keyed by id). Every item is validated by the same
schema code the gateway uses; a rejected one is reported with its line number and reason, never produced.
Importing twice produces no duplicates downstream: each event gets a deterministic id (its idempotency key,
or a hash of its content) that the stream jobs deduplicate on; crawl items are upserts by source and id;
records carry their `wuid`.
"""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg

from ingestflow.app.clients.kafka import OutgoingMessage, Producer
from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError
from ingestflow.schemas import crawl, events, records
from ingestflow.schemas.topics import CRAWL, EVENTS, RECORDS

__all__ = ["Rejected", "ImportReport", "read_file", "read_file_store", "read_user_data_buffer",
           "to_messages", "run_import", "backup"]

KINDS = ("events", "crawl", "records")
BATCH = 1000


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    kind: str
    source: str
    read: int = 0
    produced: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    backup: str | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "read": self.read, "produced": self.produced,
                "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
                "backup": self.backup, "dryRun": self.dry_run}


Item = tuple[int, Any]  # (line number, parsed JSON value)


def read_file(path: Path) -> Iterator[Item | Rejected]:
    """NDJSON (one value a line) or one JSON array; line numbers are 1-based lines of the file (for an array,
    its index + 1)."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        try:
            values = serde.loads(path.read_bytes())
        except serde.DecodeError as exc:
            yield Rejected(1, f"file is not valid JSON: {exc}")
            return
        yield from ((i + 1, v) for i, v in enumerate(values))
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, serde.loads(line)
            except serde.DecodeError as exc:
                yield Rejected(number, f"not valid JSON: {exc}")


def read_file_store(path: Path) -> Iterator[Item | Rejected]:
    """An object of records keyed by id; the key fills `wuid`/`externalId`/`idempotencyKey` when absent."""
    try:
        store = serde.loads(path.read_bytes())
    except serde.DecodeError as exc:
        yield Rejected(1, f"file is not valid JSON: {exc}")
        return
    if not isinstance(store, dict):
        yield Rejected(1, "a file store must be a JSON object of records keyed by id")
        return
    for number, (key, value) in enumerate(store.items(), start=1):
        if isinstance(value, dict):
            value = {"wuid": key, "externalId": key, "idempotencyKey": key, **value}
        yield number, value


async def read_user_data_buffer(dsn: str) -> AsyncIterator[Item | Rejected]:
    """Rows of the previous archive service's buffer table, one website record per array element; the
    line number is the row id."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            async for row in conn.cursor("SELECT id, user_id, record_json FROM user_data_buffer ORDER BY id"):
                entries = row["record_json"]
                entries = serde.loads(entries) if isinstance(entries, str) else entries
                if not isinstance(entries, list):
                    yield Rejected(row["id"], "record_json must be an array")
                    continue
                for entry in entries:
                    yield row["id"], {"user_id": row["user_id"], **entry} if isinstance(entry, dict) else entry
    finally:
        await conn.close()


def _event_id(value: dict[str, Any]) -> str:
    if isinstance(value.get("idempotencyKey"), str) and value["idempotencyKey"].strip():
        return str(value["idempotencyKey"])
    return "import-" + hashlib.sha256(serde.dumps({k: value.get(k) for k in sorted(value)})).hexdigest()[:32]


def to_messages(kind: str, value: Any, now: datetime) -> list[OutgoingMessage]:
    """The topic messages for one imported item; raises ValidationError naming the field at fault."""
    if kind == "events":
        if isinstance(value, dict):
            value = {**value, "id": value.get("id") or _event_id(value)}
        ev = events.from_request(value, "event", now, str(value.get("ip") or "") or "import")
        return [OutgoingMessage(EVENTS.name, ev.key, ev.encode(), ev.timestamp_ms)]
    if kind == "crawl":
        body = value if isinstance(value, dict) and "items" in value else {
            "sourceId": value.get("sourceId") if isinstance(value, dict) else None, "items": [value]}
        return [OutgoingMessage(CRAWL.name, item.key, item.encode()) for item in crawl.from_request(body, now, 10_000)]
    if kind == "records":
        body = value if isinstance(value, dict) and "records" in value else {
            "user_id": value.get("user_id") if isinstance(value, dict) else None, "records": [value]}
        return [OutgoingMessage(RECORDS.name, r.key, r.encode()) for r in records.from_request(body, 10_000)]
    raise ValidationError("kind", f"must be one of {', '.join(KINDS)}")


def backup(path: Path, backup_dir: Path, now: datetime) -> Path:
    backup_dir.mkdir(parents=True, exist_ok=True)
    target = backup_dir / f"{now.strftime('%Y%m%dT%H%M%SZ')}-{path.name}"
    shutil.copy2(path, target)
    return target.resolve()


async def run_import(kind: str, items: AsyncIterator[Item | Rejected], report: ImportReport,
                     producer: Producer | None, progress: Any = None) -> ImportReport:
    """Validate every item; produce in batches unless `producer` is None (dry run)."""
    now = datetime.now(timezone.utc)
    pending: list[OutgoingMessage] = []
    async for item in items:
        if isinstance(item, Rejected):
            report.rejected.append(item)
            continue
        number, value = item
        report.read += 1
        try:
            messages = to_messages(kind, value, now)
        except ValidationError as exc:
            report.rejected.append(Rejected(number, str(exc)))
            continue
        pending.extend(messages)
        if progress is not None:
            progress.advance()
        if len(pending) >= BATCH:
            report.produced += await _flush(producer, pending)
    report.produced += await _flush(producer, pending)
    return report


async def _flush(producer: Producer | None, pending: list[OutgoingMessage]) -> int:
    count = len(pending)
    if producer is not None and pending:
        await producer.send_many(pending)
    pending.clear()
    return count
