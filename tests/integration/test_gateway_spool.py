"""Nothing acknowledged is lost: a private Kafka stopped in the middle of a load, a gateway killed with -9
while events wait in its spool, a spool at its size bound, a disk that runs full under the spool (a small
tmpfs), and the files a crash leaves half-way through removing a replayed segment. What landed is read back
with a raw consumer.

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

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.core import serde
from ingestflow.schemas import topics

from ..conftest import BASE_ENV
from ..small_fs import fill_up, small_tmpfs
from .conftest import eventually, wait_http
from .gateway_kit import Reply, consume, end_offsets, get, post, wait_drained


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
    await ensure_topics(kafka.connection, topics.ALL)
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
    await ensure_topics(kafka.connection, topics.ALL)
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
    assert health.status == 503 and health.body["ready"] is False
    assert {d["name"]: d["status"] for d in health.body["dependencies"]}["spool"] == "down"
    # What the spool alerts read (deploy/prometheus/alerts.yml): over 80% of the bound, and a 503 counted.
    buffers = (await get(http, f"{base}/status/buffers")).body
    assert buffers["spoolMaxBytes"] == 4096 and buffers["spoolBytes"] >= 0.8 * 4096
    async with http.get(f"{base}/metrics") as resp:
        metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                   for line in (await resp.text()).splitlines() if line.startswith("ingestflow_")}
    assert metrics["ingestflow_spool_bytes"] / metrics["ingestflow_spool_max_bytes"] > 0.8
    assert metrics['ingestflow_events_rejected_total{reason="SpoolFull"}'] >= 1


async def post_views(http: aiohttp.ClientSession, base: str, key: str, n: int, size: int = 20,
                     **options: int) -> tuple[Reply, list[str]]:
    """One request of `size` events of `key` (ids `key-n-i`); the reply and the ids it carried."""
    ids = [f"{key}-{n}-{i}" for i in range(size)]
    body: dict[str, Any] = {"events": [{"type": "VIEW", "ruleId": key, "idempotencyKey": i} for i in ids]}
    return await post(http, f"{base}/ingest/events", {**body, **options}), ids


async def test_full_disk_answers_503_until_space_returns_and_every_acknowledged_event_arrives_once(
        private_service: Callable[..., Any], spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession, unique: str, tmp_path: Path) -> None:
    kafka = private_service("kafka", 18652)
    await ensure_topics(kafka.connection, topics.ALL)
    await asyncio.to_thread(kafka.stop)  # Kafka is down: every event goes to the spool
    env = gateway_env(env_factory, kafka.address, 18650)
    base = "http://127.0.0.1:18650"
    key = f"disk-{unique}"
    acked: list[str] = []
    with small_tmpfs(Path(env["FILE_BUFFER_DIR"]), 2 * 1024 * 1024) as disk:
        gateway = spawn(["gateway"], env)
        try:
            await wait_http(f"{base}/health")
            for n in range(5):
                reply, ids = await post_views(http, base, key, n)
                assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
                acked += ids
            filler = fill_up(disk)
            refused: list[str] = []
            for n in range(5, 500):
                reply, ids = await post_views(http, base, key, n)
                if reply.status == 503:
                    refused = ids
                    break
                assert reply.status == 202, reply.body
                acked += ids
            assert refused, "the disk never ran full"
            assert reply.body["error"] == "SpoolFull" and int(reply.headers["Retry-After"]) > 0, reply
            again, more_refused = await post_views(http, base, key, 500)  # still refused, and promptly
            assert again.status == 503 and int(again.headers["Retry-After"]) > 0, again
            refused += more_refused
            health = await get(http, f"{base}/health")
            assert health.status == 503 and health.body["ready"] is False, health.body
            spool = {d["name"]: d for d in health.body["dependencies"]}["spool"]
            assert spool["status"] == "down" and "full" in spool["error"], spool
            assert (await get(http, f"{base}/status/buffers")).body["pending"] == len(acked)

            filler.unlink()  # the operator frees space; nothing is restarted

            async def accepting() -> bool:
                health = await get(http, f"{base}/health")
                assert health.status == 200 and health.body["ready"] is True, health.body
                return True
            await eventually(accepting, 120, what="the gateway accepting again once the disk has room")
            for n in range(501, 504):
                reply, ids = await post_views(http, base, key, n)
                assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
                acked += ids
            assert (await get(http, f"{base}/status/buffers")).body["pending"] == len(acked)

            await asyncio.to_thread(kafka.start)
            status = await wait_drained(http, base, timeout=180)
            assert status["failed"] == 0 and status["pending"] == 0, status
            records = await consume(kafka.address, "events", lambda r: len({serde.loads(x.value)["id"] for x in r})
                                    >= len(acked), keep=lambda r: r.key == key.encode(), timeout=120)
        except AssertionError:
            print(gateway.tail())
            raise
        finally:
            gateway.stop()
    order = first_occurrences(records)
    assert order[key.encode()] == acked  # every 202'd event, in the order acknowledged
    landed = {serde.loads(r.value)["id"] for r in records}
    assert not landed & set(refused), "events of refused requests were delivered"


async def test_a_stale_ack_left_by_a_crash_between_deletions_never_hides_acknowledged_events(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], http: aiohttp.ClientSession,
        unique: str) -> None:
    # A first run spools 30 events in one segment (nothing listens at the Kafka address it is given).
    down = gateway_env(env_factory, "127.0.0.1:18656", 18655)
    base = "http://127.0.0.1:18655"
    first = spawn(["gateway"], down)
    await wait_http(f"{base}/health")
    reply, _ = await post_views(http, base, f"earlier-{unique}", 0, size=30)
    assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
    first.kill()
    # Those were replayed, and the process died after deleting the segment but before deleting its .ack.
    spool_dir = Path(down["FILE_BUFFER_DIR"])
    [segment] = spool_dir.glob("seg-*.log")
    segment.with_suffix(".ack").write_text(str(segment.stat().st_size))
    segment.unlink()

    # The next run (Kafka reachable) acknowledges 30 events into its spool (fire-and-forget) and replays them.
    second = spawn(["gateway"], gateway_env(env_factory, BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], 18655))
    await wait_http(f"{base}/health")
    key = f"later-{unique}"
    acked: list[str] = []
    start = await end_offsets(BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], "events")
    for n in range(3):
        reply, ids = await post_views(http, base, key, n, size=10, bufferMs=0)
        assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
        acked += ids
    try:
        status = await wait_drained(http, base)
        assert status["pending"] == 0 and status["failed"] == 0, status
        records = await consume(BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], "events",
                                lambda r: len({serde.loads(x.value)["id"] for x in r}) >= len(acked),
                                start=start, keep=lambda r: r.key == key.encode())
    except AssertionError:
        print(second.tail())
        raise
    assert first_occurrences(records)[key.encode()] == acked


async def test_spool_segments_deleted_by_hand_leave_the_gateway_live_and_its_count_right(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], http: aiohttp.ClientSession,
        unique: str) -> None:
    env = gateway_env(env_factory, "127.0.0.1:18658", 18657)  # nothing listens there: Kafka is down
    base = "http://127.0.0.1:18657"
    gateway = spawn(["gateway"], env)
    await wait_http(f"{base}/health")
    reply, _ = await post_views(http, base, f"deleted-{unique}", 0, size=10)
    assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
    for path in Path(env["FILE_BUFFER_DIR"]).glob("seg-*"):
        path.unlink()  # an operator freeing space by hand, throwing those events away

    async def recounted() -> bool:
        assert (await get(http, f"{base}/health/live")).status == 200
        status = (await get(http, f"{base}/status/buffers")).body
        assert status["pending"] == 0, status
        return True
    try:
        await eventually(recounted, 60, what="the spool counting what is left on disk")
        reply, _ = await post_views(http, base, f"deleted-{unique}", 1, size=10)  # and it still spools
        assert reply.status == 202 and reply.body["stored"] == "spool", reply.body
        assert (await get(http, f"{base}/status/buffers")).body["pending"] == 10
    except (AssertionError, asyncio.TimeoutError):
        print(gateway.tail())
        raise
