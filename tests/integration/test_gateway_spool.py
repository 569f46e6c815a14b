"""Nothing acknowledged is lost: a private Kafka stopped in the middle of a load, a gateway killed with -9
while events wait in its spool, a spool at its size bound. What landed is read back with a raw consumer.

What is asserted is what the gateway guarantees: every acknowledged event is on the topic, and taking each
event id's first occurrence, the events of a key are in the order they were acknowledged. A send that timed
out can still land before the replay re-sends it, so a duplicate (same id) is possible and is reported, not
forbidden; consumers dedup by event id (agents/dedup.py).
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingestflow.app import serde
from ingestflow.app.kafka import ensure_topics
from ingestflow.schemas import topics

from .conftest import wait_http
from .gateway_kit import consume, get, post, wait_drained


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def gateway_env(env_factory: Callable[..., dict[str, str]], kafka: str, port: int, **extra: str) -> dict[str, str]:
    return env_factory(PORT=str(port), KAFKA_BOOTSTRAP_SERVERS=kafka, KAFKA_SEND_TIMEOUT_S="2",
                       RATE_LIMIT_EVENTS_PER_MIN="1000000", **extra)


def first_occurrences(records: list[Any]) -> dict[bytes, list[str]]:
    """Per key, event ids in topic order, each id at its first occurrence."""
    seen: set[str] = set()
    order: dict[bytes, list[str]] = defaultdict(list)
    for r in records:
        event_id = serde.loads(r.value)["id"]
        if event_id not in seen:
            seen.add(event_id)
            order[r.key].append(event_id)
    return order


async def load(http: aiohttp.ClientSession, base: str, key: str, stop: asyncio.Event,
               acked: list[str], stored: list[str]) -> None:
    """One producer per key: sends the next batch only after the previous one was acknowledged."""
    n = 0
    while not stop.is_set():
        batch = [{"type": "VIEW", "ruleId": key, "idempotencyKey": f"{key}-{n + i}"} for i in range(5)]
        reply = await post(http, f"{base}/ingest/events", {"events": batch})
        if reply.status == 202:
            acked.extend(reply.body["ids"])
            stored.append(reply.body["stored"])
            n += 5
        else:
            assert reply.status in (429, 503), reply.body  # refused, so not acknowledged: never a 5xx crash
            await asyncio.sleep(0.1)


async def test_kafka_stopped_mid_load_every_acknowledged_event_arrives_once_in_order_per_key(
        private_service: Callable[..., Any], spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession, unique: str) -> None:
    kafka = private_service("kafka", 19101)
    await ensure_topics(kafka.address, topics.ALL)
    gateway = spawn(["gateway"], gateway_env(env_factory, kafka.address, 18110))
    base = "http://127.0.0.1:18110"
    await wait_http(f"{base}/health")
    keys = [f"load-{unique}-{k}" for k in range(4)]
    acked: dict[str, list[str]] = {k: [] for k in keys}
    stored: list[str] = []
    stop = asyncio.Event()
    producers = [asyncio.create_task(load(http, base, k, stop, acked[k], stored)) for k in keys]
    try:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(kafka.stop)
        await asyncio.sleep(2.5)
        await asyncio.to_thread(kafka.start)
        await asyncio.sleep(4)
    finally:
        stop.set()
        await asyncio.gather(*producers)
    try:
        await wait_drained(http, base)
    except AssertionError:
        print(gateway.tail())
        raise
    total = sum(len(v) for v in acked.values())
    assert "kafka" in stored and "spool" in stored, stored  # both paths were taken under the load
    assert stored[-4:] == ["kafka"] * 4, stored[-40:]  # once Kafka was back, the load left the spool
    records = await consume(kafka.address, "events", lambda r: len({serde.loads(x.value)["id"] for x in r}) >= total,
                            keep=lambda r: r.key.decode().startswith(f"load-{unique}"))
    order = first_occurrences(records)
    for key in keys:
        assert order[key.encode()] == acked[key], f"{key}: topic order differs from acknowledged order"
    print(f"{total} acknowledged, {len(records)} on the topic, {len(records) - total} duplicates, "
          f"{stored.count('spool')} of {len(stored)} requests answered from the spool")


async def test_gateway_killed_with_a_spool_restarts_and_delivers_it_all_despite_a_torn_tail(
        private_service: Callable[..., Any], spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession, unique: str, tmp_path: Path) -> None:
    kafka = private_service("kafka", 19111)
    await ensure_topics(kafka.address, topics.ALL)
    await asyncio.to_thread(kafka.stop)
    env = gateway_env(env_factory, kafka.address, 18111)
    base = "http://127.0.0.1:18111"
    first = spawn(["gateway"], env)
    await wait_http(f"{base}/health")
    keys = [f"kill-{unique}-a", f"kill-{unique}-b"]
    acked: dict[str, list[str]] = {k: [] for k in keys}
    for n in range(10):
        for key in keys:
            batch = [{"type": "SAVE", "ruleId": key, "idempotencyKey": f"{key}-{n}-{i}"} for i in range(3)]
            reply = await post(http, f"{base}/ingest/events", {"events": batch})
            assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
            acked[key] += reply.body["ids"]
    assert (await get(http, f"{base}/status/buffers")).body["pending"] == 60
    first.kill()  # kill -9: no shutdown code runs
    segments = sorted(Path(env["FILE_BUFFER_DIR"]).glob("seg-*.log"))
    with open(segments[-1], "ab") as f:
        f.write(b"\xa7\x5e\x00\x00\x01\x00half a record")  # what a write cut short by a crash leaves
    await asyncio.to_thread(kafka.start)
    second = spawn(["gateway"], env)
    await wait_http(f"{base}/health")
    try:
        status = await wait_drained(http, base)
    except AssertionError:
        print(second.tail())
        raise
    assert status["failed"] == 1 and status["kafkaHealthy"] is True
    failed = list((Path(env["FILE_BUFFER_DIR"]) / "failed").glob("*.json"))
    assert len(failed) == 1 and serde.loads(failed[0].read_bytes())["reason"].startswith("torn tail")
    records = await consume(kafka.address, "events", lambda r: len(r) >= 60,
                            keep=lambda r: r.key.decode().startswith(f"kill-{unique}"))
    order = first_occurrences(records)
    for key in keys:
        assert order[key.encode()] == acked[key]


async def test_full_spool_refuses_with_503_and_retry_after_and_keeps_what_it_accepted(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], http: aiohttp.ClientSession,
        unique: str) -> None:
    # Nothing listens on this port: every event goes to the spool, which holds 4 KiB.
    env = gateway_env(env_factory, "127.0.0.1:19199", 18112, SPOOL_MAX_BYTES="4096")
    base = "http://127.0.0.1:18112"
    spawn(["gateway"], env)
    await wait_http(f"{base}/health")
    accepted, refused = 0, None
    for n in range(40):
        batch = [{"type": "VIEW", "ruleId": f"full-{unique}", "idempotencyKey": f"{unique}-{n}"}]
        reply = await post(http, f"{base}/ingest/events", {"events": batch})
        if reply.status == 503:
            refused = reply
            break
        assert reply.status == 202
        accepted += 1
    assert refused is not None and refused.body["error"] == "SpoolFull"
    assert int(refused.headers["Retry-After"]) > 0
    assert accepted > 0 and (await get(http, f"{base}/status/buffers")).body["pending"] == accepted
    health = await get(http, f"{base}/health")  # Kafka down and no room: the gateway cannot accept
    assert health.status == 503 and health.body["accepting"] is False
    assert {d["name"]: d["status"] for d in health.body["dependencies"]}["spool"] == "down"
