"""Topic `crawl-items`: one crawled item a record, keyed `sourceId:externalId`.

Value: `{"sourceId", "externalId", "url", "title", "summary"?, "raw"?, "receivedAt"}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingestflow.app.core import serde
from ingestflow.app.core.clock import to_iso
from ingestflow.app.core.errors import ValidationError

from . import fields

__all__ = ["CrawlItem", "from_request", "decode"]


@dataclass(frozen=True, slots=True)
class CrawlItem:
    source_id: str
    external_id: str
    url: str
    title: str
    received_at: datetime
    summary: str | None = None
    raw: Any = None

    @property
    def key(self) -> bytes:
        return f"{self.source_id}:{self.external_id}".encode()

    def to_json(self) -> dict[str, Any]:
        return {"sourceId": self.source_id, "externalId": self.external_id, "url": self.url,
                "title": self.title, "summary": self.summary, "raw": self.raw,
                "receivedAt": to_iso(self.received_at)}

    def encode(self) -> bytes:
        return serde.dumps(self.to_json())


def _item(raw: Any, path: str, source_id: str, received_at: datetime) -> CrawlItem:
    item = fields.obj(raw, path)
    url = fields.string(item, "url", path, 2048)
    if not url.startswith(("http://", "https://")):
        raise ValidationError(fields.join(path, "url"), "must be an http:// or https:// URL")
    raw_value = item.get("raw")
    if raw_value is not None and not isinstance(raw_value, dict | list):
        raise ValidationError(fields.join(path, "raw"), "must be a JSON object or array")
    fields.json_value(raw_value, fields.join(path, "raw"), text=True)  # stored as jsonb
    return CrawlItem(source_id=source_id, external_id=fields.string(item, "externalId", path, 256), url=url,
                     title=fields.string(item, "title", path, 1024),
                     summary=fields.opt_string(item, "summary", path, 10_000), raw=raw_value,
                     received_at=received_at)


def from_request(body: Any, received_at: datetime, max_items: int) -> list[CrawlItem]:
    """`{"sourceId", "items": [...]}` from an HTTP producer; all items valid or a ValidationError."""
    body = fields.obj(body, "body")
    source_id = fields.string(body, "sourceId", "", 256)
    items = fields.array(body, "items", "", max_items)
    return [_item(raw, f"items[{i}]", source_id, received_at) for i, raw in enumerate(items)]


def decode(payload: bytes, record_time: datetime) -> CrawlItem:
    try:
        raw = fields.obj(serde.loads(payload), "value")
    except serde.DecodeError as exc:
        raise ValidationError("value", f"is not valid JSON: {exc}") from None
    received = fields.timestamp(raw, "receivedAt", "", record_time)
    return _item(raw, "", fields.string(raw, "sourceId", "", 256), received)
