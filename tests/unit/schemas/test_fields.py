"""What the stores cannot hold is refused by the topics' decoders (and so by the gateway, which uses the same
checks), each time with a ValidationError naming the field, never with a ValueError or a TypeError."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pytest

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError
from ingestflow.schemas import crawl, events, fields, records, rules, stripe

NOW = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def refused(call: Any, *args: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize("user_id", ["²", "٣", "1²", " 12", "1_000", "-1", "12.0"])
def test_a_user_id_that_is_not_ascii_digits_is_a_validation_error(user_id: str) -> None:
    value = serde.dumps({"user_id": user_id, "wuid": "w", "cleaned": {}})
    assert refused(records.decode_any, value).field == "user_id"
    assert refused(records.from_request, {"user_id": user_id, "records": [{"wuid": "w", "cleaned": {}}]}, 10
                   ).field == "user_id"


def test_a_quoted_ascii_user_id_is_still_read() -> None:
    item = records.decode_any(serde.dumps({"user_id": "42", "wuid": "w", "cleaned": {}}))
    assert isinstance(item, records.WebsiteRecord) and item.user_id == 42


@pytest.mark.parametrize("change, field", [
    ({"ruleId": "r\u0000"}, "ruleId"), ({"authorId": "a\u0000b"}, "authorId"), ({"id": "\u0000"}, "id"),
    ({"userId": "u\u0000"}, "userId"), ({"idempotencyKey": "k\u0000"}, "idempotencyKey"),
])
def test_nul_in_any_event_string_is_refused(change: dict[str, str], field: str) -> None:
    value = serde.dumps({"type": "VIEW", "ruleId": "r", **change})
    assert refused(events.decode, value, NOW).field == field


@pytest.mark.parametrize("change, field", [
    ({"title": "t\u0000"}, "title"), ({"url": "https://e.org/\u0000"}, "url"), ({"summary": "\u0000"}, "summary"),
    ({"raw": {"k": ["ok", "x\u0000"]}}, "raw"), ({"raw": {"k\u0000": 1}}, "raw"), ({"sourceId": "s\u0000"}, "sourceId"),
])
def test_nul_in_a_crawl_item_is_refused(change: dict[str, Any], field: str) -> None:
    value = serde.dumps({"sourceId": "s", "externalId": "x", "url": "https://e.org", "title": "t", **change})
    error = refused(crawl.decode, value, NOW)
    assert error.field == field and "NUL" in error.reason


def test_nul_anywhere_in_a_stripe_event_is_refused_since_it_is_stored_whole_as_jsonb() -> None:
    event = {"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"metadata": {"authorId": "a\u0000"}}}}
    error = refused(stripe.decode, serde.dumps(event))
    assert error.field == "value" and ".data.object.metadata.authorId" in error.reason
    assert refused(stripe.parse, event).field == "body"


@pytest.mark.parametrize("change, field", [
    ({"created": 10**15}, "created"), ({"created": "²"}, "created"),
    ({"data": {"object": {"amount_total": 10**13}}}, "data.object.amount_total"),
    ({"data": {"object": {"amount_refunded": -5}}}, "data.object.amount_refunded"),
    ({"data": {"object": {"metadata": {"authorId": "a" * 129}}}}, "data.object.metadata.authorId"),
    ({"data": {"object": {"payment_intent": "pi_" + "x" * 3000}}}, "data.object.payment_intent"),
])
def test_stripe_values_out_of_range_are_refused(change: dict[str, Any], field: str) -> None:
    event = {"id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}, **change}
    assert refused(stripe.decode, serde.dumps(event)).field == field


def test_nul_in_a_rule_catalog_entry_is_refused() -> None:
    assert refused(rules.decode, serde.dumps({"ruleId": "r", "authorId": "a\u0000"})).field == "authorId"


def test_values_nested_too_deep_are_refused_by_the_decoders() -> None:
    record = f'{{"user_id": 1, "wuid": "w", "cleaned": {deep(300)}}}'.encode()
    error = refused(records.decode_any, record)
    assert error.field == "cleaned" and "deeper than" in error.reason
    item = f'{{"sourceId": "s", "externalId": "x", "url": "https://e.org", "title": "t", "raw": {deep(200)}}}'
    assert refused(crawl.decode, item.encode(), NOW).field == "raw"


def test_nesting_up_to_the_limit_is_accepted_and_a_records_nul_is_kept() -> None:
    cleaned = serde.loads(deep(fields.MAX_JSON_DEPTH - 1))
    record = records.decode_any(serde.dumps({"user_id": 1, "wuid": "w", "cleaned": {"a": cleaned, "t": "\u0000"}}))
    assert isinstance(record, records.WebsiteRecord)
    serde.dumps([{"user_id": 1, "data": [record.archived()]}])  # the archived batch can be written


@pytest.mark.parametrize("text", ["0001-01-01", "1969-12-31", "²"])
def test_iso_day_is_bounded_to_what_the_stores_hold(text: str) -> None:
    assert refused(fields.iso_day, text, "to").field == "to"


def test_iso_day_and_ascii_int_read_what_they_should() -> None:
    assert fields.iso_day("2026-11-18T10:00:00Z", "date") == date(2026, 11, 18)
    assert fields.ascii_int("007", "limit", 1, 10) == 7
    assert refused(fields.ascii_int, "11", "limit", 1, 10).field == "limit"
