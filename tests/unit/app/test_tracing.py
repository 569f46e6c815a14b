"""Which id a request's items carry, and which `trace-id` headers a worker believes."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from ingestflow.app.core import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("traceparent, request_id, expected", [
    (f"00-{TRACE}-00f067aa0ba902b7-01", None, TRACE),
    (f"00-{TRACE}-00f067aa0ba902b7-01", "req-1", TRACE),  # the caller's trace goes on
    (f"  00-{TRACE}-00f067aa0ba902b7-00 ", None, TRACE),
    (f"01-{TRACE}-00f067aa0ba902b7-01-extra", None, TRACE),  # a later version may append fields
    (None, "req-1", "req-1"),
    (f"00-{'0' * 32}-00f067aa0ba902b7-01", "req-1", "req-1"),  # all-zero trace id: invalid
    (f"00-{TRACE}-{'0' * 16}-01", "req-1", "req-1"),  # all-zero parent id: invalid
    (f"ff-{TRACE}-00f067aa0ba902b7-01", "req-1", "req-1"),  # version ff: invalid
    (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", "req-1", "req-1"),  # upper case: invalid
    (f"00-{TRACE}-00f067aa0ba902b7-01-extra", "req-1", "req-1"),  # version 00 has exactly four fields
])
def test_a_valid_traceparent_wins_then_a_valid_request_id(traceparent: str | None, request_id: str | None,
                                                           expected: str) -> None:
    assert tracing.from_http(traceparent, request_id) == expected


@pytest.mark.parametrize("request_id", [None, "", "x" * 65, "has space", "new\nline", "ünï", "a\x00b", "<script>"])
def test_without_a_valid_id_the_gateway_makes_one(request_id: str | None) -> None:
    made = tracing.from_http("garbage", request_id)
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert made != tracing.from_http("garbage", request_id)


@dataclass
class Message:
    headers: Any


@pytest.mark.parametrize("headers, expected", [
    ([("trace-id", b"abc-1")], "abc-1"),
    ({"trace-id": b"abc-1"}, "abc-1"),
    ([("other", b"x"), ("trace-id", b"a"), ("trace-id", b"b")], "b"),  # the last one, as Kafka clients do
    ([], None), (None, None),
    ([("trace-id", b"x" * 65)], None),
    ([("trace-id", b"bad id")], None),
    ([("trace-id", b"\xff\xfe")], None),
    ([("Trace-Id", b"abc")], None),
])
def test_a_worker_reads_only_a_valid_trace_id_header(headers: Any, expected: str | None) -> None:
    assert tracing.of_message(Message(headers)) == expected


def test_a_batch_names_each_trace_id_once_in_order() -> None:
    @dataclass
    class Event:
        message: Message
    events = [Event(Message([("trace-id", t)])) for t in (b"b", b"a", b"b", b"bad id", b"c")]
    assert tracing.of_events(events) == ["b", "a", "c"]
    assert tracing.headers("abc") == (("trace-id", b"abc"),)
