from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError
from ingestflow.schemas.events import decode, from_request, too_old

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def test_request_event_gets_ip_receipt_time_and_key_as_id() -> None:
    ev = from_request({"type": "VIEW", "ruleId": "r1", "idempotencyKey": "k-1"}, "events[0]", NOW, "10.0.0.9")
    assert (ev.id, ev.ip, ev.ts, ev.key) == ("k-1", "10.0.0.9", NOW, b"r1")
    assert ev.timestamp_ms == int(NOW.timestamp() * 1000)


def test_topic_round_trip_keeps_every_field() -> None:
    ev = from_request({"type": "FORK", "ruleId": "r2", "userId": "u", "authorId": "a",
                       "ts": "2026-11-20T10:00:00Z"}, "events[0]", NOW, "1.2.3.4")
    assert decode(ev.encode(), NOW) == ev


@pytest.mark.parametrize(("raw", "field", "reason"), [
    ({"ruleId": "r"}, "events[3].type", "is required"),
    ({"type": "LIKE", "ruleId": "r"}, "events[3].type", "must be one of VIEW, COPY, SAVE, FORK, VOTE"),
    ({"type": "VIEW"}, "events[3].ruleId", "is required"),
    ({"type": "VIEW", "ruleId": 7}, "events[3].ruleId", "must be a string, got integer"),
    ({"type": "VIEW", "ruleId": "r", "ts": "yesterday"}, "events[3].ts", "is not an ISO-8601 date-time"),
    ({"type": "VIEW", "ruleId": "x" * 129}, "events[3].ruleId", "must be at most 128 characters"),
    ("VIEW", "events[3]", "must be a JSON object, got string"),
])
def test_bad_event_names_field_and_reason(raw: object, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_request(raw, "events[3]", NOW, "1.1.1.1")
    assert info.value.field == field
    assert info.value.reason.startswith(reason)


def test_undecodable_topic_value_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        decode(b"{not json", NOW)
    assert info.value.field == "value"
    with pytest.raises(ValidationError):
        decode(serde.dumps({"type": "VIEW"}), NOW)


def test_timestamp_that_overflows_in_utc_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        from_request({"type": "VIEW", "ruleId": "r", "ts": "9999-12-31T23:00:00-05:00"}, "events[0]", NOW, "1.1.1.1")
    assert info.value.field == "events[0].ts"
    assert "out of range" in info.value.reason


def test_an_event_is_accepted_on_the_last_35_utc_days_and_refused_before() -> None:
    # NOW is 2026-11-23 12:00: the counted days are 2026-10-20 to 2026-11-23.
    oldest = from_request({"type": "VIEW", "ruleId": "r", "ts": "2026-10-20T00:00:00Z"}, "events[1]", NOW, "1.1.1.1")
    assert oldest.ts == datetime(2026, 10, 20, tzinfo=timezone.utc)
    with pytest.raises(ValidationError) as info:
        from_request({"type": "VIEW", "ruleId": "r", "ts": "2026-10-19T23:59:59Z"}, "events[1]", NOW, "1.1.1.1")
    assert info.value.field == "events[1].ts"
    assert info.value.reason == "is before 2026-10-20: events are counted on the last 35 UTC days only"


def test_a_worker_drops_as_late_what_falls_before_the_counted_days() -> None:
    now = NOW.timestamp()
    assert not too_old(datetime(2026, 10, 20, tzinfo=timezone.utc).timestamp(), now)
    assert too_old(datetime(2026, 10, 19, 23, 59, 59, tzinfo=timezone.utc).timestamp(), now)
    assert not too_old(now + 86_400, now)  # a clock ahead is not late
