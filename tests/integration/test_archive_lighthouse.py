"""The Lighthouse client against a local server that follows Lighthouse's documented API (the SaaS is not
reachable here), with the archive sink writing real transfer_logs rows in PostgreSQL."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka.partitioner import murmur2

from ingestflow.app.archive.base import CidMismatch
from ingestflow.app.archive.crypto import open_envelope
from ingestflow.app.archive.http_add import AuthRejected
from ingestflow.app.archive.lighthouse import lighthouse
from ingestflow.app.archive.sink import ArchiveSink, Batch
from ingestflow.app.archive.transfer_logs import TransferLogs
from ingestflow.app.clients.db import Database
from ingestflow.app.core.errors import ArchiveError, NotFound
from ingestflow.schemas.topics import RECORDS

from ..conftest import BASE_ENV
from ..fake_lighthouse import FakeLighthouse
from .archive_support import KEYRING, produce_records, unique_user_ids
from .conftest import eventually, start_group_at_end

API_KEY = "lh-test-api-key-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeLighthouse]:
    server = await FakeLighthouse(API_KEY, 18231).start()
    yield server
    await server.stop()


def _batch(user_id: int, n: int = 3) -> Batch:
    records = tuple({"website_uid": f"w{i}", "cleanedJson": {"i": i}, "context": None} for i in range(n))
    return Batch(user_id, 0, tuple(range(100, 100 + n)), records)


async def test_upload_and_gateway_read_with_bearer_key(fake: FakeLighthouse) -> None:
    client = lighthouse(fake.url, fake.url, API_KEY)
    try:
        got = await client.put(b"object bytes")
        assert got.startswith("Qm") and fake.objects[got] == b"object bytes"
        assert await client.get(got) == b"object bytes"
        fake.ndjson = True
        assert (await client.put(b"second")).startswith("Qm")
        with pytest.raises(NotFound):
            await client.get("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN")
    finally:
        await client.stop()


async def test_wrong_key_is_rejected_without_echoing_it(fake: FakeLighthouse) -> None:
    client = lighthouse(fake.url, fake.url, "wrong-key-0123456789")
    try:
        with pytest.raises(AuthRejected) as info:
            await client.put(b"x")
        assert "401" in str(info.value) and "wrong-key" not in str(info.value)
        assert not info.value.retriable
    finally:
        await client.stop()


async def test_cid_that_is_not_the_contents_is_an_error(fake: FakeLighthouse) -> None:
    fake.corrupt = True
    client = lighthouse(fake.url, fake.url, API_KEY)
    try:
        with pytest.raises(CidMismatch):
            await client.put(b"payload")
    finally:
        await client.stop()


async def test_sink_retries_429_and_5xx_logs_each_failure_then_the_success(
        fake: FakeLighthouse, pg: asyncpg.Connection) -> None:
    fake.fail(429, 1, retry_after=1)
    fake.fail(503, 1)
    db = Database(BASE_ENV["DATABASE_URL"])
    client = lighthouse(fake.url, fake.url, API_KEY)
    sink = ArchiveSink(client, TransferLogs(db), KEYRING, app_id="lighthouse-test", concurrency=2, retry_base=0.05, retry_cap=0.2)
    [user] = unique_user_ids(1)
    batch = _batch(user)
    try:
        cid = await sink.archive(batch)
        rows = await pg.fetch("SELECT status, error_message, lighthouse_hash, entries_transferred FROM transfer_logs"
                              " WHERE batch_id = $1 ORDER BY id", sink.batch_id(batch))
        assert [r["status"] for r in rows] == ["failed", "failed", "success"]
        assert "429" in rows[0]["error_message"] and "Retry-After 1" in rows[0]["error_message"]
        assert "503" in rows[1]["error_message"]
        assert rows[2]["lighthouse_hash"] == cid and rows[2]["entries_transferred"] == 3
        header, plain = open_envelope(KEYRING, fake.objects[cid], user_id=user)
        assert header.count == 3 and plain == batch.plaintext()
        # The same batch again (a replay after a crash): no second upload, no second success row.
        uploads = fake.uploads
        assert await sink.archive(batch) == cid
        assert fake.uploads == uploads
        assert await pg.fetchval("SELECT count(*) FROM transfer_logs WHERE batch_id = $1 AND status = 'success'",
                                 sink.batch_id(batch)) == 1
    finally:
        await client.stop()
        await db.stop()


async def test_sink_uploads_batches_concurrently(fake: FakeLighthouse, pg: asyncpg.Connection) -> None:
    db = Database(BASE_ENV["DATABASE_URL"])
    client = lighthouse(fake.url, fake.url, API_KEY)
    sink = ArchiveSink(client, TransferLogs(db), KEYRING, app_id="lighthouse-test", concurrency=4)
    users = unique_user_ids(6)
    try:
        got = await sink.archive_many([_batch(u, 2) for u in users])
        assert len(set(got)) == 6
        assert await pg.fetchval("SELECT count(*) FROM transfer_logs WHERE user_id = ANY($1::bigint[])"
                                 " AND status = 'success'", users) == 6
    finally:
        await client.stop()
        await db.stop()


async def test_unreachable_node_is_retriable(pg: asyncpg.Connection) -> None:
    client = lighthouse("http://127.0.0.1:18239", "http://127.0.0.1:18239", API_KEY)
    try:
        with pytest.raises(ArchiveError) as info:
            await client.put(b"x")
        assert info.value.retriable and API_KEY not in str(info.value)
    finally:
        await client.stop()


async def test_worker_archives_to_lighthouse_and_a_stuck_upload_holds_back_only_its_partition(
        fake: FakeLighthouse, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        pg: asyncpg.Connection, unique: str) -> None:
    env = env_factory(ARCHIVE_URL="lighthouse://", LIGHTHOUSE_API_KEY=API_KEY, LIGHTHOUSE_NODE_URL=fake.url,
                      LIGHTHOUSE_GATEWAY_URL=fake.url, BUFFER_SIZE="1", WORKER_PORT="18232",
                      WORKER_APP_ID=f"archive-lh-{unique}")
    candidates = unique_user_ids(40)
    by_partition: dict[int, list[int]] = {}
    for user in candidates:
        by_partition.setdefault((murmur2(str(user).encode()) & 0x7FFFFFFF) % RECORDS.partitions, []).append(user)
    slow_partition, slow = next((p, users[0]) for p, users in by_partition.items())
    others = [users[0] for p, users in by_partition.items() if p != slow_partition]
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)

    async def archived(users: list[int]) -> bool:
        return await pg.fetchval("SELECT count(*) FROM transfer_logs WHERE user_id = ANY($1::bigint[])"
                                 " AND status = 'success' AND lighthouse_hash = ANY($2::text[])",
                                 users, list(fake.objects)) == len(users)
    try:
        fake.hold()
        await produce_records([slow], 1, f"slow{unique}")
        await eventually(lambda: fake.held == 1, timeout=90, what="the slow user's upload reaching Lighthouse")
        await produce_records(others, 1, f"fast{unique}")
        await eventually(lambda: archived(others), timeout=60, what="other partitions archived meanwhile")
        assert not await archived([slow])
        fake.release()
        await eventually(lambda: archived([slow]), timeout=60, what="the slow upload completing")
    except AssertionError:
        print(worker.tail(60))
        raise
    finally:
        fake.release()
