"""Replay re-produces exactly a time range, with keys and timestamps, and resumes after an interruption."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.ops.progress import Checkpoint
from ingestflow.app.ops.replay import replay
from ingestflow.schemas.topics import TopicSpec

from ..conftest import BASE_ENV, plaintext_kafka
from .analytics_data import recent_day
from .conftest import delete_topics, interrupted_after_first_step

BOOTSTRAP = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
KAFKA = plaintext_kafka(BOOTSTRAP)
T0 = recent_day(3)  # the topics keep the broker's retention (7 days)


@pytest.fixture
async def replay_topics(services: None, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A source and a destination topic of this test's own, deleted afterwards."""
    src, dst = f"replay-src-{unique}", f"replay-dst-{unique}"
    yield src, dst
    await delete_topics({src, dst})


async def _seed(topic: str, n: int) -> None:
    await ensure_topics(KAFKA, [TopicSpec(topic, key="k", partitions=2)])
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    for i in range(n):
        ts = int((T0 + timedelta(minutes=i)).timestamp() * 1000)
        await producer.send(topic, f"v{i}".encode(), key=f"k{i % 5}".encode(), timestamp_ms=ts)
    await producer.flush()
    await producer.stop()


async def _read_all(topic: str, expected: int) -> list[tuple[bytes, bytes, int]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list[tuple[bytes, bytes, int]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((m.key, m.value, m.timestamp) for m in msgs)
        await asyncio.sleep(1)  # anything beyond `expected` would show up now
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            got.extend((m.key, m.value, m.timestamp) for m in msgs)
    finally:
        await consumer.stop()
    return got


async def test_replay_reproduces_exactly_the_time_range(replay_topics: tuple[str, str], tmp_path: Path) -> None:
    src, dst = replay_topics
    await _seed(src, 30)
    await ensure_topics(KAFKA, [TopicSpec(dst, key="k", partitions=2)])
    report = await replay(KAFKA, src, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), into=dst,
                          checkpoint=Checkpoint(tmp_path / "cp.json"), stop=asyncio.Event())
    assert report.complete and report.produced == 10 == report.total
    got = await _read_all(dst, 10)
    expected = {(f"k{i % 5}".encode(), f"v{i}".encode(), int((T0 + timedelta(minutes=i)).timestamp() * 1000))
                for i in range(10, 20)}
    assert sorted(got) == sorted(expected)
    assert not (tmp_path / "cp.json").exists()


async def test_interrupted_replay_resumes_without_repeating(replay_topics: tuple[str, str], tmp_path: Path) -> None:
    src, dst = replay_topics
    await _seed(src, 40)
    await ensure_topics(KAFKA, [TopicSpec(dst, key="k", partitions=2)])
    checkpoint = Checkpoint(tmp_path / "cp.json")
    stop = asyncio.Event()

    first = await replay(KAFKA, src, T0, None, into=dst, checkpoint=checkpoint, stop=stop,
                         progress=interrupted_after_first_step("replay", stop), batch_size=7)
    assert not first.complete and 0 < first.produced < 40
    assert checkpoint.load()["next"], "the interrupted run left a resume point"
    second = await replay(KAFKA, src, T0, None, into=dst, checkpoint=checkpoint, stop=asyncio.Event(),
                          batch_size=7)
    assert second.complete
    assert first.produced + second.produced == 40
    got = await _read_all(dst, 40)
    assert sorted(v for _, v, _ in got) == sorted(f"v{i}".encode() for i in range(40))
