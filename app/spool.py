"""The disk spool: accepted messages that Kafka could not take yet, fsynced before the gateway answers.

Layout under `FILE_BUFFER_DIR`:

- `seg-000000000001.log`, ... append-only segments, replayed oldest first. After a restart every existing
  segment is sealed and new appends open a new one, so a torn tail can only ever be at the end of a sealed
  segment.
- `seg-....ack` the byte offset up to which a segment's records are acknowledged by Kafka (written after each
  replayed batch, fsynced, renamed into place), so a crash in the middle of a replay re-sends one batch at
  most, not the whole segment.
- `failed/` bytes that could not be decoded (torn tail, CRC mismatch) with a `.json` file giving the reason.
  They are counted and kept for an operator; the records around them still replay.
- `LOCK` an flock held by the one process that owns the directory.

Record framing: `MAGIC (2) | length (4, big-endian) | crc32 (4) | payload`, the CRC (zlib.crc32) covering
the length and the payload, so a corrupt length is detected too; after a corrupt record the reader resyncs at
the next MAGIC whose record checks out. Payload: `topic_len (2) | key_len (4) | value_len (4) |
timestamp_ms (8, -1 = none) | topic | key | value`.

Appends from concurrent requests are grouped: one writer writes every waiting batch and fsyncs once, then
answers them all (group commit), so many small requests cost one fsync rather than one each.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import serde
from .errors import ConfigError, SpoolFull, Unavailable
from .kafka import OutgoingMessage

__all__ = ["Spool", "SpoolStatus", "encode_record", "parse_segment", "Corrupt"]

log = logging.getLogger(__name__)

MAGIC = b"\xa7\x5e"
HEADER = struct.Struct(">2sII")  # magic, length, crc32(length + payload)
PAYLOAD_HEAD = struct.Struct(">HIIq")  # topic_len, key_len, value_len, timestamp_ms
SEGMENT_PREFIX = "seg-"
Send = Callable[[Sequence[OutgoingMessage]], Awaitable[None]]


def encode_record(message: OutgoingMessage) -> bytes:
    topic = message.topic.encode()
    ts = -1 if message.timestamp_ms is None else message.timestamp_ms
    payload = PAYLOAD_HEAD.pack(len(topic), len(message.key), len(message.value), ts) + topic + message.key \
        + message.value
    length = struct.pack(">I", len(payload))
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(length + payload)) + payload


def _decode_payload(payload: bytes) -> OutgoingMessage:
    topic_len, key_len, value_len, ts = PAYLOAD_HEAD.unpack_from(payload)
    start = PAYLOAD_HEAD.size
    if start + topic_len + key_len + value_len != len(payload):
        raise ValueError("payload lengths do not add up")
    topic = payload[start:start + topic_len].decode()
    key = payload[start + topic_len:start + topic_len + key_len]
    value = payload[start + topic_len + key_len:]
    return OutgoingMessage(topic, bytes(key), bytes(value), None if ts < 0 else ts)


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
    if magic != MAGIC:
        return "bad record marker"
    end = pos + HEADER.size + length
    if end > len(data):
        return "torn tail: record shorter than its length"
    payload = data[pos + HEADER.size:end]
    if zlib.crc32(struct.pack(">I", length) + payload) != crc:
        return "CRC32 mismatch"
    try:
        return _decode_payload(payload), end
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
        nxt = data.find(MAGIC, pos + 1)
        while nxt != -1 and isinstance(_record_at(data, nxt), str):
            nxt = data.find(MAGIC, nxt + 1)
        end = len(data) if nxt == -1 else nxt
        yield Corrupt(pos, end, found)
        pos = end


@dataclass
class SpoolStatus:
    pending: int
    failed: int
    bytes: int
    segments: int


@dataclass
class _Waiter:
    blob: bytes
    count: int
    done: asyncio.Future[None] = field(repr=False)


class Spool:
    """Durable FIFO of outgoing messages. One process owns a directory (flock); not thread-safe, one loop."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self._dir = directory
        self._failed_dir = directory / "failed"
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock_file: IO[bytes] | None = None
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._next_seq = 1
        self._bytes = 0
        self._pending = 0
        self._failed = 0
        self._full = False  # the last append was refused for room, and nothing was freed since
        self._queue: deque[_Waiter] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()
        self._drain_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Take the directory, count what an earlier run left (replayed before anything newer)."""
        if self._lock_file is not None:
            return
        await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        self._failed_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self._dir / "LOCK", "ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError("FILE_BUFFER_DIR", f"{self._dir} is in use by another gateway process") from None
        self._lock_file = lock
        segments = self._segments()
        self._next_seq = (int(segments[-1].stem[len(SEGMENT_PREFIX):]) + 1) if segments else 1
        self._bytes = sum(p.stat().st_size for p in segments)
        self._pending = 0
        for path in segments:
            for item in parse_segment(path.read_bytes(), self._acked_offset(path)):
                if not isinstance(item, Corrupt):
                    self._pending += 1
        self._failed = sum(1 for p in self._failed_dir.glob("*.json"))
        if segments:
            log.info("spool: %d messages in %d segments left by an earlier run", self._pending, len(segments))

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        async with self._io:
            self._close_active()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- state -----------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def failed(self) -> int:
        return self._failed

    def status(self) -> SpoolStatus:
        return SpoolStatus(pending=self._pending, failed=self._failed, bytes=self._bytes,
                           segments=len(self._segments()))

    @property
    def writable(self) -> bool:
        return self._lock_file is not None and not self._full and self._bytes < self._max_bytes

    # -- append ----------------------------------------------------------------------------------------
    async def append(self, messages: Sequence[OutgoingMessage]) -> None:
        """Return once every message is on disk (fsynced); SpoolFull past the size bound, nothing written."""
        if self._lock_file is None:
            raise Unavailable("the disk spool is not open")
        blob = b"".join(encode_record(m) for m in messages)
        queued = sum(len(w.blob) for w in self._queue)
        if self._bytes + queued + len(blob) > self._max_bytes:
            self._full = True
            raise SpoolFull(f"the disk spool is full ({self._bytes} of {self._max_bytes} bytes)", retry_after=30)
        waiter = _Waiter(blob, len(messages), asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())
        await asyncio.shield(waiter.done)

    async def _write_loop(self) -> None:
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            try:
                async with self._io:
                    written = await asyncio.to_thread(self._write_sync, b"".join(w.blob for w in batch))
            except OSError as exc:
                log.error("spool write failed: %s", exc)
                async with self._io:
                    self._close_active()  # a partial write stays a tail; the next append opens a new segment
                for w in batch:
                    if not w.done.done():
                        w.done.set_exception(Unavailable(f"the disk spool cannot be written: {exc.strerror}"))
                continue
            self._bytes += written
            self._pending += sum(w.count for w in batch)
            for w in batch:
                if not w.done.done():
                    w.done.set_result(None)

    def _write_sync(self, blob: bytes) -> int:
        if self._active is None or self._active.tell() >= self._segment_bytes:
            self._roll()
        assert self._active is not None
        self._active.write(blob)
        self._active.flush()
        os.fsync(self._active.fileno())
        return len(blob)

    def _roll(self) -> None:
        self._close_active()
        path = self._dir / f"{SEGMENT_PREFIX}{self._next_seq:012d}.log"
        self._next_seq += 1
        self._active = open(path, "ab")
        self._active_path = path
        _fsync_dir(self._dir)  # the new file's directory entry survives a crash too

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None
            self._active_path = None

    # -- replay ----------------------------------------------------------------------------------------
    async def drain(self, send: Send, *, batch: int = 2000) -> int:
        """Send every pending message in FIFO order; return how many were sent.

        A segment is deleted only after all its records were acknowledged; progress inside a segment is
        checkpointed after each acknowledged batch. `send` raising stops the drain with nothing lost: the
        unacknowledged batch is sent again next time (at-least-once; consumers dedup by event id).
        """
        sent = 0
        async with self._drain_lock:
            while True:
                async with self._io:
                    segments = self._segments()
                    if not segments:
                        return sent
                    if self._active_path == segments[0]:
                        self._close_active()  # sealed: new appends go to a newer segment
                path = segments[0]
                sent += await self._drain_segment(path, send, batch)
                await asyncio.to_thread(self._remove_segment, path)

    async def _drain_segment(self, path: Path, send: Send, batch: int) -> int:
        data = await asyncio.to_thread(path.read_bytes)
        offset = self._acked_offset(path)
        chunk: list[OutgoingMessage] = []
        chunk_end = offset
        sent = 0
        for item in parse_segment(data, offset):
            if isinstance(item, Corrupt):
                if chunk:  # what precedes the corrupt stretch is acknowledged before the ack moves past it
                    sent += await self._send_chunk(path, chunk, chunk_end, send)
                    chunk = []
                await asyncio.to_thread(self._park, path, data, item)
                continue
            chunk_end, message = item
            chunk.append(message)
            if len(chunk) >= batch:
                sent += await self._send_chunk(path, chunk, chunk_end, send)
                chunk = []
        if chunk:
            sent += await self._send_chunk(path, chunk, chunk_end, send)
        return sent

    async def _send_chunk(self, path: Path, chunk: list[OutgoingMessage], end: int, send: Send) -> int:
        await send(chunk)
        await asyncio.to_thread(self._write_ack, path, end)
        self._pending -= len(chunk)
        return len(chunk)

    def _park(self, path: Path, data: bytes, bad: Corrupt) -> None:
        """Move a corrupt stretch to failed/ with its reason; counted, never silently dropped."""
        name = f"{path.stem}-{bad.start:012d}"
        target = self._failed_dir / f"{name}.bin"
        if not target.exists():
            target.write_bytes(data[bad.start:bad.end])
            meta = {"segment": path.name, "start": bad.start, "end": bad.end, "reason": bad.reason}
            (self._failed_dir / f"{name}.json").write_bytes(serde.dumps(meta))
            _fsync_dir(self._failed_dir)
            self._failed += 1
            log.error("spool: %s bytes %d-%d moved to failed/: %s", path.name, bad.start, bad.end, bad.reason)
        self._write_ack(path, bad.end)

    def _remove_segment(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        path.with_suffix(".ack").unlink(missing_ok=True)
        _fsync_dir(self._dir)
        self._bytes -= size
        self._full = False

    # -- files -----------------------------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        return sorted(self._dir.glob(f"{SEGMENT_PREFIX}*.log"))

    @staticmethod
    def _acked_offset(path: Path) -> int:
        try:
            return int(path.with_suffix(".ack").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @staticmethod
    def _write_ack(path: Path, offset: int) -> None:
        ack, tmp = path.with_suffix(".ack"), path.with_suffix(".ack.tmp")
        with open(tmp, "w") as f:
            f.write(str(offset))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, ack)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
