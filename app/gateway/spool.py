"""The disk spool: accepted messages that Kafka could not take yet, fsynced before the gateway answers.

Layout under `FILE_BUFFER_DIR`:

- `seg-000000000001.log`, ... append-only segments, replayed oldest first. After a restart every existing
  segment is sealed and new appends open a new one, so a torn tail can only ever be at the end of a sealed
  segment. A segment name is never used twice: `SEQUENCE` holds the highest number ever given (made durable
  before the segment is created), so an `.ack` that outlived its segment can never apply to newer records.
- `seg-....ack` the byte offset up to which a segment's records are acknowledged by Kafka (written after each
  replayed batch, fsynced, renamed into place, directory fsynced), so a crash in the middle of a replay
  re-sends one batch at most, not the whole segment. A drained segment loses its `.ack` before its `.log`.
- `failed/` bytes that could not be decoded (torn tail, CRC mismatch) with a `.json` file giving the reason,
  both fsynced. They are counted and kept for an operator; the records around them still replay.
- `LOCK` an flock held by the one process that owns the directory.

Records are framed as `spool_format.py` describes (length, CRC32, payload).

Appends from concurrent requests are grouped: one writer writes every waiting batch and fsyncs once, then
answers them all (group commit), so many small requests cost one fsync rather than one each. A write that
fails (a full disk) is cut back off the segment (truncated, fsynced) before its requests are refused, so the
disk only ever holds acknowledged records; the writer goes on, appends are refused with `SpoolFull` while the
disk has no room and are tried again by themselves once it has.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ingestflow.app.clients.kafka import OutgoingMessage
from ingestflow.app.core import serde
from ingestflow.app.core.errors import ConfigError, SpoolFull, Unavailable

from .spool_format import Corrupt, encode_record, parse_segment

__all__ = ["Spool", "SpoolStatus"]

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "seg-"
SEQUENCE = "SEQUENCE"
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
RESUME_FREE_BYTES = 64 * 1024  # free space a full disk must regain before appends are tried again
FULL_RETRY_AFTER_S = 30.0
Send = Callable[[Sequence[OutgoingMessage]], Awaitable[object]]


@dataclass
class SpoolStatus:
    pending: int
    failed: int
    bytes: int
    segments: int
    problem: str | None  # why appends are refused now; None while the spool takes them


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
        self._active: int | None = None  # file descriptor (O_APPEND) of the segment appends go to
        self._active_path: Path | None = None
        self._active_size = 0
        self._limits: dict[Path, int] = {}  # sealed segments whose bytes past this length are no records
        self._acked: dict[Path, int] = {}  # how far Kafka acknowledged a segment, even where no checkpoint says so
        self._next_seq = 1
        self._bytes = 0
        self._pending = 0
        self._failed = 0
        self._full = False  # the last append was refused for room, and nothing was freed since
        self._write_error: OSError | None = None  # why the last write failed, until one succeeds
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
        self._next_seq = self._highest_seq() + 1
        self._drop_leftovers()
        _fsync_dir(self._dir)  # failed/ and the removals above are durable
        segments = self._segments()
        self._bytes = sum(p.stat().st_size for p in segments)
        self._pending = 0
        for path in segments:
            data = path.read_bytes()
            for item in parse_segment(data, self._acked_offset(path, len(data))):
                if not isinstance(item, Corrupt):
                    self._pending += 1
        self._failed = sum(1 for p in self._failed_dir.glob("*.json"))
        if segments:
            log.info("spool: %d messages in %d segments left by an earlier run", self._pending, len(segments))

    def _highest_seq(self) -> int:
        """The highest segment number ever given here: `SEQUENCE`, or any file still named after one."""
        numbers = [_seq_of(p.name) for p in self._dir.glob(f"{SEGMENT_PREFIX}*")]
        try:
            numbers.append(int((self._dir / SEQUENCE).read_text()))
        except (FileNotFoundError, ValueError):
            pass
        return max((n for n in numbers if n is not None), default=0)

    def _drop_leftovers(self) -> None:
        """Remove what a crash can leave beside the records: half-written temporary files, and an `.ack`
        whose segment was already deleted (its number is never given again, so it could only mislead)."""
        for ack in self._dir.glob(f"{SEGMENT_PREFIX}*.ack"):
            if not ack.with_suffix(".log").exists():
                log.warning("spool: removing %s, left without its segment by an earlier run", ack.name)
                ack.unlink()
        for tmp in (*self._dir.glob("*.tmp"), *self._failed_dir.glob("*.tmp")):
            tmp.unlink()

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
                           segments=len(self._segments()), problem=self.problem)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def writable(self) -> bool:
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why an append would be refused now, or None. After a failed write the spool counts as writable
        again once the disk has room (or the next write succeeds), without anyone restarting it."""
        if self._lock_file is None:
            return "the disk spool is not open"
        if self._full or self._bytes >= self._max_bytes:
            return f"the disk spool is full ({self._bytes} of {self._max_bytes} bytes)"
        error = self._write_error
        if error is None or (error.errno in NO_SPACE and self._free_bytes() >= RESUME_FREE_BYTES):
            return None
        return _refusal(error).message

    def _free_bytes(self) -> int:
        try:
            st = os.statvfs(self._dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    # -- append ----------------------------------------------------------------------------------------
    async def append(self, messages: Sequence[OutgoingMessage]) -> None:
        """Return once every message is on disk (fsynced). SpoolFull past the size bound or while the disk
        is full, Unavailable when the disk fails otherwise; a refused append leaves nothing on disk."""
        if self._lock_file is None:
            raise Unavailable("the disk spool is not open")
        blob = b"".join(encode_record(m) for m in messages)
        queued = sum(len(w.blob) for w in self._queue)
        if self._bytes + queued + len(blob) > self._max_bytes:
            self._full = True
            raise SpoolFull(f"the disk spool is full ({self._bytes} of {self._max_bytes} bytes)",
                            retry_after=FULL_RETRY_AFTER_S)
        error = self._write_error
        if error is not None and error.errno in NO_SPACE and self._free_bytes() < RESUME_FREE_BYTES:
            raise _refusal(error)
        waiter = _Waiter(blob, len(messages), asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())
        await asyncio.shield(waiter.done)

    async def _write_loop(self) -> None:
        """Write every waiting batch with one fsync. A failure refuses that group alone: the writer goes on
        with the next one, and nothing of the refused requests stays on disk."""
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            try:
                async with self._io:
                    await asyncio.to_thread(self._write_sync, b"".join(w.blob for w in batch))
            except Exception as exc:
                if isinstance(exc, OSError):
                    log.error("spool write failed, %d requests refused: %s", len(batch), exc.strerror)
                    self._write_error = exc
                else:
                    log.exception("spool write failed, %d requests refused", len(batch))
                    self._write_error = OSError(errno.EIO, f"unexpected {type(exc).__name__}")
                for w in batch:
                    if not w.done.done():
                        w.done.set_exception(_refusal(self._write_error))
                continue
            self._write_error = None
            self._bytes += sum(len(w.blob) for w in batch)
            self._pending += sum(w.count for w in batch)
            for w in batch:
                if not w.done.done():
                    w.done.set_result(None)

    def _write_sync(self, blob: bytes) -> None:
        if self._active is None or self._active_size >= self._segment_bytes or self._active_deleted():
            self._roll()
        assert self._active is not None
        start = self._active_size
        try:
            _write_all(self._active, blob)
            os.fsync(self._active)
        except OSError as exc:
            self._cut_back(start, seal=exc.errno == errno.EFBIG)  # a file too big: the next one starts anew
            raise
        self._active_size = start + len(blob)

    def _active_deleted(self) -> bool:
        """The active segment was deleted by hand: records written to it now would be on no disk."""
        assert self._active is not None
        return os.fstat(self._active).st_nlink == 0

    def _cut_back(self, size: int, *, seal: bool) -> None:
        """Take a failed write off the active segment (truncate to its size before, fsync), so no record of
        a refused request is ever replayed. Should that fail too, the segment is sealed and replayed only up
        to `size`."""
        assert self._active is not None and self._active_path is not None
        try:
            os.ftruncate(self._active, size)
            os.fsync(self._active)
        except OSError as exc:
            log.error("spool: %s cannot be cut back after a failed write (%s); sealed, replayed up to byte %d",
                      self._active_path.name, exc.strerror, size)
            self._limits[self._active_path] = size
            seal = True
        if seal:
            self._close_active()

    def _roll(self) -> None:
        """Open a segment under a number never given before, made durable first (see `SEQUENCE`)."""
        self._close_active()
        seq = self._next_seq
        self._next_seq += 1  # a failed roll burns the number: names only grow
        _replace_durably(self._dir / SEQUENCE, str(seq).encode())
        path = self._dir / f"{SEGMENT_PREFIX}{seq:012d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            _fsync_dir(self._dir)  # the new file's directory entry survives a crash too
        except OSError:
            os.close(fd)
            raise
        self._active, self._active_path, self._active_size = fd, path, 0

    def _close_active(self) -> None:
        if self._active is not None:
            fd, self._active, self._active_path = self._active, None, None
            try:
                os.close(fd)
            except OSError as exc:  # every write was fsynced already: nothing is lost with it
                log.warning("spool: closing a segment: %s", exc.strerror)

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
                        self._recount_empty()
                        return sent
                    if self._active_path == segments[0]:
                        self._close_active()  # sealed: new appends go to a newer segment
                path = segments[0]
                sent += await self._drain_segment(path, send, batch)
                await asyncio.to_thread(self._remove_segment, path)

    def _recount_empty(self) -> None:
        """No segment is left (checked under the I/O lock, so no write is half counted): nothing is pending
        and no byte is held. Only segments deleted by hand make the counts differ; they then follow the disk."""
        if self._pending:
            log.warning("spool: %d messages were counted but their segments are gone (deleted by hand?)",
                        self._pending)
        self._pending = self._bytes = 0
        self._full = False
        self._limits.clear()
        self._acked.clear()

    async def _drain_segment(self, path: Path, send: Send, batch: int) -> int:
        """Send a segment's records from its checkpoint on, `batch` at a time. A corrupt stretch is parked
        before the records ahead of it are acknowledged, and a full chunk is sent only once the next record
        was read: when the last record is acknowledged (nothing pending) every stretch is counted as failed."""
        data = await asyncio.to_thread(path.read_bytes)
        data = data[:self._limits.get(path, len(data))]
        offset = self._acked.get(path) or self._acked_offset(path, len(data))
        chunk: list[OutgoingMessage] = []
        sent = 0
        for item in parse_segment(data, offset):
            if isinstance(item, Corrupt):
                await asyncio.to_thread(self._park, path, data, item)
                offset = item.end
                sent += await self._send_chunk(path, chunk, offset, send)  # the checkpoint passes the stretch
                chunk = []
                continue
            if len(chunk) >= batch:
                sent += await self._send_chunk(path, chunk, offset, send)
                chunk = []
            offset, message = item
            chunk.append(message)
        if chunk:
            sent += await self._send_chunk(path, chunk, offset, send)
        return sent

    async def _send_chunk(self, path: Path, chunk: list[OutgoingMessage], end: int, send: Send) -> int:
        """Send `chunk` (when there is one) and checkpoint the segment at `end`."""
        if chunk:
            await send(chunk)
            self._pending -= len(chunk)
        await asyncio.to_thread(self._checkpoint, path, end)
        return len(chunk)

    def _checkpoint(self, path: Path, offset: int) -> None:
        """Record how far Kafka acknowledged the segment: in memory always (this process never sends those
        records again), on disk when it can. On a full disk the file is skipped and the replay goes on (it is
        what frees the space); a crash before the segment is removed then re-sends from the last checkpoint
        on disk: duplicates, never a loss."""
        self._acked[path] = offset
        try:
            _replace_durably(path.with_suffix(".ack"), str(offset).encode())
        except OSError as exc:
            log.warning("spool: checkpoint of %s skipped: %s", path.name, exc.strerror)

    def _park(self, path: Path, data: bytes, bad: Corrupt) -> None:
        """Move a corrupt stretch to failed/ with its reason; counted, never silently dropped."""
        name = f"{path.stem}-{bad.start:012d}"
        if not (self._failed_dir / f"{name}.json").exists():
            _replace_durably(self._failed_dir / f"{name}.bin", data[bad.start:bad.end])
            meta = {"segment": path.name, "start": bad.start, "end": bad.end, "reason": bad.reason}
            _replace_durably(self._failed_dir / f"{name}.json", serde.dumps(meta))
            self._failed += 1
            log.error("spool: %s bytes %d-%d moved to failed/: %s", path.name, bad.start, bad.end, bad.reason)

    def _remove_segment(self, path: Path) -> None:
        """The `.ack` goes first (durably), the `.log` after it: a crash in between leaves a segment that is
        replayed again from its start (duplicates, which consumers drop), never an `.ack` without records."""
        size = self._limits.get(path, path.stat().st_size)
        path.with_suffix(".ack").unlink(missing_ok=True)
        _fsync_dir(self._dir)
        path.unlink()
        _fsync_dir(self._dir)
        self._limits.pop(path, None)
        self._acked.pop(path, None)
        self._bytes -= size
        self._full = False

    # -- files -----------------------------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        return sorted(self._dir.glob(f"{SEGMENT_PREFIX}*.log"))

    @staticmethod
    def _acked_offset(path: Path, size: int) -> int:
        """Where the replay of a segment of `size` bytes resumes. An offset past the end cannot belong to
        this segment (a directory an older version left, which reused names): replay all of it instead."""
        try:
            offset = int(path.with_suffix(".ack").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        if offset > size:
            log.warning("spool: %s.ack points past the end of its segment; replaying all of it", path.stem)
            return 0
        return offset


def _refusal(error: OSError) -> Unavailable:
    """What a request hears when its records could not be written: 503 with Retry-After either way."""
    if error.errno in NO_SPACE or error.errno == errno.EFBIG:
        return SpoolFull(f"the disk under the spool is full: {error.strerror}", retry_after=FULL_RETRY_AFTER_S)
    return Unavailable(f"the disk spool cannot be written: {error.strerror}")


def _seq_of(name: str) -> int | None:
    """The segment number in `seg-000000000042.log`, `.ack` or `.ack.tmp`."""
    try:
        return int(name[len(SEGMENT_PREFIX):].split(".", 1)[0])
    except ValueError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace_durably(path: Path, data: bytes) -> None:
    """Write a small file whole or not at all: a temporary file, fsynced, renamed over `path`, the directory
    fsynced. A failure leaves `path` as it was and no temporary file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
