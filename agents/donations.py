"""Stream job on `stripe-webhooks`: donations and the authors' donation metrics, idempotent per Stripe
event id and independent of arrival order (app/stores/donation_store.py has the arithmetic).

The author of a donation is `metadata.authorId` on the Stripe object (the Checkout Session or the
PaymentIntent; a Charge's refund finds it through its payment's other rows). A donation for an author
produces a message on `notifications`, keyed by authorId: at least once (a crash between the send and the
commit sends it again), so consumers deduplicate on `stripeEventId`. It carries the Stripe event's trace id
header, as does the log line of each event recorded.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypedDict

from ingestflow.app.core import serde, tracing
from ingestflow.app.core.observability import PROCESSED, observe_batch
from ingestflow.app.stores.donation_store import DonationRow
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.schemas.stripe import StripeEvent, decode

from .dead_letter import DeadLetters
from .isolate import write_isolating

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
    """The first integer amount of `keys` (schemas/stripe.py has checked each is within 0..MAX_AMOUNT)."""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
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


def register(app: Any, *, webhooks: Any, notifications: Any, dead_letters: DeadLetters, store: Store) -> Any:
    async def handle(events: Sequence[Any]) -> None:
        """One Stripe event, start to finish; every step is idempotent, so a retry may repeat them all."""
        row = to_row(decode(events[0].value))
        trace = tracing.of_message(events[0].message)
        authors = await store.record(row)
        await store.recompute_authors(authors)
        message = notification(row)
        if message is not None:
            await notifications.send(key=row.author_id.encode() if row.author_id else None, value=message,
                                     headers=list(tracing.headers(trace)) if trace else None)
        PROCESSED.labels(agent=AGENT, outcome=row.status).inc()
        log.info("stripe event %s recorded: %s", row.stripe_event_id, row.status, extra={"trace_id": trace})

    async def reject(event: Any, error: BaseException) -> None:
        await dead_letters.send(event.message, error, agent=AGENT)

    failed_batches = FailedBatches(app, AGENT)

    @app.agent(webhooks, name=AGENT)
    async def donations(stream: Any) -> None:
        async for events in stream.take_events(100, within=0.5):
            async with failed_batches.read_again_on_error(events):
                for event in events:
                    # PostgreSQL or Kafka down: retried, the partition waits; an event that fails for its own
                    # content (one PostgreSQL refuses) is dead-lettered and the next one goes on.
                    await write_isolating([event], handle, reject, what="record donation")
                observe_batch(AGENT, events)

    return donations
