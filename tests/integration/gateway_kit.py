"""Helpers for the gateway's integration tests: HTTP calls, and reading topics with a raw aiokafka consumer
(independent of the code under test) to see what really landed in Kafka."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingestflow.app.core import serde

from ..conftest import BASE_ENV
from .analytics_data import recent_day
from .conftest import Process, wait_http

TOKEN = BASE_ENV["INGEST_APP_TOKEN"]


@asynccontextmanager
async def gateway_process(tmp: Path, port: int, **env: str) -> AsyncIterator[Process]:
    """An `ingestflow gateway` on the shared services at `port` (with these extra variables), answering; its
    log's tail is printed when it stops."""
    proc = Process(["gateway"], dict(BASE_ENV, PORT=str(port), FILE_BUFFER_DIR=str(tmp / "spool"), **env),
                   tmp / "gateway.log").start()
    try:
        await wait_http(f"http://127.0.0.1:{port}/health")
        yield proc
    finally:
        proc.stop()
        print(proc.tail())


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


def events_body(rule: str, keys: list[str]) -> dict[str, Any]:
    """A batch of VIEW events of one rule (so of one partition, in order), about 150 bytes each, their ids the
    given idempotency keys: what a client sends, and sends again with the same keys when it got no answer."""
    return {"events": [{"type": "VIEW", "ruleId": rule, "idempotencyKey": key, "userId": f"user-{key}",
                        "ts": recent_day(2).strftime("%Y-%m-%dT10:00:00Z")} for key in keys]}


async def event_ids(bootstrap: str, rule: str, start: dict[int, int], until: set[str],
                    timeout: float = 60.0) -> list[str]:
    """The ids of `rule`'s events on the `events` topic after `start`, in topic order, read until every id of
    `until` has arrived (or the timeout; the caller compares)."""
    ids: list[str] = []

    def arrived(records: list[Any]) -> bool:
        ids.extend(serde.loads(r.value)["id"] for r in records[len(ids):])
        return until <= set(ids)
    await consume(bootstrap, "events", arrived, start=start, timeout=timeout, keep=lambda r: r.key == rule.encode())
    return ids


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


async def post_in_pieces(port: int, path: str, body: bytes, *, cut: int, pause: float,
                         headers: dict[str, str] | None = None, length: int | None = None,
                         timeout: float = 60.0) -> Reply:
    """POST over a raw socket: the head and the first `cut` bytes of the body in one TCP segment, the rest
    after `pause` seconds (a body split by the network, as over any real link). `length` overrides the
    Content-Length sent. The answer is read to the connection's close."""
    h = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", "x-app-token": TOKEN,
         "Content-Length": str(len(body) if length is None else length), "Connection": "close", **(headers or {})}
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body[:cut])
        await writer.drain()
        await asyncio.sleep(pause)
        if body[cut:]:
            writer.write(body[cut:])
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    head_lines, _, payload = rest.partition(b"\r\n\r\n")
    reply_headers = dict(line.decode().split(": ", 1) for line in head_lines.split(b"\r\n") if b": " in line)
    return Reply(int(status_line.split()[1]), serde.loads(payload) if payload else None, reply_headers)
