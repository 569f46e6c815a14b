"""The disk spool on a real filesystem: FIFO replay, resume after a crash, torn and corrupt records, bound,
a disk that runs full (a small tmpfs), and the files a crash leaves in the middle of removing a segment."""
from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ingestflow.app.clients.kafka import OutgoingMessage
from ingestflow.app.core import serde
from ingestflow.app.core.errors import SpoolFull, Unavailable
from ingestflow.app.gateway.spool import Spool, SpoolStatus
from ingestflow.app.gateway.spool_format import Corrupt, encode_record, parse_segment

from ...small_fs import fill_up, small_tmpfs


def msg(i: int, key: str = "k") -> OutgoingMessage:
    return OutgoingMessage("events", key.encode(), serde.dumps({"id": f"e{i}"}), 1_700_000_000_000 + i)


class Sink:
    """Collects what the spool sends; can be told to fail after n batches, as a broker going away would."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.got: list[OutgoingMessage] = []
        self.calls = 0
        self.fail_after = fail_after

    async def __call__(self, batch: Sequence[OutgoingMessage]) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Unavailable("broker gone")
        self.calls += 1
        self.got.extend(batch)


async def opened(path: Path, **kw: int) -> Spool:
    spool = Spool(path, max_bytes=kw.get("max_bytes", 10_000_000), segment_bytes=kw.get("segment_bytes", 4096))
    await spool.open()
    return spool


async def one_closed_segment(path: Path, messages: list[OutgoingMessage]) -> Path:
    """A spool directory holding `messages` in one segment, as a process that ended left it."""
    spool = await opened(path)
    await spool.append(messages)
    await spool.close()
    [segment] = path.glob("seg-*.log")
    return segment


def test_record_round_trips_with_and_without_timestamp() -> None:
    for m in (msg(1), OutgoingMessage("crawl-items", b"s:1", b"{}", None)):
        [(end, back)] = list(parse_segment(encode_record(m)))
        assert back == m and end == len(encode_record(m))


def traced(i: int) -> OutgoingMessage:
    return OutgoingMessage("crawl-items", f"s:{i}".encode(), b"{}", None,
                           (("trace-id", f"trace-{i}".encode()), ("x", b"\x00\xff")))


def v1_record(m: OutgoingMessage) -> bytes:
    """A record as spools wrote it before headers were kept (MAGIC a7 5e, no partition, no headers)."""
    topic, key, value = m.topic.encode(), m.key or b"", m.value or b""
    payload = struct.pack(">HIIq", len(topic), len(key), len(value),
                          -1 if m.timestamp_ms is None else m.timestamp_ms) + topic + key + value
    return struct.pack(">2sII", b"\xa7\x5e", len(payload), zlib.crc32(struct.pack(">I", len(payload)) + payload)) \
        + payload


def test_headers_partition_and_null_key_or_value_round_trip() -> None:
    for m in (traced(1), OutgoingMessage("rules", None, None, 5, (("trace-id", b""),), 3),
              OutgoingMessage("rules", b"", b"", None)):
        [(_, back)] = list(parse_segment(encode_record(m)))
        assert back == m


async def test_a_spooled_records_headers_reach_kafka_with_it(tmp_path: Path) -> None:
    spool = await opened(tmp_path, segment_bytes=256)
    await spool.append([traced(i) for i in range(10)])
    sink = Sink()
    await spool.drain(sink, batch=3)
    assert sink.got == [traced(i) for i in range(10)]
    await spool.close()


async def test_segments_written_before_headers_were_kept_are_still_replayed(tmp_path: Path) -> None:
    """A gateway upgraded with records in its spool: old records replay (without headers), new ones after."""
    segment = await one_closed_segment(tmp_path, [traced(0)])
    segment.write_bytes(b"".join(v1_record(msg(i)) for i in range(3)) + b"\xa7\x5e torn")
    spool = await opened(tmp_path)
    assert spool.pending == 3
    await spool.append([traced(9)])
    sink = Sink()
    await spool.drain(sink)
    assert sink.got == [msg(0), msg(1), msg(2), traced(9)]
    assert spool.status().failed == 1
    await spool.close()


async def test_drain_sends_everything_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = await opened(tmp_path, segment_bytes=512)
    for i in range(0, 100, 10):
        await spool.append([msg(j) for j in range(i, i + 10)])
    assert spool.pending == 100 and spool.status().segments > 1
    sink = Sink()
    assert await spool.drain(sink, batch=7) == 100
    assert sink.got == [msg(i) for i in range(100)]
    assert spool.pending == 0 and spool.status().segments == 0 and spool.status().bytes == 0
    await spool.close()


async def test_failed_send_keeps_the_rest_and_resends_only_the_unacked_batch(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append([msg(i) for i in range(30)])
    with pytest.raises(Unavailable):
        await spool.drain(Sink(fail_after=2), batch=10)
    assert spool.pending == 10
    sink = Sink()
    await spool.drain(sink, batch=10)
    assert sink.got == [msg(i) for i in range(20, 30)]
    await spool.close()


async def test_restart_replays_what_an_earlier_process_left_before_anything_new(tmp_path: Path) -> None:
    first = await opened(tmp_path)
    await first.append([msg(i) for i in range(5)])
    with pytest.raises(Unavailable):
        await first.drain(Sink(fail_after=1), batch=2)  # 2 acked, then the "broker" is gone
    await first.close()  # the process ends; its files stay
    second = await opened(tmp_path)
    assert second.pending == 3
    await second.append([msg(99)])
    sink = Sink()
    await second.drain(sink)
    assert sink.got == [msg(2), msg(3), msg(4), msg(99)]
    await second.close()


async def test_torn_tail_goes_to_failed_with_its_reason_and_the_rest_replays(tmp_path: Path) -> None:
    segment = await one_closed_segment(tmp_path, [msg(i) for i in range(4)])
    segment.write_bytes(segment.read_bytes()[:-5])  # the process died in the middle of a write
    spool = await opened(tmp_path)
    assert spool.pending == 3
    sink = Sink()
    await spool.drain(sink)
    assert sink.got == [msg(0), msg(1), msg(2)]
    assert spool.status().failed == 1
    [reason] = [serde.loads(p.read_bytes()) for p in (tmp_path / "failed").glob("*.json")]
    assert reason["reason"].startswith("torn tail") and reason["segment"] == segment.name
    await spool.close()


async def test_corrupt_record_in_the_middle_is_parked_and_later_records_still_replay(tmp_path: Path) -> None:
    segment = await one_closed_segment(tmp_path, [msg(i) for i in range(5)])
    data = bytearray(segment.read_bytes())
    size = len(encode_record(msg(0)))
    data[2 * size + size // 2] ^= 0xFF  # flip a byte inside the third record
    segment.write_bytes(bytes(data))
    spool = await opened(tmp_path)
    sink = Sink()
    await spool.drain(sink)
    assert sink.got == [msg(0), msg(1), msg(3), msg(4)]
    assert spool.status().failed == 1
    [reason] = [serde.loads(p.read_bytes()) for p in (tmp_path / "failed").glob("*.json")]
    assert reason["reason"] == "CRC32 mismatch" and reason["start"] == 2 * size
    await spool.close()


async def test_a_torn_tail_is_counted_as_failed_before_the_last_record_is_acknowledged(tmp_path: Path) -> None:
    segment = await one_closed_segment(tmp_path, [msg(i) for i in range(4)])
    segment.write_bytes(segment.read_bytes()[:-5])
    spool = await opened(tmp_path)
    failed_at_each_send: list[tuple[int, int]] = []

    async def send(batch: Sequence[OutgoingMessage]) -> None:
        failed_at_each_send.append((len(batch), spool.failed))
    assert await spool.drain(send, batch=2) == 3
    # Whoever sees nothing pending any more (the last send done) sees the torn tail counted too.
    assert failed_at_each_send == [(2, 0), (1, 1)] and spool.pending == 0
    await spool.close()


def test_parser_resyncs_after_garbage_and_reports_it() -> None:
    good = [encode_record(msg(i)) for i in range(3)]
    data = good[0] + b"garbage\xa7\x5e-more" + good[1] + good[2]
    items = list(parse_segment(data))
    assert [i[1] for i in items if not isinstance(i, Corrupt)] == [msg(0), msg(1), msg(2)]
    [bad] = [i for i in items if isinstance(i, Corrupt)]
    assert (bad.start, bad.end) == (len(good[0]), len(good[0]) + len(b"garbage\xa7\x5e-more"))


async def test_past_the_size_bound_append_refuses_and_writes_nothing(tmp_path: Path) -> None:
    one = len(encode_record(msg(0)))
    spool = await opened(tmp_path, max_bytes=one * 3)
    await spool.append([msg(0), msg(1)])
    with pytest.raises(SpoolFull) as info:
        await spool.append([msg(2), msg(3)])
    assert info.value.status == 503 and info.value.retry_after > 0
    assert spool.pending == 2 and not spool.writable
    await spool.drain(Sink())
    assert spool.writable
    await spool.append([msg(2), msg(3)])  # room again once replayed
    assert spool.pending == 2
    await spool.close()


async def test_concurrent_appends_are_all_durable_and_counted(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await asyncio.gather(*(spool.append([msg(i)]) for i in range(50)))
    await spool.close()
    reopened = await opened(tmp_path)
    assert reopened.pending == 50
    sink = Sink()
    await reopened.drain(sink)
    assert sorted(m.value for m in sink.got) == sorted(msg(i).value for i in range(50))
    await reopened.close()


async def test_a_second_process_cannot_take_the_same_directory(tmp_path: Path) -> None:
    import subprocess
    import sys
    first = await opened(tmp_path)
    code = ("import asyncio,sys; from pathlib import Path; from ingestflow.app.gateway.spool import Spool\n"
            "from ingestflow.app.core.errors import ConfigError\n"
            "try:\n asyncio.run(Spool(Path(sys.argv[1]), max_bytes=10**6).open())\n"
            "except ConfigError as e:\n print(e); sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 3 and "in use by another gateway process" in out.stdout
    await first.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs) that a test can fill."""
    with small_tmpfs(tmp_path / "disk", 256 * 1024) as disk:
        yield disk


async def test_full_disk_refuses_keeps_no_refused_record_and_recovers_when_space_returns(tiny_disk: Path) -> None:
    spool = await opened(tiny_disk, segment_bytes=1 << 20)
    accepted = [msg(i) for i in range(50)]
    await spool.append(accepted)
    filler = fill_up(tiny_disk)
    refused: SpoolFull | None = None
    for n in range(1, 100):
        batch = [msg(n * 100 + i) for i in range(50)]  # a few KiB: crosses a page, so a refused write is partial
        try:
            await asyncio.wait_for(spool.append(batch), 60)
        except SpoolFull as exc:
            refused = exc
            break
        accepted += batch
    assert refused is not None and refused.status == 503 and refused.retry_after > 0
    assert not spool.writable and spool.pending == len(accepted)
    with pytest.raises(SpoolFull):  # and so is the next request, promptly: the writer is still there
        await asyncio.wait_for(spool.append([msg(1)]), 60)

    filler.unlink()
    assert spool.writable  # space is back: nothing needs restarting
    late = [msg(100_000 + i) for i in range(10)]
    await asyncio.wait_for(spool.append(late), 60)
    accepted += late
    assert spool.pending == len(accepted)
    await spool.close()

    reopened = await opened(tiny_disk)  # what is on disk is exactly what was acknowledged
    assert reopened.pending == len(accepted) and reopened.status().failed == 0
    sink = Sink()
    assert await reopened.drain(sink) == len(accepted)
    assert sink.got == accepted and reopened.pending == 0
    await reopened.close()


async def test_full_disk_while_replaying_still_drains_sends_nothing_twice_and_frees_the_space(
        tiny_disk: Path) -> None:
    spool = await opened(tiny_disk, segment_bytes=1 << 20)
    accepted = [msg(i) for i in range(300)]
    await spool.append(accepted)
    filler = fill_up(tiny_disk)  # no room left for the checkpoint files a replay writes
    with pytest.raises(Unavailable):
        await spool.drain(Sink(fail_after=2), batch=50)  # Kafka goes away after two batches
    assert spool.pending == 200
    sink = Sink()
    assert await spool.drain(sink, batch=50) == 200
    assert sink.got == accepted[100:] and spool.pending == 0 and spool.status().segments == 0
    filler.unlink()
    await spool.close()


async def test_a_stale_ack_left_by_a_crash_between_the_deletions_never_hides_new_records(tmp_path: Path) -> None:
    segment = await one_closed_segment(tmp_path, [msg(i) for i in range(30)])
    # The files a crash leaves after the segment was replayed and its .log deleted, but not yet its .ack.
    segment.with_suffix(".ack").write_text(str(segment.stat().st_size))
    segment.unlink()

    second = await opened(tmp_path)
    later = [msg(100 + i) for i in range(30)]
    await second.append(later)
    assert second.pending == 30
    sink = Sink()
    assert await second.drain(sink) == 30
    assert sink.got == later and second.pending == 0
    await second.close()


async def test_an_ack_beyond_the_end_of_its_segment_is_ignored_and_the_segment_replays(tmp_path: Path) -> None:
    segment = await one_closed_segment(tmp_path, [msg(i) for i in range(3)])
    # A directory an older gateway left: a new segment under a reused name, beside its predecessor's .ack.
    segment.with_suffix(".ack").write_text(str(segment.stat().st_size * 10))
    spool = await opened(tmp_path)
    assert spool.pending == 3
    sink = Sink()
    await spool.drain(sink)
    assert sink.got == [msg(0), msg(1), msg(2)]
    await spool.close()


async def test_segment_names_only_grow_even_after_the_spool_emptied_and_restarted(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append([msg(0)])
    [first] = tmp_path.glob("seg-*.log")
    await spool.drain(Sink())
    await spool.close()
    spool = await opened(tmp_path)
    await spool.append([msg(1)])
    [second] = tmp_path.glob("seg-*.log")
    assert second.name > first.name
    await spool.close()


async def test_segments_deleted_by_hand_stop_being_counted_once_the_replay_finds_them_gone(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append([msg(0), msg(1)])
    for path in tmp_path.glob("seg-*"):
        path.unlink()  # an operator freeing space by hand
    assert await spool.drain(Sink()) == 0
    assert spool.status() == SpoolStatus(pending=0, failed=0, bytes=0, segments=0, problem=None)
    await spool.append([msg(2)])
    sink = Sink()
    assert await spool.drain(sink) == 1 and sink.got == [msg(2)] and spool.pending == 0
    await spool.close()
