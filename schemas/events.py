"""Topic `events`: analytics events on rules, keyed by ruleId.

Value: UTF-8 JSON `{"id", "type", "ruleId", "userId"?, "authorId"?, "ts", "ip"?, "idempotencyKey"?}` with
`ts` an ISO-8601 UTC date-time. The Kafka record timestamp must be the event time (`ts`): the daily windows
are cut on it. The gateway does both; a service producing directly must too. An event is counted only on
the last MAX_EVENT_AGE_DAYS UTC days (today included): the gateway refuses an older `ts`, a worker drops
an older record as late (`too_old`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ingestflow.app.core import serde
from ingestflow.app.core.clock import to_iso
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.core.limits import MAX_EVENT_AGE_DAYS

from . import fields

__all__ = ["EVENT_TYPES", "AnalyticsEvent", "from_request", "decode", "too_old"]

EVENT_TYPES = ("VIEW", "COPY", "SAVE", "FORK", "VOTE")
_DAY_S = 86_400


def too_old(ts: float, now: float) -> bool:
    """True when the event time `ts` (epoch seconds) is on a UTC day before the MAX_EVENT_AGE_DAYS counted
    ones ending with the day of `now`."""
    return ts < now - now % _DAY_S - (MAX_EVENT_AGE_DAYS - 1) * _DAY_S


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
    """An event as an HTTP producer sent it: the gateway stamps the client IP and the receipt time. A `ts`
    too old to be counted is refused here rather than acknowledged and dropped."""
    event = _parse(raw, path, received_at, ip)
    if too_old(event.ts.timestamp(), received_at.timestamp()):
        oldest = datetime.fromtimestamp(received_at.timestamp(), received_at.tzinfo) - timedelta(
            days=MAX_EVENT_AGE_DAYS - 1)
        raise ValidationError(fields.join(path, "ts"), f"is before {oldest.date().isoformat()}: events are counted"
                              f" on the last {MAX_EVENT_AGE_DAYS} UTC days only")
    return event


def decode(payload: bytes, record_time: datetime) -> AnalyticsEvent:
    """An event as it stands on the topic (`ts` defaults to the Kafka record time); raises ValidationError."""
    try:
        raw = serde.loads(payload)
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    return _parse(raw, "", record_time, None)
