"""Topic `stripe-webhooks`: verified Stripe events exactly as Stripe sent them, keyed by the event id.

Value: `{"id": "evt_...", "type": "...", "created": 1700000000, "data": {"object": {...}}, ...}` (Stripe's
own event object, unchanged). The gateway produces it only after the signature checked out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingestflow.app import serde
from ingestflow.app.errors import ValidationError

from . import fields

__all__ = ["StripeEvent", "parse", "decode"]


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


def parse(raw: Any) -> StripeEvent:
    event = fields.obj(raw, "body")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValidationError("data.object", "is required and must be an object")
    return StripeEvent(id=fields.string(event, "id", "", 255), type=fields.string(event, "type", "", 255),
                       created=fields.integer(event, "created", ""), data_object=data["object"], raw=event)


def decode(payload: bytes) -> StripeEvent:
    try:
        return parse(serde.loads(payload))
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
