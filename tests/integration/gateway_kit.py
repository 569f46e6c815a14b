"""Helpers for the gateway's integration tests: HTTP calls, and reading topics with a raw aiokafka consumer
(independent of the code under test) to see what really landed in Kafka."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingestflow.app import serde

from ..conftest import BASE_ENV

TOKEN = BASE_ENV["INGEST_APP_TOKEN"]


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


async def post(http: aiohttp.ClientSession, url: str, body: Any = None, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None, token: str | None = TOKEN,
               content_type: str = "application/json") -> Reply:
    h = {"content-type": content_type, **(headers or {})}
    if token is not None:
        h["x-app-token"] = token
    data = raw if raw is not None else serde.dumps(body)
    async with http.post(url, data=data, headers=h, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        text = await resp.read()
        try:
            parsed = serde.loads(text) if text else None
        except serde.DecodeError:
            parsed = text.decode(errors="replace")
        return Reply(resp.status, parsed, dict(resp.headers))


async def get(http: aiohttp.ClientSession, url: str) -> Reply:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        return Reply(resp.status, await resp.json(content_type=None), dict(resp.headers))


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    metadata = await consumer._client.fetch_all_metadata()
    parts = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]
    assert parts, f"topic {topic} does not exist"
    consumer.assign(parts)  # (aiokafka's stop() raises CancelledError on a consumer with nothing assigned)
    return parts


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        return {tp.partition: off for tp, off in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()


async def consume(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], *,
                  start: dict[int, int] | None = None, timeout: float = 60.0,
                  keep: Callable[[Any], bool] = lambda r: True) -> list[Any]:
    """Records of `topic` (from `start` offsets, else the beginning) in partition order until done(kept)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    kept: list[Any] = []
    try:
        parts = await _partitions(consumer, topic)
        for tp in parts:
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while not done(kept) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for _tp, records in batches.items():
                kept.extend(r for r in records if keep(r))
        return kept
    finally:
        await consumer.stop()


async def wait_drained(http: aiohttp.ClientSession, base: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = (await get(http, f"{base}/status/buffers")).body
            if last["pending"] == 0:
                return last  # type: ignore[no-any-return]
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.3)
    raise AssertionError(f"spool not drained within {timeout}s: {last!r}")
