"""Stream job on `stripe-webhooks`: donations and the authors' donation metrics, idempotent per Stripe
event id and independent of arrival order (app/donation_store.py has the arithmetic).

The author of a donation is `metadata.authorId` on the Stripe object (the Checkout Session or the
PaymentIntent; a Charge's refund finds it through its payment's other rows). A donation for an author
produces a message on `notifications`, keyed by authorId: at least once (a crash between the send and the
commit sends it again), so consumers deduplicate on `stripeEventId`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol, TypedDict

from ingestflow.app import serde
from ingestflow.app.donation_store import DonationRow
from ingestflow.app.errors import ValidationError
from ingestflow.app.observability import PROCESSED
from ingestflow.app.retry import retry
from ingestflow.schemas.stripe import StripeEvent, decode

from .dead_letter import dead_letter

__all__ = ["register", "to_row", "notification", "HANDLED_TYPES"]

log = logging.getLogger(__name__)

AGENT = "donations"
HANDLED_TYPES = ("checkout.session.completed", "payment_intent.succeeded", "charge.refunded")


class Store(Protocol):
    async def record(self, row: DonationRow) -> list[str]: ...

    async def recompute_authors(self, authors: Any) -> None: ...


class _Common(TypedDict):
    """The DonationRow fields every event type fills the same way."""
    stripe_event_id: str
    event_type: str
    author_id: str | None
    currency: str | None
    occurred_at: datetime
    payload: dict[str, Any]


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _int(obj: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValidationError(f"data.object.{key}", "must not be negative")
            return value
    return 0


def to_row(event: StripeEvent) -> DonationRow:
    """The `donations` row for one Stripe event; unknown types are kept with status "ignored"."""
    obj = event.data_object
    raw_metadata = obj.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    author = _str(metadata, "authorId")
    occurred = datetime.fromtimestamp(event.created, timezone.utc)
    common: _Common = {"stripe_event_id": event.id, "event_type": event.type, "author_id": author,
                       "currency": _str(obj, "currency"), "occurred_at": occurred, "payload": event.raw}
    if event.type == "checkout.session.completed":
        return DonationRow(payment_ref=_str(obj, "payment_intent") or _str(obj, "id"),
                           amount_cents=_int(obj, "amount_total"), status="succeeded", **common)
    if event.type == "payment_intent.succeeded":
        return DonationRow(payment_ref=_str(obj, "id"), amount_cents=_int(obj, "amount_received", "amount"),
                           status="succeeded", **common)
    if event.type == "charge.refunded":
        return DonationRow(payment_ref=_str(obj, "payment_intent") or _str(obj, "id"),
                           amount_cents=_int(obj, "amount_refunded"), status="refunded", **common)
    return DonationRow(payment_ref=None, amount_cents=0, status="ignored", **common)


def notification(row: DonationRow) -> bytes | None:
    if row.status != "succeeded" or not row.author_id:
        return None
    return serde.dumps({"type": "donation", "authorId": row.author_id, "amountCents": row.amount_cents,
                        "currency": row.currency, "stripeEventId": row.stripe_event_id,
                        "paymentRef": row.payment_ref, "occurredAt": row.occurred_at.isoformat()})


def register(app: Any, *, webhooks: Any, notifications: Any, dead_letters: Any, store: Store) -> Any:
    @app.agent(webhooks, name=AGENT)
    async def donations(stream: Any) -> None:
        async for events in stream.take_events(100, within=0.5):
            for event in events:
                stream._set_current_event(event)
                try:
                    row = to_row(decode(event.value))
                except ValidationError as exc:
                    await dead_letter(dead_letters, event, exc)
                    PROCESSED.labels(agent=AGENT, outcome="dead-lettered").inc()
                    continue
                except Exception as exc:  # never raise out of the loop: Faust would ack the batch
                    log.exception("stripe event failed; dead-lettering it")
                    await dead_letter(dead_letters, event, exc)
                    PROCESSED.labels(agent=AGENT, outcome="dead-lettered").inc()
                    continue
                authors = await retry(lambda: store.record(row), what="record donation")
                await retry(lambda: store.recompute_authors(authors), what="recompute donation metrics")
                message = notification(row)
                if message is not None:
                    await notifications.send(key=row.author_id.encode() if row.author_id else None, value=message)
                PROCESSED.labels(agent=AGENT, outcome=row.status).inc()

    return donations
