"""Topic `events`: analytics events on rules, keyed by ruleId.

Value: UTF-8 JSON `{"id", "type", "ruleId", "userId"?, "authorId"?, "ts", "ip"?, "idempotencyKey"?}` with
`ts` an ISO-8601 UTC date-time. The Kafka record timestamp must be the event time (`ts`): the daily windows
are cut on it. The gateway does both; a service producing directly must too.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingestflow.app import serde
from ingestflow.app.clock import to_iso
from ingestflow.app.errors import ValidationError

from . import fields

__all__ = ["EVENT_TYPES", "AnalyticsEvent", "from_request", "decode"]

EVENT_TYPES = ("VIEW", "COPY", "SAVE", "FORK", "VOTE")


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    id: str
    type: str
    rule_id: str
    ts: datetime
    user_id: str | None = None
    author_id: str | None = None
    ip: str | None = None
    idempotency_key: str | None = None

    @property
    def key(self) -> bytes:
        return self.rule_id.encode()

    @property
    def timestamp_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "ruleId": self.rule_id, "userId": self.user_id,
                "authorId": self.author_id, "ts": to_iso(self.ts), "ip": self.ip,
                "idempotencyKey": self.idempotency_key}

    def encode(self) -> bytes:
        return serde.dumps(self.to_json())


def _parse(raw: Any, path: str, received_at: datetime, ip: str | None) -> AnalyticsEvent:
    item = fields.obj(raw, path)
    kind = fields.string(item, "type", path, 16)
    if kind not in EVENT_TYPES:
        raise ValidationError(f"{path}.type", f"must be one of {', '.join(EVENT_TYPES)}, got {kind[:32]!r}")
    key = fields.opt_string(item, "idempotencyKey", path)
    event_id = fields.opt_string(item, "id", path) or key or str(uuid.uuid4())
    return AnalyticsEvent(
        id=event_id, type=kind, rule_id=fields.string(item, "ruleId", path, 128),
        ts=fields.timestamp(item, "ts", path, received_at),
        user_id=fields.opt_string(item, "userId", path, 128),
        author_id=fields.opt_string(item, "authorId", path, 128),
        ip=ip if ip is not None else fields.opt_string(item, "ip", path, 64),
        idempotency_key=key)


def from_request(raw: Any, path: str, received_at: datetime, ip: str) -> AnalyticsEvent:
    """An event as an HTTP producer sent it: the gateway stamps the client IP and the receipt time."""
    return _parse(raw, path, received_at, ip)


def decode(payload: bytes, record_time: datetime) -> AnalyticsEvent:
    """An event as it stands on the topic (`ts` defaults to the Kafka record time); raises ValidationError."""
    try:
        raw = serde.loads(payload)
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    return _parse(raw, "", record_time, None)
