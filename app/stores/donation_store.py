"""Stripe donations in PostgreSQL, and the donation columns of author_metric_daily derived from them.

Each Stripe event is one `donations` row keyed by its event id (a redelivery is a no-op). Rows of one
payment share `payment_ref` (the PaymentIntent id: a Checkout Session's `payment_intent`, a
PaymentIntent's `id`, a Charge's `payment_intent`), so a session and its PaymentIntent count as one
donation. An author's donation totals are recomputed from all rows of the author's payments:

    per payment: paid = max amount of its succeeded rows, refunded = max `amount_refunded` of its refund rows
    donation_count  = payments with paid − refunded > 0, on the UTC day of the first success
    donation_amount = Σ (paid − refunded)

so the result is the same in any arrival order (a refund before its payment simply waits for it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.app.core import serde

from . import audit

__all__ = ["DonationStore", "DonationRow"]

_RECOMPUTE = """
WITH refs AS (
  SELECT payment_ref, MAX(author_id) AS author_id,
         MAX(amount_cents) FILTER (WHERE status = 'succeeded') AS paid,
         COALESCE(MAX(amount_cents) FILTER (WHERE status = 'refunded'), 0) AS refunded,
         MIN(occurred_at) FILTER (WHERE status = 'succeeded') AS paid_at
  FROM donations
  WHERE payment_ref IN (SELECT payment_ref FROM donations WHERE author_id = ANY($1::text[]))
  GROUP BY payment_ref
), per_day AS (
  SELECT author_id, (paid_at AT TIME ZONE 'UTC')::date AS day,
         COUNT(*) FILTER (WHERE paid - refunded > 0) AS n, SUM(GREATEST(paid - refunded, 0)) AS amount
  FROM refs WHERE paid IS NOT NULL AND author_id = ANY($1::text[]) GROUP BY 1, 2
)
INSERT INTO author_metric_daily (author_id, day, donation_count, donation_amount_cents)
SELECT author_id, day, n, amount FROM per_day
ON CONFLICT (author_id, day) DO UPDATE SET donation_count = EXCLUDED.donation_count,
  donation_amount_cents = EXCLUDED.donation_amount_cents, updated_at = NOW()
"""


@dataclass(frozen=True)
class DonationRow:
    stripe_event_id: str
    event_type: str
    payment_ref: str | None
    author_id: str | None
    amount_cents: int
    currency: str | None
    status: str  # succeeded | refunded | ignored
    occurred_at: datetime
    payload: dict[str, Any]


class DonationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, row: DonationRow) -> list[str]:
        """Store the event (once) with its audit row; returns the authors whose totals it may change."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO donations (stripe_event_id, event_type, payment_ref, author_id, amount_cents,"
                " currency, status, occurred_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
                " ON CONFLICT (stripe_event_id) DO NOTHING",
                row.stripe_event_id, row.event_type, row.payment_ref, row.author_id, row.amount_cents,
                row.currency, row.status, row.occurred_at, serde.dumps(row.payload).decode())
            await audit.record(conn, "stripe.webhook", actor="worker", subject=row.stripe_event_id,
                               detail={"type": row.event_type, "status": row.status, "authorId": row.author_id,
                                       "paymentRef": row.payment_ref})
            if row.payment_ref is None:
                return [row.author_id] if row.author_id else []
            authors = await conn.fetch("SELECT DISTINCT author_id FROM donations WHERE payment_ref = $1"
                                       " AND author_id IS NOT NULL", row.payment_ref)
        return [r["author_id"] for r in authors]

    async def recompute_authors(self, authors: Iterable[str]) -> None:
        ids = sorted(set(authors))
        if not ids:
            return
        async with self._db.transaction() as conn:
            # One recomputation per author at a time, so the last one always sees every committed row.
            await conn.execute("SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtext('donations|' || a)"
                               " AS k FROM unnest($1::text[]) AS a ORDER BY k) AS locks", ids)
            await conn.execute("UPDATE author_metric_daily SET donation_count = 0, donation_amount_cents = 0"
                               " WHERE author_id = ANY($1::text[])"
                               " AND (donation_count <> 0 OR donation_amount_cents <> 0)", ids)
            await conn.execute(_RECOMPUTE, ids)
