"""How the disk spool frames a record, and how a segment is read back despite torn or corrupt bytes.

Record framing: `MAGIC (2) | length (4, big-endian) | crc32 (4) | payload`, the CRC (zlib.crc32) covering
the length and the payload, so a corrupt length is detected too; after a corrupt record the reader resyncs at
the next marker whose record checks out. Payload (big-endian): `topic_len (2) | key_len (4) | value_len (4) |
timestamp_ms (8, -1 = none) | partition (4, -1 = by key) | headers_len (4) | topic | key | value | headers`,
the headers each `name_len (2) | value_len (4) | name (UTF-8) | value`. A key or value length of NULL_LENGTH
(0xFFFFFFFF) is a null key or value, with no bytes.

Segments written before records kept their headers use MAGIC_V1, whose payload stops after the value (no
partition, no headers): they are still read, as records without headers.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ingestflow.app.clients.kafka import OutgoingMessage

__all__ = ["encode_record", "parse_segment", "Corrupt"]

MAGIC = b"\xa7\x5f"
MAGIC_V1 = b"\xa7\x5e"
HEADER = struct.Struct(">2sII")  # magic, length, crc32(length + payload)
PAYLOAD_HEAD = struct.Struct(">HIIqiI")  # topic_len, key_len, value_len, timestamp_ms, partition, headers_len
PAYLOAD_HEAD_V1 = struct.Struct(">HIIq")  # topic_len, key_len, value_len, timestamp_ms
HEADER_HEAD = struct.Struct(">HI")  # name_len, value_len
NULL_LENGTH = 0xFFFFFFFF


def encode_record(message: OutgoingMessage) -> bytes:
    topic = message.topic.encode()
    ts = -1 if message.timestamp_ms is None else message.timestamp_ms
    partition = -1 if message.partition is None else message.partition
    headers = b"".join(HEADER_HEAD.pack(len(name), len(value)) + name + value
                       for name, value in ((k.encode(), v) for k, v in message.headers))
    key, value = message.key, message.value
    payload = PAYLOAD_HEAD.pack(len(topic), _length(key), _length(value), ts, partition, len(headers)) \
        + topic + (key or b"") + (value or b"") + headers
    length = struct.pack(">I", len(payload))
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(length + payload)) + payload


def _decode_payload(payload: bytes, magic: bytes) -> OutgoingMessage:
    if magic == MAGIC_V1:
        topic_len, key_len, value_len, ts = PAYLOAD_HEAD_V1.unpack_from(payload)
        partition, headers_len, start = -1, 0, PAYLOAD_HEAD_V1.size
    else:
        topic_len, key_len, value_len, ts, partition, headers_len = PAYLOAD_HEAD.unpack_from(payload)
        start = PAYLOAD_HEAD.size
    key_bytes, value_bytes = (0 if n == NULL_LENGTH else n for n in (key_len, value_len))
    if start + topic_len + key_bytes + value_bytes + headers_len != len(payload):
        raise ValueError("payload lengths do not add up")
    topic = payload[start:start + topic_len].decode()
    key = payload[start + topic_len:start + topic_len + key_bytes]
    value_end = start + topic_len + key_bytes + value_bytes
    value = payload[start + topic_len + key_bytes:value_end]
    return OutgoingMessage(topic, None if key_len == NULL_LENGTH else bytes(key),
                           None if value_len == NULL_LENGTH else bytes(value), None if ts < 0 else ts,
                           _decode_headers(payload[value_end:]), None if partition < 0 else partition)


def _length(data: bytes | None) -> int:
    return NULL_LENGTH if data is None else len(data)


def _decode_headers(block: bytes) -> tuple[tuple[str, bytes], ...]:
    headers, pos = [], 0
    while pos < len(block):
        name_len, value_len = HEADER_HEAD.unpack_from(block, pos)
        pos += HEADER_HEAD.size
        if pos + name_len + value_len > len(block):
            raise ValueError("header lengths do not add up")
        headers.append((block[pos:pos + name_len].decode(), bytes(block[pos + name_len:pos + name_len + value_len])))
        pos += name_len + value_len
    return tuple(headers)


@dataclass(frozen=True)
class Corrupt:
    """Bytes [start, end) of a segment that are not a valid record, and why."""

    start: int
    end: int
    reason: str


def _record_at(data: bytes, pos: int) -> tuple[OutgoingMessage, int] | str:
    """The record starting at `pos` and the offset after it, or the reason it is not one."""
    if len(data) - pos < HEADER.size:
        return "torn tail: incomplete record header"
    magic, length, crc = HEADER.unpack_from(data, pos)
    if magic not in (MAGIC, MAGIC_V1):
        return "bad record marker"
    end = pos + HEADER.size + length
    if end > len(data):
        return "torn tail: record shorter than its length"
    payload = data[pos + HEADER.size:end]
    if zlib.crc32(struct.pack(">I", length) + payload) != crc:
        return "CRC32 mismatch"
    try:
        return _decode_payload(payload, magic), end
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        return f"undecodable payload: {exc}"


def parse_segment(data: bytes, start: int = 0) -> Iterator[tuple[int, OutgoingMessage] | Corrupt]:
    """Each valid record with the offset after it, and each corrupt stretch; resyncs after corruption."""
    pos = start
    while pos < len(data):
        found = _record_at(data, pos)
        if not isinstance(found, str):
            message, pos = found
            yield pos, message
            continue
        # Find the next offset where a whole valid record starts; everything before it is corrupt.
        nxt = _next_marker(data, pos + 1)
        while nxt != -1 and isinstance(_record_at(data, nxt), str):
            nxt = _next_marker(data, nxt + 1)
        end = len(data) if nxt == -1 else nxt
        yield Corrupt(pos, end, found)
        pos = end


def _next_marker(data: bytes, start: int) -> int:
    """Where the next record marker (of either version) starts, or -1."""
    found = [i for i in (data.find(MAGIC, start), data.find(MAGIC_V1, start)) if i != -1]
    return min(found, default=-1)
