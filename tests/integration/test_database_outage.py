"""PostgreSQL trouble seen from the callers: one pool per process however many first calls race, a read
during an outage answers 503 with Retry-After (not a 500 with a trace), and a caller waits for a pooled
connection a bounded time."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from ingestflow.app.clients.db import Database, migrate
from ingestflow.app.core.errors import Unavailable

from .conftest import DSN, eventually, wait_http


async def _backends(admin: asyncpg.Connection, database: str) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database))


async def test_concurrent_first_calls_share_one_pool(own_database: str) -> None:
    name = own_database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(DSN)
    db = Database(own_database, min_size=1, max_size=2)  # its pool opens on the first call
    try:
        # The migration's connection may still be leaving on a busy machine: counted from none.
        await eventually(lambda: _none_left(admin, name), timeout=30, what="the migration's connection closed")
        assert await asyncio.gather(*(db.fetchval("SELECT 1") for _ in range(12))) == [1] * 12
        assert await _backends(admin, name) <= 2, "more connections than one pool of at most 2 holds"
        await db.stop()
        await eventually(lambda: _none_left(admin, name), timeout=30, what="every connection closed by stop()")
    finally:
        await db.stop()
        await admin.close()


async def _none_left(admin: asyncpg.Connection, name: str) -> bool:
    count = await _backends(admin, name)
    assert count == 0, f"{count} connection(s) of a leaked pool still open"
    return True


async def test_a_caller_waits_for_a_pooled_connection_a_bounded_time(own_database: str) -> None:
    db = Database(own_database, min_size=1, max_size=1)
    await db.start()
    held = await db.pool.acquire()
    try:
        with pytest.raises(Unavailable) as info:
            await asyncio.wait_for(db.fetchval("SELECT 1"), 60)
        assert info.value.status == 503 and info.value.retry_after > 0
    finally:
        await db.pool.release(held)
        await db.stop()


async def test_reads_answer_503_with_retry_after_while_postgres_is_down(
        private_service: Callable[..., Any], spawn: Callable[..., Any],
        env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    svc = private_service("postgres", 18610)
    dsn = svc.url("ingestflow")
    await migrate(dsn)
    gateway = spawn(["gateway"], env_factory(PORT="18611", DATABASE_URL=dsn))
    base = "http://127.0.0.1:18611"
    await wait_http(f"{base}/health")
    reads = (f"/metrics/rules/r-{unique}", f"/metrics/authors/a-{unique}", "/search?q=rules",
             "/leaderboards/daily?scope=authors&limit=1000")
    async with aiohttp.ClientSession() as http:
        for path in reads:
            async with http.get(base + path) as r:
                assert r.status == 200, (path, await r.text())
        svc.stop()
        for path in reads:
            async with http.get(base + path) as r:
                body = await r.json()
                assert r.status == 503, (path, r.status, body)
                assert body["error"] == "Unavailable" and "PostgreSQL" in body["message"]
                assert int(r.headers["Retry-After"]) >= 1
                assert "Traceback" not in await r.text()
        assert "unhandled error" not in gateway.tail(200)
        svc.start()

        async def answers_again() -> bool:
            async with http.get(base + reads[0]) as r:
                return r.status == 200
        await eventually(answers_again, timeout=60, what="reads answering after PostgreSQL is back")
