"""The JSON Schemas published for producers in other languages accept exactly what the gateway produces."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ingestflow.app.core import serde
from ingestflow.schemas import crawl, events, records

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "json"
NOW = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = serde.loads((SCHEMAS / name).read_bytes())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def produced() -> list[tuple[str, Any]]:
    event = events.from_request({"type": "VOTE", "ruleId": "r1", "userId": "u"}, "events[0]", NOW, "10.0.0.1")
    [item] = crawl.from_request({"sourceId": "s", "items": [{"externalId": "x", "url": "https://a.example",
                                                             "title": "t", "raw": [1]}]}, NOW, 10)
    [record] = records.from_request({"user_id": 7, "records": [{"wuid": "w", "cleaned": {"a": 1}}]}, 10)
    stripe = {"id": "evt_1", "type": "charge.succeeded", "created": 1700000000, "data": {"object": {}},
              "livemode": False}
    return [("events.schema.json", serde.loads(event.encode())), ("crawl.schema.json", serde.loads(item.encode())),
            ("records.schema.json", serde.loads(record.encode())), ("stripe.schema.json", stripe)]


@pytest.mark.parametrize("name, value", produced())
def test_what_the_gateway_produces_validates(name: str, value: Any) -> None:
    validator(name).validate(value)


@pytest.mark.parametrize("name, change", [
    ("events.schema.json", {"type": "LIKE"}), ("events.schema.json", {"ruleId": ""}),
    ("crawl.schema.json", {"url": "ftp://x"}), ("records.schema.json", {"cleaned": "text"}),
    ("stripe.schema.json", {"data": {}}),
    ("events.schema.json", {"ruleId": "r\u0000"}), ("crawl.schema.json", {"title": "t\u0000"}),
    ("crawl.schema.json", {"url": "https://a.example/\u0000"}), ("records.schema.json", {"user_id": "\u00b2"}),
    ("stripe.schema.json", {"created": 10**15}), ("stripe.schema.json", {"data": {"object": {"amount": -1}}}),
])
def test_values_the_consumers_would_dead_letter_are_invalid(name: str, change: dict[str, Any]) -> None:
    value = dict(next(v for n, v in produced() if n == name), **change)
    assert list(validator(name).iter_errors(value))

