"""Topic `dead-letters`: records a worker could not process because of their own content, kept byte for byte
so an operator can fix the cause and re-drive them to their source topic without loss.

Key and value: the original record's key and value bytes, unchanged (null stays null). Headers: the original
record's own headers first, in order (its `trace-id` among them), then these, each a UTF-8 string (the names
are a contract: `read` below and `ingestflow dlq` read them, and a re-drive takes as the record's headers those
not starting with `dlq.`):

| header                 | value                                                                        |
| ---                    | ---                                                                          |
| `dlq.source.topic`     | the topic the record was read from                                           |
| `dlq.source.partition` | its partition, decimal                                                       |
| `dlq.source.offset`    | its offset, decimal (with the topic and partition: the record's identity)    |
| `dlq.source.timestamp` | its Kafka timestamp, milliseconds since the epoch, decimal                   |
| `dlq.error.type`       | the exception class: `ValidationError`, `UntranslatableCharacterError`, ...  |
| `dlq.error.field`      | for a ValidationError, the field at fault (absent otherwise)                 |
| `dlq.error.message`    | the error text, at most 1000 characters, cut shorter to fit the size bound   |
| `dlq.at`               | when it was dead-lettered, ISO-8601 UTC                                      |
| `dlq.worker`           | the WORKER_APP_ID of the worker that dead-lettered it                        |
| `dlq.part`             | `i/n`, only on a record split in parts (below)                               |
| `dlq.truncated`        | `key` and/or `headers`, only when those could not be kept whole (below)      |

Size: a dead-letter record never exceeds MAX_RECORD_BYTES (app/core/limits.py), what the worker's producer
sends and every topic accepts. When the original value and the headers do not fit, the error message is cut
first; when the value alone leaves no room, the value is split in n parts, each a record with the same key
and headers plus `dlq.part` = `i/n` (1-based), in order on the same partition: the parts' values joined in
order are the original value. Only a key or original headers so large (over MAX_KEY_BYTES together) that no
part could carry any value are cut to fit, saying so in `dlq.truncated`; no contract of ours has such keys.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from ingestflow.app.core.limits import MAX_RECORD_BYTES

__all__ = ["Source", "Failure", "DeadRecord", "Envelope", "envelopes", "read", "HEADERS", "MAX_ERROR_CHARS",
           "MAX_KEY_BYTES", "PREFIX"]

PREFIX = "dlq."
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP = (
    "dlq.source.topic", "dlq.source.partition", "dlq.source.offset", "dlq.source.timestamp")
ERROR_TYPE, ERROR_FIELD, ERROR_MESSAGE = "dlq.error.type", "dlq.error.field", "dlq.error.message"
AT, WORKER, PART, TRUNCATED = "dlq.at", "dlq.worker", "dlq.part", "dlq.truncated"
HEADERS = (SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP, ERROR_TYPE, ERROR_FIELD, ERROR_MESSAGE,
           AT, WORKER, PART, TRUNCATED)
MAX_ERROR_CHARS = 1000
MAX_KEY_BYTES = 65_536  # the most of key + original headers a split record keeps (room for value in each part)
MIN_MESSAGE_BYTES = 200  # of the error text kept on every part of a split record
_SLACK = 64  # varint growth of lengths the estimate is computed with, and the `i/n` part header

Header = tuple[str, bytes]


@dataclass(frozen=True)
class Source:
    """Where the record was read, and its bytes as they were."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    worker: str
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    field: str | None = None


@dataclass(frozen=True)
class DeadRecord:
    key: bytes | None
    value: bytes | None
    headers: list[Header]


@dataclass(frozen=True)
class Envelope:
    """One dead-letter record read back: the record it keeps (for a part, that part of the value; the headers
    are the original's), why it failed, and which part it is."""

    source: Source
    failure: Failure
    part: int = 1
    parts: int = 1
    truncated: str = ""


def read(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> Envelope:
    """The inverse of `envelopes`, one record at a time; ValueError naming the header a record breaks."""
    own: dict[str, str] = {}
    original: list[Header] = []
    for name, raw in headers:
        if name.startswith(PREFIX):
            own[name] = (raw or b"").decode("utf-8", "replace")
        else:
            original.append((name, raw or b""))

    def need(name: str) -> str:
        if name not in own:
            raise ValueError(f"{name}: missing")
        return own[name]

    def number(name: str) -> int:
        text = need(name)
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name}: not a number: {text[:40]!r}") from None

    try:
        at = datetime.fromisoformat(need(AT))
    except ValueError as exc:
        raise ValueError(f"{AT}: {exc}") from None
    part, parts = 1, 1
    if PART in own:
        i, _, n = own[PART].partition("/")
        if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
            raise ValueError(f"{PART}: not i/n: {own[PART][:40]!r}")
        part, parts = int(i), int(n)
    source = Source(topic=need(SOURCE_TOPIC), partition=number(SOURCE_PARTITION), offset=number(SOURCE_OFFSET),
                    timestamp_ms=number(SOURCE_TIMESTAMP), key=key, value=value, headers=tuple(original))
    failure = Failure(type=need(ERROR_TYPE), message=own.get(ERROR_MESSAGE, ""), worker=need(WORKER),
                      at=at if at.tzinfo else at.replace(tzinfo=timezone.utc), field=own.get(ERROR_FIELD))
    return Envelope(source, failure, part, parts, own.get(TRUNCATED, ""))


def envelopes(source: Source, failure: Failure) -> list[DeadRecord]:
    """The dead-letter record(s) of one failed record: one whenever it fits, else its value in parts."""
    own = [(SOURCE_TOPIC, source.topic.encode()), (SOURCE_PARTITION, str(source.partition).encode()),
           (SOURCE_OFFSET, str(source.offset).encode()), (SOURCE_TIMESTAMP, str(source.timestamp_ms).encode()),
           (ERROR_TYPE, failure.type.encode()[:200]),
           *([(ERROR_FIELD, failure.field.encode()[:500])] if failure.field is not None else []),
           (AT, failure.at.astimezone(timezone.utc).isoformat(timespec="milliseconds").encode()),
           (WORKER, failure.worker.encode()[:200])]
    message = failure.message[:MAX_ERROR_CHARS].encode()
    key, kept, truncated = source.key, list(source.headers), ""
    while True:
        headers = [*kept, *own, *([(TRUNCATED, truncated.encode())] if truncated else [])]
        room = MAX_RECORD_BYTES - _SLACK - _size(key, source.value, [*headers, (ERROR_MESSAGE, b"")])
        if room >= min(len(message), MIN_MESSAGE_BYTES):
            return [DeadRecord(key, source.value, [*headers, (ERROR_MESSAGE, _cut(message, room))])]
        if _size(key, b"", kept) <= MAX_KEY_BYTES:
            break  # the value is what does not fit: split it
        key, kept, truncated = _shrink(key, kept)
    assert source.value is not None  # a null value with key and headers within MAX_KEY_BYTES always fits
    headers.append((ERROR_MESSAGE, _cut(message, MIN_MESSAGE_BYTES)))
    chunk = MAX_RECORD_BYTES - _SLACK - _size(key, b"", [*headers, (PART, b"")])
    value = source.value
    n = -(-len(value) // chunk)
    return [DeadRecord(key, value[i * chunk:(i + 1) * chunk], [*headers, (PART, f"{i + 1}/{n}".encode())])
            for i in range(n)]


def _shrink(key: bytes | None, headers: list[Header]) -> tuple[bytes | None, list[Header], str]:
    """A key and original headers cut to MAX_KEY_BYTES together, and what was cut."""
    cut = []
    if key is not None and len(key) > MAX_KEY_BYTES // 2:
        key, cut = key[:MAX_KEY_BYTES // 2], ["key"]
    kept = list(headers)
    while kept and _size(key, b"", kept) > MAX_KEY_BYTES:
        kept.pop()
    if len(kept) < len(headers):
        cut.append("headers")
    return key, kept, ",".join(cut)


def _size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """The record's size as a one-record batch, as the producer measures it against its max request size."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def _cut(text: bytes, limit: int) -> bytes:
    """At most `limit` bytes of UTF-8 text, never ending inside a character."""
    return text[:max(limit, 0)].decode("utf-8", "ignore").encode()
