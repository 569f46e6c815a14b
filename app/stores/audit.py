"""audit_log rows for sensitive operations (Stripe webhook handled, crawl batch upserted, rollup run).

A Stripe webhook's row is unique per event id (a partial unique index in 0001), so a redelivered webhook
never adds a second row; other actions are recorded each time they run.
"""
from __future__ import annotations

from typing import Any

from ingestflow.app.core import serde

__all__ = ["record", "INSERT"]

INSERT = ("INSERT INTO audit_log (action, actor, subject, detail) VALUES ($1, $2, $3, $4::jsonb)"
          " ON CONFLICT DO NOTHING")


async def record(conn: Any, action: str, *, actor: str, subject: str | None, detail: dict[str, Any]) -> None:
    """`conn`: a Database, pool or connection (anything with execute), so it can join a transaction."""
    await conn.execute(INSERT, action, actor, subject, serde.dumps(detail).decode())
