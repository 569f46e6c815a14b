"""The disk spool on a real filesystem: FIFO replay, resume after a crash, torn and corrupt records, bound."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ingestflow.app import serde
from ingestflow.app.errors import SpoolFull, Unavailable
from ingestflow.app.kafka import OutgoingMessage
from ingestflow.app.spool import Corrupt, Spool, encode_record, parse_segment


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


def test_record_round_trips_with_and_without_timestamp() -> None:
    for m in (msg(1), OutgoingMessage("crawl-items", b"s:1", b"{}", None)):
        [(end, back)] = list(parse_segment(encode_record(m)))
        assert back == m and end == len(encode_record(m))


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
    spool = await opened(tmp_path)
    await spool.append([msg(i) for i in range(4)])
    await spool.close()
    [segment] = sorted(tmp_path.glob("seg-*.log"))
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
    spool = await opened(tmp_path)
    await spool.append([msg(i) for i in range(5)])
    await spool.close()
    [segment] = sorted(tmp_path.glob("seg-*.log"))
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
    import asyncio
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
    code = ("import asyncio,sys; from pathlib import Path; from ingestflow.app.spool import Spool\n"
            "from ingestflow.app.errors import ConfigError\n"
            "try:\n asyncio.run(Spool(Path(sys.argv[1]), max_bytes=10**6).open())\n"
            "except ConfigError as e:\n print(e); sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 3 and "in use by another gateway process" in out.stdout
    await first.close()
