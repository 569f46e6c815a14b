"""A worker whose links to PostgreSQL, Redis and the archive backend misbehave (Toxiproxy: latency, a link
that swallows everything, resets) while events and records flow. What a user checks once the link is well
again: the daily metrics equal the truth computed from the input (each event counted once), each acknowledged
record is archived exactly once with transfer_logs telling a consistent story, and the group's lag is 0.

Each test's worker reads a private Kafka: its lag then depends on its own input alone, not on what other
tests put on the shared topics meanwhile."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ingestflow.app.archive.lighthouse import lighthouse
from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.schemas import topics

from ..conftest import BASE_ENV
from ..fake_lighthouse import FakeLighthouse
from . import analytics_data
from .archive_support import archived_uids, produce_records, success_rows, unique_user_ids
from .conftest import DSN, Process, all_committed, eventually, wait_http
from .toxiproxy import Proxy, Toxiproxy

PG_PROXY_PORT, PG_WORKER_PORT, PG_KAFKA_PORT = 18520, 18521, 18522  # (+1 for each Kafka's controller)
REDIS_PROXY_PORT, REDIS_WORKER_PORT, REDIS_KAFKA_PORT = 18530, 18531, 18532
LIGHTHOUSE_PORT, LIGHTHOUSE_PROXY_PORT, ARCHIVE_WORKER_PORT, ARCHIVE_KAFKA_PORT = 18540, 18541, 18542, 18543
HELD_WORKER_PORT, HELD_KAFKA_PORT = 18545, 18546
API_KEY = "lh-net-test-api-key-0123456789"

# Each fault stays on while a part of the input is produced and processed, then is removed.
FAULTS = [
    ("latency", {"latency": 1500, "jitter": 500}),
    ("timeout", {"timeout": 0}),  # nothing passes; connections stay open
    ("reset_peer", {"timeout": 0}),  # every connection reset as soon as it carries data
]
FAULT_S = 8.0


def _chunks(records: list[Any], n: int) -> list[list[Any]]:
    size = -(-len(records) // n)
    return [records[i:i + size] for i in range(0, len(records), size)]


async def _transfer_story(pg: asyncpg.Connection, users: list[int], success_ids: set[str]) -> None:
    """transfer_logs of these users: no attempt left `pending`, one success per archived batch, and every
    failed attempt of a batch before its success."""
    rows = await pg.fetch("SELECT id, batch_id, status FROM transfer_logs WHERE user_id = ANY($1::bigint[])"
                          " AND batch_id = ANY($2::text[]) ORDER BY id", users, list(success_ids))
    assert not [r for r in rows if r["status"] == "pending"], "attempts left pending"
    successes = [r for r in rows if r["status"] == "success"]
    assert sorted(r["batch_id"] for r in successes) == sorted(success_ids)
    success_at = {r["batch_id"]: r["id"] for r in successes}
    assert all(r["id"] < success_at[r["batch_id"]] for r in rows if r["status"] == "failed")


async def _archive_done(pg: asyncpg.Connection, users: list[int], backend: Any, sent: list[str]) -> bool:
    rows = await success_rows(pg, users, backend)
    seen = await archived_uids(backend, rows)
    assert sorted(seen) == sorted(sent), f"{len(seen)} of {len(sent)} records archived"
    return True


async def _private_kafka(private_service: Callable[..., Any], port: int) -> str:
    kafka = private_service("kafka", port)
    await ensure_topics(kafka.connection, topics.ALL)
    return str(kafka.address)


async def _flow_through_faults(toxiproxy: Toxiproxy, link: Proxy, worker: Process, stream_parts: list[Any],
                               produce: Callable[[Any], Any]) -> None:
    """Produces the first part on a healthy link, then each next part while one fault is on."""
    await produce(stream_parts[0])
    for (kind, attributes), part in zip(FAULTS, stream_parts[1:]):
        async with toxiproxy.toxic(link, kind, attributes):
            await produce(part)
            await asyncio.sleep(FAULT_S)
        assert worker.alive(), worker.tail(60)


async def test_postgres_link_faults_leave_every_event_counted_once_and_every_record_archived_once(
        spawn: Callable[..., Process], env_factory: Callable[..., dict[str, str]], toxiproxy: Toxiproxy,
        private_service: Callable[..., Any], pg: asyncpg.Connection, unique: str) -> None:
    kafka = await _private_kafka(private_service, PG_KAFKA_PORT)
    pg_address = DSN.split("@")[1].split("/")[0]
    link = await toxiproxy.create(f"worker-pg-{unique}", PG_PROXY_PORT, pg_address)
    prefix = f"netpg{unique}"
    env = env_factory(WORKER_PORT=str(PG_WORKER_PORT), WORKER_APP_ID=f"net-pg-{unique}", BUFFER_SIZE="3",
                      KAFKA_BOOTSTRAP_SERVERS=kafka, DATABASE_URL=DSN.replace(pg_address, link.address))
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    users = unique_user_ids(3)
    stream = analytics_data.build(prefix)
    worker = spawn(["worker"], env)
    sent: list[str] = []

    async def produce(part: tuple[int, list[Any]]) -> None:
        n, records = part
        await analytics_data.produce(kafka, "events", records)
        sent.extend(await produce_records(users, 3, f"{prefix}-{n}", bootstrap=kafka))

    try:
        await wait_http(f"http://127.0.0.1:{PG_WORKER_PORT}/health/live", timeout=120)
        await _flow_through_faults(toxiproxy, link, worker, list(enumerate(_chunks(stream.records, 4))), produce)

        async def counted() -> bool:
            assert await analytics_data.rule_rows(pg, prefix) == stream.truth
            return True
        await eventually(counted, timeout=180, what="daily rule metrics equal to the truth")
        await eventually(lambda: _archive_done(pg, users, archive, sent), timeout=180, what="every record archived")
        await all_committed(env["WORKER_APP_ID"], timeout=120, bootstrap=kafka)
        rows = await success_rows(pg, users, archive)
        assert set((await archived_uids(archive, rows)).values()) == {1}, "a record archived twice"
        await _transfer_story(pg, users, {r["batch_id"] for r in rows})
    except AssertionError:
        print(worker.tail(80))
        raise


@pytest.fixture
async def fake_lighthouse() -> AsyncIterator[FakeLighthouse]:
    server = await FakeLighthouse(API_KEY, LIGHTHOUSE_PORT).start()
    yield server
    await server.stop()


async def test_archive_link_faults_leave_every_record_archived_once_with_a_consistent_transfer_log(
        spawn: Callable[..., Process], env_factory: Callable[..., dict[str, str]], toxiproxy: Toxiproxy,
        private_service: Callable[..., Any], pg: asyncpg.Connection, fake_lighthouse: FakeLighthouse,
        unique: str) -> None:
    kafka = await _private_kafka(private_service, ARCHIVE_KAFKA_PORT)
    link = await toxiproxy.create(f"worker-archive-{unique}", LIGHTHOUSE_PROXY_PORT, f"127.0.0.1:{LIGHTHOUSE_PORT}")
    env = env_factory(WORKER_PORT=str(ARCHIVE_WORKER_PORT), WORKER_APP_ID=f"net-archive-{unique}",
                      KAFKA_BOOTSTRAP_SERVERS=kafka, BUFFER_SIZE="3", ARCHIVE_URL="lighthouse://",
                      LIGHTHOUSE_API_KEY=API_KEY,
                      LIGHTHOUSE_NODE_URL=f"http://{link.address}", LIGHTHOUSE_GATEWAY_URL=fake_lighthouse.url)
    backend = lighthouse(fake_lighthouse.url, fake_lighthouse.url, API_KEY)  # reads straight, not through faults
    users = unique_user_ids(4)
    worker = spawn(["worker"], env)
    sent: list[str] = []

    async def produce(n: int) -> None:
        sent.extend(await produce_records(users, 6, f"net{unique}-{n}", bootstrap=kafka))

    try:
        await wait_http(f"http://127.0.0.1:{ARCHIVE_WORKER_PORT}/health/live", timeout=120)
        await _flow_through_faults(toxiproxy, link, worker, list(range(4)), produce)
        await eventually(lambda: _archive_done(pg, users, backend, sent), timeout=240,
                         what="every record archived")
        await all_committed(env["WORKER_APP_ID"], timeout=120, bootstrap=kafka)
        rows = await success_rows(pg, users, backend)
        assert set((await archived_uids(backend, rows)).values()) == {1}, "a record archived twice"
        assert len(rows) == len(sent) // 3
        await _transfer_story(pg, users, {r["batch_id"] for r in rows})
    except AssertionError:
        print(worker.tail(80))
        raise
    finally:
        await backend.stop()


async def _events_in(worker_port: int) -> float:
    """Events that entered the worker's streams so far (Faust's own counter on the worker's /metrics)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{worker_port}/metrics") as resp:
            text = await resp.text()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.split(" ")[0] in ("faust_total_events", "faust_total_events_total"))


async def test_records_arriving_while_a_batch_uploads_slowly_are_all_archived(
        spawn: Callable[..., Process], env_factory: Callable[..., dict[str, str]],
        private_service: Callable[..., Any], pg: asyncpg.Connection, fake_lighthouse: FakeLighthouse,
        unique: str) -> None:
    kafka = await _private_kafka(private_service, HELD_KAFKA_PORT)
    env = env_factory(WORKER_PORT=str(HELD_WORKER_PORT), WORKER_APP_ID=f"net-held-{unique}",
                      KAFKA_BOOTSTRAP_SERVERS=kafka, BUFFER_SIZE="3", ARCHIVE_URL="lighthouse://",
                      LIGHTHOUSE_API_KEY=API_KEY, LIGHTHOUSE_NODE_URL=fake_lighthouse.url,
                      LIGHTHOUSE_GATEWAY_URL=fake_lighthouse.url)
    backend = lighthouse(fake_lighthouse.url, fake_lighthouse.url, API_KEY)
    users = unique_user_ids(1)
    worker = spawn(["worker"], env)
    try:
        await wait_http(f"http://127.0.0.1:{HELD_WORKER_PORT}/health/live", timeout=120)
        fake_lighthouse.hold()  # the first upload waits, as over a slow link
        sent = await produce_records(users, 3, f"first{unique}", bootstrap=kafka)
        await eventually(lambda: fake_lighthouse.held == 1, timeout=120, what="the first batch's upload waiting")
        before = await _events_in(HELD_WORKER_PORT)
        sent += await produce_records(users, 3, f"second{unique}", bootstrap=kafka)

        async def arrived() -> bool:
            return await _events_in(HELD_WORKER_PORT) > before
        await eventually(arrived, timeout=60, what="the next records reaching the worker's stream")
        fake_lighthouse.release()
        await eventually(lambda: _archive_done(pg, users, backend, sent), timeout=90, what="both batches archived")
        rows = await success_rows(pg, users, backend)
        assert len(rows) == 2 and set((await archived_uids(backend, rows)).values()) == {1}
        await all_committed(env["WORKER_APP_ID"], timeout=60, bootstrap=kafka)
    except AssertionError:
        print(worker.tail(60))
        raise
    finally:
        await backend.stop()


async def test_redis_link_faults_slow_nothing_down_and_reads_fall_back_to_postgres(
        spawn: Callable[..., Process], env_factory: Callable[..., dict[str, str]], toxiproxy: Toxiproxy,
        private_service: Callable[..., Any], pg: asyncpg.Connection, unique: str) -> None:
    kafka = await _private_kafka(private_service, REDIS_KAFKA_PORT)
    redis_address = BASE_ENV["REDIS_URL"].split("//")[1].split("/")[0]
    link = await toxiproxy.create(f"worker-redis-{unique}", REDIS_PROXY_PORT, redis_address)
    prefix = f"netrd{unique}"
    env = env_factory(WORKER_PORT=str(REDIS_WORKER_PORT), WORKER_APP_ID=f"net-redis-{unique}",
                      KAFKA_BOOTSTRAP_SERVERS=kafka, REDIS_URL=BASE_ENV["REDIS_URL"].replace(redis_address, link.address),
                      LEADERBOARD_REFRESH_S="1")
    stream = analytics_data.build(prefix)
    worker = spawn(["worker"], env)
    base = f"http://127.0.0.1:{REDIS_WORKER_PORT}"
    reads: list[tuple[int, str]] = []

    async def produce(part: list[Any]) -> None:
        await analytics_data.produce(kafka, "events", part)
        async with aiohttp.ClientSession() as http:  # a read while the fault is on answers, from PostgreSQL
            async with http.get(f"{base}/leaderboards/all-time?scope=rules&limit=5",
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
                reads.append((resp.status, (await resp.json()).get("source")))

    try:
        await wait_http(f"{base}/health/live", timeout=120)
        await _flow_through_faults(toxiproxy, link, worker, _chunks(stream.records, 4), produce)

        async def counted() -> bool:
            assert await analytics_data.rule_rows(pg, prefix) == stream.truth
            return True
        await eventually(counted, timeout=120, what="daily rule metrics equal to the truth")
        await all_committed(env["WORKER_APP_ID"], timeout=120, bootstrap=kafka)
        assert all(status == 200 for status, _ in reads), reads
        assert [source for _, source in reads[1:]] == ["postgres"] * len(FAULTS), reads
    except AssertionError:
        print(worker.tail(80))
        raise
