"""Reading dead letters back without a broker: parts joined, copies counted, stray parts and foreign records
counted, the filters, the fingerprint a re-drive finds its records by, and the list an operator reads."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from ingestflow.app.ops.dlq import Assembler, Selection, SourceRange
from ingestflow.app.ops.dlq_command import letter_json, render_list, summary_json
from ingestflow.app.ops.redrive import fingerprint
from ingestflow.schemas.dead_letters import Failure, Source, envelopes

AT = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


@dataclass
class Record:
    """A consumed dead-letter record, as aiokafka gives it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead(offset: int, value: bytes | None = b"{}", *, topic: str = "crawl-items", error: str = "ValidationError",
         at: datetime = AT, worker: str = "app") -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    source = Source(topic, 0, offset, 1_700_000_000_000, b"k", value, (("trace-id", b"t1"),))
    return [(r.key, r.value, r.headers) for r in envelopes(source, Failure(error, "bad", worker, at))]


def assemble(records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
             selection: Selection = Selection(), keep_values: bool = True) -> Assembler:
    assembler = Assembler(selection, keep_values)
    for i, (key, value, headers) in enumerate(records):
        assembler.add(Record(1, 100 + i, key, value, headers))
    return assembler


def test_parts_are_joined_and_copies_counted_once() -> None:
    big = b"x" * 2_100_000
    first, copy = dead(5, big), dead(5, big)
    assert len(first) == 3
    other = dead(6)
    # A copy sent again after a worker restart, another dead letter between the parts.
    found = assemble([first[0], *other, first[1], first[2], *copy]).finish()
    assert [d.id for d in found.letters] == ["crawl-items:0:6", "crawl-items:0:5"]  # as each was complete
    letter = found.letters[1]
    assert letter.source.value == big and letter.size == len(big) and letter.parts == 3 and letter.copies == 2
    assert letter.location == (1, 100) and letter.source.headers == (("trace-id", b"t1"),)
    assert found.incomplete == 0 and found.unreadable == 0


def test_a_restarted_split_starts_over_and_stray_or_missing_parts_are_incomplete() -> None:
    big = b"y" * 1_500_000
    parts = dead(7, big)
    found = assemble([parts[1], parts[0], *parts, dead(8, big)[0]]).finish()
    assert [d.source.value for d in found.letters] == [big]
    assert found.incomplete == 2  # the part 2 read before its part 1, and 8's lone part 1


def test_values_are_dropped_when_not_needed_but_their_size_is_kept() -> None:
    [letter] = assemble(dead(5, b"z" * 1_200_000), keep_values=False).finish().letters
    assert letter.source.value is None and letter.size == 1_200_000


def test_a_null_value_stays_null() -> None:
    [letter] = assemble(dead(5, None)).finish().letters
    assert letter.source.value is None and letter.size == 0


def test_records_that_break_the_contract_are_counted_not_fatal() -> None:
    found = assemble([(b"k", b"v", []), (None, None, [("dlq.at", b"x")]), *dead(9)]).finish()
    assert found.unreadable == 2 and [d.id for d in found.letters] == ["crawl-items:0:9"]


def test_every_filter_given_must_match() -> None:
    records = [*dead(1), *dead(2, error="CheckViolationError"), *dead(3, topic="events"),
               *dead(4, at=AT + timedelta(hours=1)), *dead(5, worker="other")]

    def ids(selection: Selection) -> list[str]:
        return [d.id for d in assemble(records, selection).finish().letters]
    assert ids(Selection(topics=frozenset({"crawl-items"}), errors=frozenset({"ValidationError"}),
                         workers=frozenset({"app"}), until=AT + timedelta(minutes=1))) == ["crawl-items:0:1"]
    assert ids(Selection(since=AT + timedelta(minutes=1))) == ["crawl-items:0:4"]
    assert ids(Selection(records=(SourceRange.parse("crawl-items:0:2-4"), SourceRange.parse("events:0:3")))) == [
        "crawl-items:0:2", "events:0:3", "crawl-items:0:4"]


@pytest.mark.parametrize("text", ["crawl-items", "crawl-items:0", "crawl-items:a:1", "t:0:5-4", "t:0:-1", "a b:0:1"])
def test_a_malformed_record_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        SourceRange.parse(text)


def test_the_fingerprint_tells_key_value_and_headers_apart() -> None:
    base = fingerprint(b"k", b"v", [("trace-id", b"t")])
    assert base == fingerprint(b"k", b"v", (("trace-id", b"t"),))
    assert len({base, fingerprint(None, b"v", [("trace-id", b"t")]), fingerprint(b"", b"v", [("trace-id", b"t")]),
                fingerprint(b"k", None, [("trace-id", b"t")]), fingerprint(b"k", b"v", []),
                fingerprint(b"kv", b"", [("trace-id", b"t")]), fingerprint(b"k", b"v", [("trace-i", b"dt")])}) == 7


def test_the_list_counts_by_topic_and_error_and_shows_each_with_its_id() -> None:
    found = assemble([*dead(1), *dead(2), *dead(3, error="CheckViolationError"), (b"k", b"v", [])]).finish()
    assert summary_json(found) == {"total": 3, "unreadable": 1, "incomplete": 0, "counts": [
        {"topic": "crawl-items", "errorType": "CheckViolationError", "count": 1},
        {"topic": "crawl-items", "errorType": "ValidationError", "count": 2}]}
    text = render_list(found, found.letters[-2:])
    assert text.splitlines()[0] == "3 dead letter(s), 1 unreadable record(s)"
    assert "crawl-items:0:3" in text and "CheckViolationError" in text and "(the last 2 of 3" in text
    shown = letter_json(found.letters[0], with_bytes=True)
    assert shown["headers"] == [{"name": "trace-id", "text": "t1"}] and shown["key"] == {"text": "k"}
