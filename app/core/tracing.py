"""Trace ids: one id follows an item from the HTTP request that brought it to the log lines, rows and archive
objects it ends in (schemas/topics.py has the `trace-id` header contract).

An id is at most MAX_LENGTH characters of `A-Z a-z 0-9 . _ : -`. Anything else is ignored: the gateway makes
a new id instead, a worker treats the record as untraced. So a header from a client or producer we do not
control can never bloat a log line, a table value or a row, nor inject anything into them.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ingestflow.schemas.topics import TRACE_ID_HEADER

__all__ = ["HEADER", "MAX_LENGTH", "is_valid", "from_http", "headers", "of_message", "of_messages", "of_events", "distinct"]

HEADER = TRACE_ID_HEADER
MAX_LENGTH = 64
_ID = re.compile(r"[A-Za-z0-9._:-]{1,%d}" % MAX_LENGTH)
# W3C Trace Context: version-traceid-parentid-flags; versions after 00 may append fields.
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?")
_ZEROS_32, _ZEROS_16 = "0" * 32, "0" * 16


def is_valid(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def from_http(traceparent: str | None, request_id: str | None) -> str:
    """The id of an HTTP request: a valid `traceparent`'s trace id (the caller's trace goes on), else a valid
    `x-request-id`, else a new one. An invalid traceparent is ignored, as the W3C recommendation says."""
    match = _TRACEPARENT.fullmatch(traceparent.strip()) if traceparent else None
    if match and match[2] != _ZEROS_32 and match[3] != _ZEROS_16 and (match[1] != "00" or not match[4]):
        return match[2]
    if request_id and is_valid(request_id):
        return request_id
    return uuid.uuid4().hex


def headers(trace_id: str) -> tuple[tuple[str, bytes], ...]:
    """The Kafka record headers that carry `trace_id`."""
    return ((HEADER, trace_id.encode()),)


def of_message(message: Any) -> str | None:
    """The trace id in a consumed record's headers (a list of pairs, or a mapping), or None."""
    raw = message.headers
    if not raw:
        return None
    # aiokafka's list or tuple first: the Mapping check is an ABC's, slow at a worker's rate per record
    pairs = raw if isinstance(raw, list | tuple) else raw.items() if isinstance(raw, Mapping) else raw
    found = None
    for name, value in pairs:
        if name == HEADER and isinstance(value, bytes | bytearray):
            found = bytes(value)
    if found is None or len(found) > MAX_LENGTH:
        return None
    text = found.decode("ascii", "replace")
    return text if is_valid(text) else None


def distinct(trace_ids: Iterable[str | None]) -> list[str]:
    """Each id once, in order of first appearance (a request's items share one)."""
    return list(dict.fromkeys(t for t in trace_ids if t is not None))


def of_messages(messages: Iterable[Any]) -> list[str]:
    """The distinct trace ids of these consumed records (Faust messages or aiokafka records)."""
    return distinct(of_message(message) for message in messages)


def of_events(events: Iterable[Any]) -> list[str]:
    """The distinct trace ids of these Faust events."""
    return of_messages(event.message for event in events)
