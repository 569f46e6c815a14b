"""The dead-letter record format: the original bytes unchanged, the source and the error in headers, and never
more than the worker's producer sends (MAX_RECORD_BYTES), whatever the size of the original."""
from __future__ import annotations

from datetime import datetime, timezone

import jsonschema
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from ingestflow.app.core import serde
from ingestflow.app.core.limits import MAX_RECORD_BYTES
from ingestflow.schemas import dead_letters
from ingestflow.schemas.dead_letters import Failure, Source, envelopes

from .test_topic_json_schemas import SCHEMAS

AT = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=timezone.utc)


def source(value: bytes | None, key: bytes | None = b"user-1",
           headers: tuple[tuple[str, bytes], ...] = (("trace", b"t-1"),)) -> Source:
    return Source(topic="website-records", partition=3, offset=1234, timestamp_ms=1_763_892_000_123, key=key,
                  value=value, headers=headers)


def failure(message: str = "cleaned: nests deeper than 128 levels") -> Failure:
    return Failure(type="ValidationError", message=message, worker="ingestflow", at=AT, field="cleaned")


def size(record: dead_letters.DeadRecord) -> int:
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, record.headers))


def test_a_record_is_kept_whole_with_its_source_and_error_in_headers() -> None:
    [record] = envelopes(source(b'{"user_id": 1}'), failure())
    assert (record.key, record.value) == (b"user-1", b'{"user_id": 1}')
    assert record.headers[0] == ("trace", b"t-1")  # the original headers first, as they were
    assert dict(record.headers[1:]) == {
        "dlq.source.topic": b"website-records", "dlq.source.partition": b"3", "dlq.source.offset": b"1234",
        "dlq.source.timestamp": b"1763892000123", "dlq.error.type": b"ValidationError",
        "dlq.error.field": b"cleaned", "dlq.error.message": b"cleaned: nests deeper than 128 levels",
        "dlq.at": b"2026-11-23T10:00:00.123+00:00", "dlq.worker": b"ingestflow"}
    assert {name for name, _ in record.headers[1:]} <= set(dead_letters.HEADERS)


def test_headers_validate_against_the_published_json_schema() -> None:
    [record] = envelopes(source(None, headers=()), failure("x" * 5000))
    schema = serde.loads((SCHEMAS / "dead-letter.schema.json").read_bytes())
    headers = {name: value.decode() for name, value in record.headers}
    jsonschema.Draft202012Validator(schema).validate(headers)
    assert len(headers["dlq.error.message"]) == dead_letters.MAX_ERROR_CHARS
    assert record.value is None  # a tombstone stays a tombstone


def test_near_the_size_limit_the_error_text_is_cut_and_the_value_kept_whole() -> None:
    value = b"v" * (MAX_RECORD_BYTES - 700)
    [record] = envelopes(source(value), failure("é" * 1000))
    assert record.value == value and size(record) <= MAX_RECORD_BYTES
    message = dict(record.headers)["dlq.error.message"]
    assert 0 < len(message) < 1000 and message.decode().strip("é") == ""  # cut between characters


@pytest.mark.parametrize("length", [MAX_RECORD_BYTES - 100, 1_048_576, 3 * MAX_RECORD_BYTES])
def test_a_value_too_large_to_fit_is_split_in_ordered_parts_that_join_to_it(length: int) -> None:
    value = bytes(range(256)) * (length // 256) + b"end"
    parts = envelopes(source(value), failure())
    assert len(parts) >= 2
    assert b"".join(p.value or b"" for p in parts) == value
    assert [dict(p.headers)["dlq.part"] for p in parts] == [f"{i}/{len(parts)}".encode()
                                                             for i in range(1, len(parts) + 1)]
    assert all(p.key == b"user-1" and size(p) <= MAX_RECORD_BYTES for p in parts)
    assert all(dict(p.headers)["dlq.source.offset"] == b"1234" for p in parts)


def test_only_a_pathological_key_is_cut_and_the_record_says_so() -> None:
    key = b"k" * 500_000
    parts = envelopes(source(b"v" * 700_000, key=key), failure())
    assert all(size(p) <= MAX_RECORD_BYTES for p in parts)
    assert b"".join(p.value or b"" for p in parts) == b"v" * 700_000
    assert all(dict(p.headers)["dlq.truncated"] == b"key" and p.key == key[:len(p.key or b"")] for p in parts)
    [whole] = envelopes(source(b"v", key=key), failure())  # a big key that fits is kept as it is
    assert whole.key == key and "dlq.truncated" not in dict(whole.headers)


@pytest.mark.parametrize("value", [b'{"user_id": 1}', None, b"v" * 2_500_000])
def test_reading_a_dead_letter_back_gives_its_source_and_failure(value: bytes | None) -> None:
    original = source(value, headers=(("trace-id", b"t-1"), ("other", b"\xff")))
    parts = [dead_letters.read(r.key, r.value, r.headers) for r in envelopes(original, failure())]
    assert [(p.part, p.parts) for p in parts] == [(i, len(parts)) for i in range(1, len(parts) + 1)]
    assert all(p.failure == failure() for p in parts)
    assert all(p.source.headers == original.headers for p in parts)  # the original's only: no dlq.* among them
    joined = None if value is None else b"".join(p.source.value or b"" for p in parts)
    assert parts[0].source == Source(original.topic, original.partition, original.offset, original.timestamp_ms,
                                     original.key, joined if len(parts) == 1 else parts[0].source.value,
                                     original.headers)
    assert joined == value


@pytest.mark.parametrize("change, named", [
    ({"dlq.source.offset": None}, "dlq.source.offset: missing"),
    ({"dlq.source.partition": b"three"}, "dlq.source.partition: not a number"),
    ({"dlq.at": b"yesterday"}, "dlq.at:"),
    ({"dlq.part": b"3/2"}, "dlq.part: not i/n"),
    ({"dlq.error.type": None}, "dlq.error.type: missing"),
])
def test_a_record_that_breaks_the_contract_is_refused_naming_the_header(change: dict[str, bytes | None],
                                                                       named: str) -> None:
    [record] = envelopes(source(b"{}"), failure())
    headers = [(k, change.get(k, v)) for k, v in record.headers if change.get(k, v) is not None]
    headers += [(k, v) for k, v in change.items() if v is not None and k not in dict(record.headers)]
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        dead_letters.read(record.key, record.value, headers)  # type: ignore[arg-type]
