"""Topic `stripe-webhooks`: verified Stripe events exactly as Stripe sent them, keyed by the event id.

Value: `{"id": "evt_...", "type": "...", "created": 1700000000, "data": {"object": {...}}, ...}` (Stripe's
own event object, unchanged). The gateway produces it only after the signature checked out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError

from . import fields

__all__ = ["StripeEvent", "parse", "decode", "AMOUNTS", "MAX_AMOUNT", "MAX_CREATED"]


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    created: int
    data_object: dict[str, Any]
    raw: dict[str, Any]

    @property
    def key(self) -> bytes:
        return self.id.encode()


AMOUNTS = ("amount", "amount_total", "amount_received", "amount_refunded")  # what a donation row reads
MAX_AMOUNT = 10**12  # in the currency's smallest unit: far above any Stripe charge, far below BIGINT sums
MAX_CREATED = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second Python and PostgreSQL both hold


def parse(raw: Any, field: str = "body") -> StripeEvent:
    """The event as the gateway received it (`field` "body") or read it from the topic ("value")."""
    event = fields.json_value(fields.obj(raw, field), field, text=True)  # stored whole as jsonb
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValidationError("data.object", "is required and must be an object")
    obj = data["object"]
    for key in AMOUNTS:  # a donation row reads them when they are integers
        if isinstance(obj.get(key), int) and not isinstance(obj[key], bool):
            fields.integer(obj, key, "data.object", maximum=MAX_AMOUNT)
    # Text a donation row reads (payment_ref and author_id are indexed: a btree entry holds at most 2704 bytes).
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    for container, key, path, most in ((obj, "id", "data.object", 255), (obj, "payment_intent", "data.object", 255),
                                       (obj, "currency", "data.object", 255),
                                       (metadata, "authorId", "data.object.metadata", 128)):
        if isinstance(container.get(key), str) and len(container[key]) > most:
            raise ValidationError(fields.join(path, key), f"must be at most {most} characters")
    return StripeEvent(id=fields.string(event, "id", "", 255), type=fields.string(event, "type", "", 255),
                       created=fields.integer(event, "created", "", maximum=MAX_CREATED),
                       data_object=obj, raw=event)


def decode(payload: bytes) -> StripeEvent:
    try:
        return parse(serde.loads(payload), "value")
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
