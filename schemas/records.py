"""Topic `website-records`: a user's website records for the encrypted archive, keyed by user_id.

Value: `{"user_id": 123, "wuid": "...", "cleaned": {...}, "context": "..."}`, one record a message.

Control messages share the topic so they are ordered with the records they concern and reach the worker
that owns the user's partition: `{"control": "flush", "user_id": 123}` keyed by the user id flushes that
user's pending batch; `{"control": "flush-all"}` flushes every user of the partition it lands on (the
gateway and the cron timer send one to each partition).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError

from . import fields

__all__ = ["WebsiteRecord", "Control", "CONTROLS", "from_request", "decode", "decode_any", "flush_user", "flush_all", "partition_keys"]


@dataclass(frozen=True, slots=True)
class WebsiteRecord:
    user_id: int
    wuid: str
    cleaned: dict[str, Any]
    context: str | None = None

    @property
    def key(self) -> bytes:
        return str(self.user_id).encode()

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "wuid": self.wuid, "cleaned": self.cleaned, "context": self.context}

    def encode(self) -> bytes:
        return serde.dumps(self.to_json())

    def archived(self) -> dict[str, Any]:
        """The record as it stands in an archived batch (the previous service's storage format)."""
        return {"website_uid": self.wuid, "cleanedJson": self.cleaned, "context": self.context}


def _record(raw: Any, path: str, user_id: int) -> WebsiteRecord:
    item = fields.obj(raw, path)
    cleaned = item.get("cleaned")
    if not isinstance(cleaned, dict):
        raise ValidationError(fields.join(path, "cleaned"), "is required and must be a JSON object")
    # Only archived (encrypted bytes), never in PostgreSQL: any string goes, but not any depth.
    fields.json_value(cleaned, fields.join(path, "cleaned"), text=False)
    context = item.get("context")
    if context is not None and not isinstance(context, str):
        raise ValidationError(fields.join(path, "context"), "must be a string")
    return WebsiteRecord(user_id=user_id, wuid=fields.string(item, "wuid", path, 256), cleaned=cleaned,
                         context=context)


def from_request(body: Any, max_items: int) -> list[WebsiteRecord]:
    """`{"user_id": 123, "records": [{"wuid", "cleaned", "context"}]}` from an HTTP producer."""
    body = fields.obj(body, "body")
    user_id = fields.integer(body, "user_id", "", minimum=0)
    records = fields.array(body, "records", "", max_items)
    return [_record(raw, f"records[{i}]", user_id) for i, raw in enumerate(records)]


def decode(payload: bytes) -> WebsiteRecord:
    try:
        raw = fields.obj(serde.loads(payload), "value")
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    return _record(raw, "", fields.integer(raw, "user_id", "", minimum=0))


CONTROLS = ("flush", "flush-all")


@dataclass(frozen=True, slots=True)
class Control:
    action: str
    user_id: int | None = None


def flush_user(user_id: int) -> tuple[bytes, bytes]:
    """(key, value) of a flush request for one user: same key as the user's records, same partition."""
    return str(user_id).encode(), serde.dumps({"control": "flush", "user_id": user_id})


def flush_all() -> bytes:
    return serde.dumps({"control": "flush-all"})


def decode_any(payload: bytes) -> WebsiteRecord | Control:
    """A record or a control message; anything else is a ValidationError naming the field."""
    try:
        raw = fields.obj(serde.loads(payload), "value")
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    if "control" not in raw:
        return _record(raw, "", fields.integer(raw, "user_id", "", minimum=0))
    action = raw["control"]
    if action not in CONTROLS:
        raise ValidationError("control", f"must be one of {', '.join(CONTROLS)}, got {str(action)[:32]!r}")
    if action == "flush":
        return Control(action, fields.integer(raw, "user_id", "", minimum=0))
    return Control(action)


def partition_keys(partitions: int) -> list[bytes]:
    """One key per partition under Kafka's default partitioner (murmur2), so flush-all reaches each one."""
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < partitions:
        key = f"flush-all-{i}".encode()
        keys.setdefault((murmur2(key) & 0x7FFFFFFF) % partitions, key)
        i += 1
    return [keys[p] for p in range(partitions)]
