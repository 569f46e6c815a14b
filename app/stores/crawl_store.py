"""crawl_items in PostgreSQL: upserts that skip unchanged items, and full-text search.

An item is identified by (source_id, external_id); `content_hash` is a SHA-256 of what the item says (URL,
title, summary, raw; not when it was received), and an upsert rewrites a row only when the hash differs
and the version is not older than the stored one (`received_at`): replaying the topic from last week, or a
worker that lost its partition while writing, never rolls an item back.
The search vector weighs the title above the summary; one SQL expression builds it everywhere. `trace_id` is
the trace id of the record whose version is stored (app/core/tracing.py): written with that version.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.app.core import serde
from ingestflow.schemas.crawl import CrawlItem

from . import audit

__all__ = ["CrawlStore", "UpsertReport", "content_hash", "SEARCH_VECTOR"]

SEARCH_VECTOR = ("setweight(to_tsvector('english', coalesce({t}title, '')), 'A') ||"
                 " setweight(to_tsvector('english', coalesce({t}summary, '')), 'B')")

_UPSERT = f"""
INSERT INTO crawl_items AS c (source_id, external_id, url, title, summary, raw, content_hash, received_at,
                             search_vector, trace_id)
SELECT s, e, u, title, summary, r::jsonb, h, t, {SEARCH_VECTOR.format(t='')}, tr
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::text[]) AS i(s, e, u, title, summary, r, h, t, tr)
ON CONFLICT (source_id, external_id) DO UPDATE SET url = EXCLUDED.url, title = EXCLUDED.title,
  summary = EXCLUDED.summary, raw = EXCLUDED.raw, content_hash = EXCLUDED.content_hash,
  received_at = EXCLUDED.received_at, search_vector = EXCLUDED.search_vector, trace_id = EXCLUDED.trace_id,
  updated_at = NOW()
WHERE c.content_hash IS DISTINCT FROM EXCLUDED.content_hash
  AND (c.received_at IS NULL OR EXCLUDED.received_at >= c.received_at)
RETURNING (xmax = 0) AS inserted
"""


def content_hash(item: CrawlItem) -> str:
    body = serde.dumps({"url": item.url, "title": item.title, "summary": item.summary, "raw": item.raw})
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class UpsertReport:
    received: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted - self.updated

    def to_json(self) -> dict[str, int]:
        return {"received": self.received, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged}


class CrawlStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, items: list[CrawlItem], *, batch_ref: str,
                     trace_ids: Sequence[str | None] = ()) -> UpsertReport:
        """Upsert a batch (the newest version of an item in the batch wins) and audit it, in one transaction.
        `trace_ids` are the items' own, in order (none: untraced).

        Items not written (unchanged, or older than the stored version) count as unchanged."""
        latest: dict[tuple[str, str], tuple[CrawlItem, str | None]] = {}
        for i, trace in zip(items, [*trace_ids, *[None] * (len(items) - len(trace_ids))]):
            seen = latest.get((i.source_id, i.external_id))
            if seen is None or i.received_at >= seen[0].received_at:
                latest[(i.source_id, i.external_id)] = (i, trace)
        cols: list[list[Any]] = [[] for _ in range(9)]
        for item, trace in latest.values():
            for col, value in zip(cols, (item.source_id, item.external_id, item.url, item.title, item.summary,
                                         None if item.raw is None else serde.dumps(item.raw).decode(),
                                         content_hash(item), item.received_at, trace), strict=True):
                col.append(value)
        async with self._db.transaction() as conn:
            rows = await conn.fetch(_UPSERT, *cols)
            inserted = sum(1 for r in rows if r["inserted"])
            report = UpsertReport(received=len(latest), inserted=inserted, updated=len(rows) - inserted)
            await audit.record(conn, "crawl.batch", actor="worker", subject=batch_ref, detail=report.to_json())
        return report

    async def rebuild_search(self) -> int:
        status = await self._db.execute(
            f"UPDATE crawl_items SET search_vector = {SEARCH_VECTOR.format(t='')}")
        return int(status.split()[-1])

    async def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT source_id, external_id, url, title, summary, ts_rank(search_vector, q) AS rank"
            " FROM crawl_items, websearch_to_tsquery('english', $1) AS q WHERE search_vector @@ q"
            " ORDER BY rank DESC, id LIMIT $2", query, limit)
        return [{"sourceId": r["source_id"], "externalId": r["external_id"], "url": r["url"], "title": r["title"],
                 "summary": r["summary"], "rank": float(r["rank"])} for r in rows]
